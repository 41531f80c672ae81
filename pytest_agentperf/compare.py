"""Comparing two reports: which tests got slower, hungrier or more token-expensive.

A *regression* is a change beyond the tolerance **and**, for noisy metrics,
statistically significant:

* **latency** (``p50``, ``p95``, ``mean`` of a test and of each
  ``agent:operation``): the relative change of the statistic must exceed the
  tolerance (default +10 %) and a one-sided Mann-Whitney U test on the raw
  samples kept in the report (``latency.samples``, ``operations[key].samples``)
  must give ``p < alpha`` in the same direction (default 0.005: both
  directions together are a 1 % two-sided test).  The test is rank based,
  so it is robust to the outliers shared CI runners produce.
  With fewer than ``min_samples`` (default 5) samples on either side, or when
  not even a perfect separation could reach ``alpha``, the verdict is
  ``inconclusive``: it never fails a test and is never reported as a pass.
* **peak memory** (``memory.peak_mb``, one value per test per run): beyond the
  relative tolerance (+10 %) **and** an absolute floor (5 MiB) so that small
  figures don't flap.  With several baseline values (a history baseline,
  ``memory.values``) the current value must also lie outside their range.
* **tokens** (``tokens.total``): deterministic, tolerance alone (+5 %).
* **cost** (``llm.cost.usd``): as tokens, but only between runs that used the same prices
  (``llm.cost.prices``); otherwise inconclusive, saying why.

Improvements are the mirror image.  Everything here is pure Python (no
scipy); percentiles come from :mod:`pytest_agentperf.stats`.

Merging reports (CI shards, repeated runs) lives in :mod:`pytest_agentperf.merge`; it pools
the same bounded samples the comparison reads.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .report import ReportError, load_report
from .reportdata import finite
from .reportdata import number as _num
from .reportdata import samples as _samples
from .stats import (
    Alternative,
    MannWhitneyResult,
    best_possible_p,
    mann_whitney_u,
    round_permutation_count,
    round_permutation_test,
)
from .units import fmt_change as _fmt_change
from .units import fmt_p as _fmt_p
from .units import fmt_value as _fmt_value

__all__ = [
    "ROUND_ALPHA_MAX",
    "VERDICTS",
    "Evidence",
    "MannWhitneyResult",
    "MetricComparison",
    "ReportComparison",
    "ReportError",
    "TestComparison",
    "Tolerances",
    "Verdict",
    "baseline_warnings",
    "compare_entries",
    "compare_latency",
    "compare_reports",
    "environment_warnings",
    "format_comparison",
    "latency_significance",
    "load_report",
    "mann_whitney_u",
    "noise_allowance",
    "parse_fraction",
    "parse_tolerance_spec",
    "round_alpha",
]

Verdict = Literal["regression", "improvement", "unchanged", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("regression", "improvement", "inconclusive", "unchanged")
_LATENCY_STATS: tuple[tuple[str, str], ...] = (("p50", "p50"), ("p95", "p95"), ("mean", "mean"))
_OP_STATS: tuple[tuple[str, str], ...] = (("p50", "p50_s"), ("p95", "p95_s"), ("mean", "mean_s"))


# -- tolerances --------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerances:
    """How much change is allowed before a metric counts as changed.

    ``latency``, ``memory`` and ``tokens`` are relative (0.10 = +10 %);
    ``memory_floor_mb`` is the smallest absolute memory change that counts;
    ``alpha`` the significance level of the one-sided tests; ``min_samples``
    the fewest latency samples per side for a verdict other than inconclusive.
    """

    latency: float = 0.10
    memory: float = 0.10
    tokens: float = 0.05
    memory_floor_mb: float = 5.0
    alpha: float = 0.005
    min_samples: int = 5

    def __post_init__(self) -> None:
        for name in ("latency", "memory", "tokens"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance {name}={value!r} must be a number >= 0")
        if not (math.isfinite(self.memory_floor_mb) and self.memory_floor_mb >= 0):
            raise ValueError(f"memory_floor_mb={self.memory_floor_mb!r} must be >= 0")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha={self.alpha!r} must be within (0, 0.5)")
        if self.min_samples < 1:
            raise ValueError(f"min_samples={self.min_samples!r} must be >= 1")

    def override(self, values: Mapping[str, float]) -> Tolerances:
        """A copy with some fields replaced (unknown names raise ``ValueError``)."""
        known = set(asdict(self))
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown tolerance key(s) {unknown}; valid: {sorted(known)}")
        return replace(self, **values)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


_RELATIVE_KEYS = ("latency", "memory", "tokens")
_KEY_ALIASES = {"memory_floor": "memory_floor_mb"}


def parse_fraction(text: str, name: str) -> float:
    """``"10%"`` or ``"0.1"`` -> 0.1.  A bare number above 1 is refused (write ``150%``)."""
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number (write e.g. {name}=10%)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={text!r} must be a finite number >= 0")
    if percent:
        return value / 100.0
    if value > 1:
        raise ValueError(f"{name}={text!r} is ambiguous: write {value:g}% for a percentage "
                         f"or {value / 100:g} for the fraction")
    return value


def parse_tolerance_spec(text: str) -> dict[str, float]:
    """Parse ``"latency=10%,memory=10%,tokens=5%,memory_floor=5"`` (any subset).

    Relative keys (latency, memory, tokens) take ``N%`` or a fraction;
    ``memory_floor`` (alias ``memory_floor_mb``) is MiB; ``alpha`` a
    probability.  Raises ``ValueError`` saying which item is wrong.
    """
    out: dict[str, float] = {}
    for item in (part for part in text.replace(" ", ",").split(",") if part.strip()):
        key, sep, value = item.partition("=")
        key = _KEY_ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}")
        if key in _RELATIVE_KEYS:
            out[key] = parse_fraction(value, key)
        elif key in ("memory_floor_mb", "alpha"):
            try:
                number = float(value.strip().removesuffix("MiB").strip())
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a number") from None
            if not math.isfinite(number) or number < 0 or (key == "alpha" and not
                                                           0 < number < 0.5):
                raise ValueError(f"{key}={value!r} is out of range")
            out[key] = number
        else:
            raise ValueError(f"unknown tolerance key {key!r}; valid: latency, memory, tokens, "
                             "memory_floor, alpha")
    return out


# -- results ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """Why a verdict was reached.

    ``method``: ``"mann-whitney"`` (``p_value`` is the one-sided p in the
    direction of the change, of a shift beyond the noise allowance),
    ``"round-permutation"`` (Mann-Whitney's p on the pooled samples, and the
    round permutation test over the sessions in ``note``), ``"tolerance"``
    (deterministic metric) or ``"tolerance+floor"`` (memory).  ``note`` explains
    inconclusive verdicts.
    """

    method: str
    p_value: float | None = None
    n_baseline: int | None = None
    n_current: int | None = None
    note: str | None = None

    def describe(self) -> str:
        parts: list[str] = []
        if self.p_value is not None:
            parts.append(f"Mann-Whitney p={_fmt_p(self.p_value)}")
        elif self.method != "mann-whitney":
            parts.append(self.method)
        if self.n_baseline is not None and self.n_current is not None:
            parts.append(f"n={self.n_baseline}/{self.n_current}")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one test: baseline vs current, relative change, verdict."""

    metric: str  # "latency.p95", "op[planner:llm].p50", "memory.peak_mb", "tokens.total"
    unit: str  # "s", "MiB", "tokens"
    baseline: float | None
    current: float | None
    change: float | None  # current / baseline - 1
    tolerance: float
    verdict: Verdict
    evidence: Evidence

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "unit": self.unit, "baseline": self.baseline,
            "current": self.current, "change": self.change, "tolerance": self.tolerance,
            "verdict": self.verdict,
            "evidence": {k: v for k, v in asdict(self.evidence).items() if v is not None},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricComparison:
        """The comparison back from :meth:`as_dict` (a report entry, or one that crossed
        from an xdist worker as JSON); a missing or malformed field reads as unknown."""
        ev = data.get("evidence")
        ev = ev if isinstance(ev, Mapping) else {}
        verdict = data.get("verdict")
        counts = (finite(ev.get("n_baseline")), finite(ev.get("n_current")))
        note = ev.get("note")
        return cls(
            metric=str(data.get("metric", "")),
            unit=str(data.get("unit", "")),
            baseline=_num(data.get("baseline")),
            current=_num(data.get("current")),
            change=_num(data.get("change")),
            tolerance=_num(data.get("tolerance")) or 0.0,
            verdict=verdict if verdict in VERDICTS else "inconclusive",
            evidence=Evidence(
                method=str(ev.get("method", "")),
                p_value=_num(ev.get("p_value")),
                n_baseline=None if counts[0] is None else int(counts[0]),
                n_current=None if counts[1] is None else int(counts[1]),
                note=None if note is None else str(note),
            ),
        )

    def describe(self) -> str:
        """``latency.p95 0.210 s -> 0.430 s (+104.8%, tolerance 10%; Mann-Whitney p=1e-09)``"""
        base = _fmt_value(self.baseline, self.unit)
        cur = _fmt_value(self.current, self.unit)
        return (
            f"{self.metric} {base} -> {cur} ({_fmt_change(self.change)}, "
            f"tolerance {self.tolerance * 100:g}%; {self.evidence.describe()})"
        )


