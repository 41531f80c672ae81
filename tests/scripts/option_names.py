"""Print, as JSON, every pytest11 plugin's option strings, dests and ini names.

Run by tests/test_compat.py with the interpreter of the compat environment. It calls each
plugin's ``pytest_addoption`` on a fresh parser of its own, so names that two plugins share
show up (pytest itself would only fail on the first clash, and not at all for ini names).
Test-only: it reads the parser's internals.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import json

from _pytest.config import PytestPluginManager
from _pytest.config.argparsing import Parser

out: dict[str, dict[str, list[str]]] = {}
for ep in md.entry_points(group="pytest11"):
    module = ep.load()
    addoption = getattr(module, "pytest_addoption", None)
    if addoption is None:
        continue
    parser = Parser(_ispytest=True)
    given = {"parser": parser, "pluginmanager": PytestPluginManager()}
    wanted = inspect.signature(addoption).parameters
    addoption(**{k: v for k, v in given.items() if k in wanted})
    options = parser._anonymous.options + [o for g in parser._groups for o in g.options]
    out[ep.dist.name if ep.dist else ep.value] = {
        "options": sorted({n for o in options for n in o.names()}),
        "dests": sorted({o.dest for o in options}),
        "ini": sorted(parser._inidict),
    }
print(json.dumps(out))
