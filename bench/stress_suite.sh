#!/usr/bin/env bash
# The plugin's own suite under CPU pressure: two CPU-burning processes run beside it while
# the full suite runs 5 times in a row under -n auto. Any failure fails the script.
# The burners are killed by their pids (never by name), also on Ctrl-C or an error.
#
#   bash bench/stress_suite.sh [RUNS]      (from the repository root, venv active)
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
python="${PYTHON:-python}"

burners=()
stop_burners() {
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    burners=()
}
trap stop_burners EXIT
trap 'stop_burners; exit 130' INT TERM

for _ in 1 2; do
    "$python" -c "
import time
end = time.monotonic() + 3600  # bounded even if never killed
while time.monotonic() < end:
    sum(i * i for i in range(10_000))
" &
    burners+=("$!")
done
echo "burners: pids ${burners[*]}; load: $(cut -d' ' -f1-3 /proc/loadavg)"

failed=0
for run in $(seq 1 "$runs"); do
    start=$(date +%s)
    if "$python" -m pytest -n auto -q -p no:randomly -p no:cacheprovider > "/tmp/stress-run-$run.log" 2>&1; then
        verdict="passed"
    else
        verdict="FAILED"
        failed=$((failed + 1))
    fi
    echo "run $run/$runs: $verdict in $(( $(date +%s) - start )) s, load $(cut -d' ' -f1-3 /proc/loadavg): $(tail -1 "/tmp/stress-run-$run.log")"
    if [ "$verdict" = "FAILED" ]; then
        grep -E "^(FAILED|ERROR) " "/tmp/stress-run-$run.log" | head -20
    fi
done
stop_burners
echo "$((runs - failed))/$runs runs passed"
[ "$failed" -eq 0 ]