@dataclass
class TestComparison:
    """Every metric comparison of one test.

    ``status``: ``"compared"``, ``"new"`` (not in the baseline) or
    ``"missing"`` (in the baseline, not in this run).
    """

    __test__ = False  # not a pytest test class

    nodeid: str
    metrics: list[MetricComparison] = field(default_factory=list)
    status: Literal["compared", "new", "missing"] = "compared"

    @property
    def verdict(self) -> Verdict:
        """Worst verdict: regression > improvement > inconclusive > unchanged."""
        found = {m.verdict for m in self.metrics}
        if self.status != "compared":
            return "inconclusive"
        for verdict in VERDICTS:
            if verdict in found:
                return verdict
        return "inconclusive"  # nothing comparable was measured

    def by_verdict(self, verdict: Verdict) -> list[MetricComparison]:
        return [m for m in self.metrics if m.verdict == verdict]

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "status": self.status,
            "metrics": [m.as_dict() for m in self.metrics],
        }


@dataclass
class ReportComparison:
    """The comparison of two reports."""

    tests: list[TestComparison]
    tolerances: Tolerances
    environment_warnings: list[str] = field(default_factory=list)
    #: the baseline itself is doubtful: an incomplete run, entries with wrong types
    baseline_warnings: list[str] = field(default_factory=list)

    def with_verdict(self, verdict: Verdict) -> list[TestComparison]:
        return [t for t in self.tests if t.verdict == verdict]

    @property
    def has_regressions(self) -> bool:
        return any(t.verdict == "regression" for t in self.tests)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(VERDICTS, 0)
        for t in self.tests:
            out[t.verdict] += 1
        return out


