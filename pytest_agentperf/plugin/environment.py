"""The report's ``environment`` block, with a command line that keeps no secrets.

Computed once per test session (:func:`session_environment`): the controller runs
``git rev-parse`` and reads the machine once, and hands the block to its xdist workers
in ``workerinput`` (:func:`worker_input`), which never compute it themselves.

``environment.argv`` goes into the report, the HTML page and the history
database, which CI keeps and shares.  Option values can be secrets
(``--api-token=...``), so only the values of this plugin's own options
(``--perf-*``) and of a few pytest/xdist options that say how the run was made
are kept; every other option value becomes ``<redacted>``.  Test paths stay.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import pytest

from ..report import environment

__all__ = ["REDACTED", "redact_argv", "run_environment", "session_environment"]

#: the session's environment block, computed once (controller) or received (worker)
ENV_KEY = pytest.StashKey[dict[str, Any]]()
#: the ``workerinput`` key that carries it to xdist workers
WORKERINPUT_KEY = "agentperf_environment"

REDACTED = "<redacted>"
#: options whose values are kept besides this plugin's own ``--perf-*`` ones
KEEP_VALUES = frozenset({"-n", "--numprocesses", "--dist", "-p", "--maxfail", "-k", "-m"})
#: short flags that take no value: ``-vvx`` is kept, ``-kfoo`` is not
_FLAGS = frozenset("vqxslW")


def _keeps_value(name: str) -> bool:
    return name.startswith("--perf-") or name in KEEP_VALUES


def redact_argv(args: Sequence[str], positional: Sequence[str]) -> list[str]:
    """``args`` with the values of options other than this plugin's replaced.

    ``positional`` are the arguments pytest read as test paths (``config.args``):
    a word among them is kept, any other word after an option is taken for the
    option's value.
    """
    paths = set(positional)
    out: list[str] = []
    previous: str | None = None  # the option a following bare word would belong to
    after_dashes = False
    for arg in map(str, args):
        if after_dashes or not arg.startswith("-") or arg == "-":
            keep = arg in paths or after_dashes or (previous is not None and
                                                    _keeps_value(previous))
            out.append(arg if keep else REDACTED)
            previous = None
            continue
        if arg == "--":
            after_dashes = True
            out.append(arg)
            continue
        if arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            out.append(arg if not eq or _keeps_value(name) else f"{name}={REDACTED}")
            previous = None if eq else name
            continue
        # short options: -x, -vv, -n 2, -n2, -kexpr
        name, rest = arg[:2], arg[2:]
        if rest and not (set(rest) <= _FLAGS and arg[1] in _FLAGS) and not _keeps_value(name):
            out.append(name + REDACTED)
            previous = None
        else:
            out.append(arg)
            previous = None if rest else name
    return out


def run_environment(config: pytest.Config, plugin_version: str) -> dict[str, Any]:
    """The environment block for this session's report and history row."""
    argv = [sys.argv[0] if sys.argv else "pytest",
            *redact_argv(config.invocation_params.args, [str(a) for a in config.args])]
    return environment(config.rootpath, pytest.__version__, plugin_version, argv=argv)


def session_environment(config: pytest.Config, plugin_version: str) -> dict[str, Any]:
    """This session's environment block: computed on first use in the controller (or a
    plain run), taken from ``workerinput`` in an xdist worker."""
    env = config.stash.get(ENV_KEY, None)
    if env is None:
        workerinput = getattr(config, "workerinput", None)
        received = workerinput.get(WORKERINPUT_KEY) if workerinput is not None else None
        env = received if isinstance(received, dict) else run_environment(config,
                                                                          plugin_version)
        config.stash[ENV_KEY] = env
    return env
