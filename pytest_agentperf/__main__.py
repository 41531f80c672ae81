"""``python -m pytest_agentperf``: the same CLI as the ``pytest-agentperf`` script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