# -- comparing -------------------------------------------------------------------------


def _change(baseline: float | None, current: float | None) -> float | None:
    if baseline is None or current is None or baseline <= 0:
        return None
    return current / baseline - 1.0


def _sessions(value: Any, n: int) -> list[int] | None:
    """A latency object's ``sample_sessions`` when it matches its ``n`` samples."""
    if not isinstance(value, list) or len(value) != n or not all(
            isinstance(g, int) and not isinstance(g, bool) for g in value):
        return None
    return value


def _session_count(groups: Sequence[int] | None) -> int:
    return len(set(groups)) if groups else 1


def noise_allowance(tolerances: Tolerances) -> float:
    """The shift a one-session comparison must significantly exceed: half the latency
    tolerance (process-to-process noise cannot be seen in one session's samples)."""
    return tolerances.latency / 2.0


#: the round test's level is ten times ``alpha``, at most this
ROUND_ALPHA_MAX = 0.01


def round_alpha(tolerances: Tolerances) -> float:
    """Level of the round-level test: the round permutation p must be at most this
    (ten times ``alpha``, at most :data:`ROUND_ALPHA_MAX`: 0.01 with the default alpha,
    which five rounds a side can reach, their smallest p being 1/252).  The gate's false
    alarms stay below it however noisy the sessions are (``bench/bench_runs.py``).
    """
    return min(ROUND_ALPHA_MAX, 10.0 * tolerances.alpha)


def latency_significance(
    base_samples: Sequence[float], cur_samples: Sequence[float], direction: Alternative,
    tolerances: Tolerances, base_sessions: Sequence[int] | None = None,
    cur_sessions: Sequence[int] | None = None,
) -> tuple[float, str, str | None, bool] | None:
    """``(p, method, note, rounds_agree)`` of the one-sided test of a shift in
    ``direction`` ("greater": current slower), or None when no test could reach
    ``alpha``.  ``p`` is Mann-Whitney's; ``rounds_agree`` is false when the round
    test (below) did not find the shift: then it is not significant.

    Samples measured in one pytest process share that process's noise (its CPU
    placement, its neighbours on the machine), so a Mann-Whitney test that treats
    them as independent takes a few percent of process-to-process noise for a change:

    * when both sides were measured in several sessions (``ab`` rounds, a merged or
      history baseline against a merged run) that can be split in at least
      ``1 / round_alpha`` ways, whole sessions are permuted
      (:func:`~pytest_agentperf.stats.round_permutation_test`); that test keeps its
      level however noisy the sessions are (a machine whose load changes between
      rounds) and must give ``p <= round_alpha`` beside Mann-Whitney's ``p < alpha``
      on the pooled samples (default: at least 5 sessions a side);
    * otherwise (one session on a side, or too few to split: ``ab --rounds 4`` with
      the default alpha) the process noise cannot be seen in the samples, and the
      Mann-Whitney test asks for a shift beyond the :func:`noise_allowance`
      (current scaled by ``1 / (1 + allowance)`` when testing for slower,
      ``1 + allowance`` for faster) rather than any shift.
    """
    if best_possible_p(len(base_samples), len(cur_samples)) >= tolerances.alpha:
        return None
    k_b, k_c = _session_count(base_sessions), _session_count(cur_sessions)
    level = round_alpha(tolerances)
    if k_b >= 2 and k_c >= 2 and round_permutation_count(k_b, k_c) * level >= 1.0:
        p = mann_whitney_u(cur_samples, base_samples, direction).p_value
        rounds = round_permutation_test(cur_samples, cur_sessions, base_samples,
                                        base_sessions, direction, max_exact=2_000,
                                        resamples=999)
        note = f"round permutation p={_fmt_p(rounds.p_value)} over {k_b}/{k_c} sessions"
        return p, "round-permutation", note, rounds.p_value <= level
    allowance = noise_allowance(tolerances)
    factor = 1.0 / (1.0 + allowance) if direction == "greater" else 1.0 + allowance
    scaled = [v * factor for v in cur_samples]
    p = mann_whitney_u(scaled, base_samples, direction).p_value
    extra = f"beyond a {allowance * 100:g}% noise allowance" if allowance else None
    return p, "mann-whitney", extra, True


def compare_latency(
    metric: str,
    baseline: float | None,
    current: float | None,
    base_samples: Sequence[float],
    cur_samples: Sequence[float],
    tolerances: Tolerances,
    base_sessions: Sequence[int] | None = None,
    cur_sessions: Sequence[int] | None = None,
    cache: dict[str, tuple[float, str, str | None, bool] | None] | None = None,
) -> MetricComparison:
    """Compare one latency statistic, using the raw samples for significance.

    ``base_sessions``/``cur_sessions``: the session (pytest process) of each sample
    (``sample_sessions`` of a merged entry), see :func:`latency_significance`.
    ``cache`` shares the test between statistics of the same samples.
    """
    tol = tolerances.latency
    change = _change(baseline, current)
    n_b, n_c = len(base_samples), len(cur_samples)
    if baseline is None or current is None or change is None:
        return MetricComparison(metric, "s", baseline, current, change, tol, "inconclusive",
                                Evidence("mann-whitney", None, n_b, n_c, "not measured"))
    too_few = (
        f"too few samples (need >= {tolerances.min_samples} per side: use perf_runs, the "
        "profiler or perf_record.add_latency, or a history baseline)"
    )
    if min(n_b, n_c) < tolerances.min_samples:
        return MetricComparison(metric, "s", baseline, current, change, tol, "inconclusive",
                                Evidence("mann-whitney", None, n_b, n_c, too_few))
    direction: Alternative = "greater" if change >= 0 else "less"
    if cache is not None and direction in cache:
        found = cache[direction]
    else:
        found = latency_significance(base_samples, cur_samples, direction, tolerances,
                                     base_sessions, cur_sessions)
        if cache is not None:
            cache[direction] = found
    if found is None:
        return MetricComparison(metric, "s", baseline, current, change, tol, "inconclusive",
                                Evidence("mann-whitney", None, n_b, n_c, too_few))
    p, method, note, rounds_agree = found
    significant = p < tolerances.alpha and rounds_agree
    verdict: Verdict = "unchanged"
    if significant and change > tol:
        verdict = "regression"
    elif significant and change < -tol:
        verdict = "improvement"
    return MetricComparison(metric, "s", baseline, current, change, tol, verdict,
                            Evidence(method, p, n_b, n_c, note))


def _compare_memory(base: Mapping[str, Any], cur: Mapping[str, Any],
                    tolerances: Tolerances) -> MetricComparison | None:
    b_mem, c_mem = base.get("memory"), cur.get("memory")
    if not isinstance(b_mem, Mapping) or not isinstance(c_mem, Mapping):
        return None
    current = _num(c_mem.get("peak_mb"))
    values = _samples(b_mem.get("values")) or [
        v for v in (_num(b_mem.get("peak_mb")),) if v is not None
    ]
    if current is None or not values:
        return None
    baseline = statistics.median(values)
    tol, floor = tolerances.memory, tolerances.memory_floor_mb
    change = _change(baseline, current)
    verdict: Verdict = "unchanged"
    if current - baseline > floor and current > baseline * (1 + tol) and current > max(values):
        verdict = "regression"
    elif baseline - current > floor and current < baseline * (1 - tol) and current < min(values):
        verdict = "improvement"
    note = f"floor {floor:g} MiB"
    if len(values) > 1:
        note += f", baseline median of {len(values)} runs"
    return MetricComparison("memory.peak_mb", "MiB", baseline, current, change, tol, verdict,
                            Evidence("tolerance+floor", None, len(values), 1, note))


def _compare_tokens(base: Mapping[str, Any], cur: Mapping[str, Any],
                    tolerances: Tolerances) -> MetricComparison | None:
    b_tok, c_tok = base.get("tokens"), cur.get("tokens")
    if not isinstance(b_tok, Mapping) or not isinstance(c_tok, Mapping):
        return None
    baseline, current = _num(b_tok.get("total")), _num(c_tok.get("total"))
    if baseline is None or current is None:
        return None
    tol = tolerances.tokens
    verdict, note = _tolerance_verdict(baseline, current, tol, "the baseline used no tokens")
    return MetricComparison("tokens.total", "tokens", baseline, current,
                            _change(baseline, current), tol, verdict,
                            Evidence("tolerance", None, None, None, note))


def _tolerance_verdict(baseline: float, current: float, tol: float,
                       zero_note: str) -> tuple[Verdict, str | None]:
    """A deterministic figure (tokens, cost) against its baseline: beyond ``tol`` either way."""
    if baseline == 0:
        return ("regression", zero_note) if current > 0 else ("unchanged", None)
    if current > baseline * (1 + tol):
        return "regression", None
    if current < baseline * (1 - tol):
        return "improvement", None
    return "unchanged", None


def _compare_cost(base: Mapping[str, Any], cur: Mapping[str, Any],
                  tolerances: Tolerances) -> MetricComparison | None:
    """Cost of the LLM calls, compared only when both runs priced them with the same prices
    (``llm.cost.prices``: the same price table, the same genai-prices version); otherwise
    *inconclusive*, saying so.  Deterministic like tokens: the tokens tolerance applies."""
    b_cost = _mapping(_mapping(base.get("llm")).get("cost"))
    c_cost = _mapping(_mapping(cur.get("llm")).get("cost"))
    baseline, current = _num(b_cost.get("usd")), _num(c_cost.get("usd"))
    b_prices, c_prices = b_cost.get("prices"), c_cost.get("prices")
    if baseline is None or current is None or b_prices is None or c_prices is None:
        return None  # a side without cost, or a report from before prices were recorded
    tol = tolerances.tokens
    change = _change(baseline, current)
    verdict: Verdict = "unchanged"
    note = None
    if b_prices != c_prices:
        verdict = "inconclusive"
        note = f"cost not compared: the runs used different prices ({b_prices} / {c_prices})"
    elif not (b_cost.get("complete") and c_cost.get("complete")):
        verdict, note = "inconclusive", "cost not compared: a side's cost is a lower bound"
    else:
        verdict, note = _tolerance_verdict(baseline, current, tol, "the baseline cost nothing")
    return MetricComparison("llm.cost_usd", "USD", baseline, current, change, tol, verdict,
                            Evidence("tolerance", None, None, None, note))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def compare_entries(
    base: Mapping[str, Any], cur: Mapping[str, Any], tolerances: Tolerances | None = None,
) -> TestComparison:
    """Compare one test's report entry (``cur``) with its baseline entry (``base``)."""
    tol = tolerances or Tolerances()
    nodeid = str(cur.get("nodeid") or base.get("nodeid") or "")
    out = TestComparison(nodeid)
    b_lat, c_lat = base.get("latency"), cur.get("latency")
    if isinstance(b_lat, Mapping) and isinstance(c_lat, Mapping) and (
        c_lat.get("count") and b_lat.get("count")
    ):
        b_s, c_s = _samples(b_lat.get("samples")), _samples(c_lat.get("samples"))
        b_g = _sessions(b_lat.get("sample_sessions"), len(b_s))
        c_g = _sessions(c_lat.get("sample_sessions"), len(c_s))
        cache: dict[str, tuple[float, str, str | None, bool] | None] = {}
        for name, key in _LATENCY_STATS:
            out.metrics.append(compare_latency(
                f"latency.{name}", _num(b_lat.get(key)), _num(c_lat.get(key)), b_s, c_s, tol,
                b_g, c_g, cache))
    b_ops, c_ops = base.get("operations"), cur.get("operations")
    if isinstance(b_ops, Mapping) and isinstance(c_ops, Mapping):
        for op in sorted(set(b_ops) & set(c_ops)):
            b_op, c_op = b_ops[op], c_ops[op]
            if not isinstance(b_op, Mapping) or not isinstance(c_op, Mapping):
                continue
            b_s, c_s = _samples(b_op.get("samples")), _samples(c_op.get("samples"))
            b_g = _sessions(b_op.get("sample_sessions"), len(b_s))
            c_g = _sessions(c_op.get("sample_sessions"), len(c_s))
            op_cache: dict[str, tuple[float, str, str | None, bool] | None] = {}
            for name, key in _OP_STATS:
                out.metrics.append(compare_latency(
                    f"op[{op}].{name}", _num(b_op.get(key)), _num(c_op.get(key)), b_s, c_s,
                    tol, b_g, c_g, op_cache))
    for extra in (_compare_memory(base, cur, tol), _compare_tokens(base, cur, tol),
                  _compare_cost(base, cur, tol)):
        if extra is not None:
            out.metrics.append(extra)
    return out


def _comparable(entry: Mapping[str, Any]) -> bool:
    return entry.get("outcome") not in ("skipped", "error")


def compare_reports(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    tolerances: Tolerances | None = None,
) -> ReportComparison:
    """Compare every test of ``current`` with the same nodeid in ``baseline``.

    Tests only in one of them get ``status`` ``"new"`` / ``"missing"``
    (verdict inconclusive); skipped or errored entries are not compared.
    """
    tol = tolerances or Tolerances()
    base_tests = {t["nodeid"]: t for t in baseline.get("tests", [])
                  if entry_problem(t) is None}
    cur_tests = {t["nodeid"]: t for t in current.get("tests", []) if isinstance(t, Mapping)}
    tests: list[TestComparison] = []
    for nodeid, entry in cur_tests.items():
        if not _comparable(entry):
            continue
        base = base_tests.get(nodeid)
        if base is None or not _comparable(base):
            tests.append(TestComparison(nodeid, status="new"))
        else:
            tests.append(compare_entries(base, entry, tol))
    for nodeid, base in base_tests.items():
        if nodeid not in cur_tests and _comparable(base):
            tests.append(TestComparison(nodeid, status="missing"))
    warnings = environment_warnings(baseline.get("environment"), current.get("environment"))
    return ReportComparison(tests, tol, warnings, baseline_warnings(baseline))


_ENTRY_OBJECTS = ("latency", "memory", "tokens", "operations", "budget")
_LATENCY_NUMBERS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "max")


def entry_problem(entry: Any) -> str | None:
    """What is wrong with the types of a report's test entry, or None when it can be
    compared (the fields the comparison reads are of the schema's types)."""
    if not isinstance(entry, Mapping):
        return f"an entry is a {type(entry).__name__}, not an object"
    nodeid = entry.get("nodeid")
    if not isinstance(nodeid, str):
        return f"an entry has nodeid {nodeid!r}, not a string"
    for key in _ENTRY_OBJECTS:
        value = entry.get(key)
        if value is not None and not isinstance(value, Mapping):
            return f"{nodeid}: {key} is a {type(value).__name__}, not an object"
    latency = entry.get("latency")
    if isinstance(latency, Mapping):
        for key in _LATENCY_NUMBERS:
            value = latency.get(key)
            if value is not None and _num(value) is None:
                return f"{nodeid}: latency.{key} is {value!r}, not a number"
        samples = latency.get("samples")
        if samples is not None and not isinstance(samples, list):
            return f"{nodeid}: latency.samples is not a list"
    memory = entry.get("memory")
    if isinstance(memory, Mapping) and memory.get("peak_mb") is not None and _num(
            memory.get("peak_mb")) is None:
        return f"{nodeid}: memory.peak_mb is {memory.get('peak_mb')!r}, not a number"
    tokens = entry.get("tokens")
    if isinstance(tokens, Mapping) and tokens.get("total") is not None and _num(
            tokens.get("total")) is None:
        return f"{nodeid}: tokens.total is {tokens.get('total')!r}, not a number"
    return None


def baseline_warnings(baseline: Mapping[str, Any], source: str = "baseline") -> list[str]:
    """Warnings about a baseline that cannot be fully trusted: a run that says it is
    incomplete, or test entries whose types are wrong (they are not compared)."""
    out = []
    if baseline.get("complete") is False:
        reason = baseline.get("incomplete_reason") or "no reason given"
        out.append(f"{source} is from an incomplete run ({reason}): its figures may be "
                   "partial and tests it lacks count as new")
    tests = baseline.get("tests")
    tests = tests if isinstance(tests, list) else []
    problems = [p for p in map(entry_problem, tests) if p is not None]
    if problems:
        out.append(f"{source}: {len(problems)} of {len(tests)} test entries have wrong "
                   f"types and are not compared (first: {problems[0]})")
    return out


_ENV_FIELDS: tuple[tuple[str, str], ...] = (
    ("implementation", "Python implementation"),
    ("python", "Python"),
    ("machine", "CPU architecture"),
    ("platform", "platform"),
    ("cpu_count", "CPU count"),
)


def environment_warnings(base_env: Any, cur_env: Any) -> list[str]:
    """Warnings when the baseline comes from another machine or Python."""
    if not isinstance(base_env, Mapping) or not isinstance(cur_env, Mapping):
        return ["baseline has no environment record: cannot tell whether it comes from "
                "this machine"]
    diffs = [
        f"{label} {base_env.get(key)!s} vs {cur_env.get(key)!s}"
        for key, label in _ENV_FIELDS
        if key in base_env and key in cur_env and base_env.get(key) != cur_env.get(key)
    ]
    if not diffs:
        return []
    return ["baseline comes from another machine or Python (" + "; ".join(diffs)
            + "): timings may differ for reasons other than the code"]


# -- formatting (pytest_agentperf.units) -----------------------------------------------
def format_comparison(comparison: ReportComparison, show_all: bool = False) -> str:
    """A plain-text table of the changes (every metric when ``show_all``)."""
    rows: list[tuple[str, str, str, str, str, str, str]] = []
    for test in comparison.tests:
        if test.status != "compared":
            if show_all or test.status == "missing":
                rows.append((test.nodeid, "-", "-", "-", "-", test.status, ""))
            continue
        for m in test.metrics:
            if not show_all and m.verdict == "unchanged":
                continue
            rows.append((test.nodeid, m.metric, _fmt_value(m.baseline, m.unit),
                         _fmt_value(m.current, m.unit), _fmt_change(m.change), m.verdict,
                         m.evidence.describe()))
    header = ("test", "metric", "baseline", "current", "change", "verdict", "evidence")
    lines: list[str] = []
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
        fmt = "  ".join(f"{{:{w}}}" for w in widths) + "  {}"
        lines.append(fmt.format(*header).rstrip())
        lines.extend(fmt.format(*r).rstrip() for r in rows)
    else:
        lines.append("no changes beyond tolerance")
    c = comparison.counts()
    lines.append(
        f"{c['regression']} regressed, {c['improvement']} improved, "
        f"{c['inconclusive']} inconclusive, {c['unchanged']} unchanged tests"
    )
    lines.extend(f"warning: {w}" for w in comparison.environment_warnings)
    lines.extend(f"warning: {w}" for w in comparison.baseline_warnings)
    return "\n".join(lines)
