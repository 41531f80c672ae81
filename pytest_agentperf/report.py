"""The JSON report: assembling, writing atomically, reading back.

The contract is the JSON Schema shipped in ``schema/report-v1.schema.json``;
:data:`SCHEMA_VERSION` is bumped on any incompatible change, :data:`SCHEMA_MINOR`
on a compatible one (a new optional field, a new ``outcome`` value): a reader of
version 1 accepts any minor.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_MINOR",
    "SCHEMA_VERSION",
    "ReportError",
    "atomic_write_text",
    "build_report",
    "check_writable",
    "environment",
    "fix_surrogates",
    "json_safe",
    "load_report",
    "load_schema",
    "plain_json",
    "write_report",
]

SCHEMA_VERSION = 1
#: compatible additions to version 1: 1 = outcomes ``crashed``/``interrupted``,
#: top-level ``schema_minor`` and ``plugin_errors``; 2 = ``sample_sessions`` of merged
#: latency and operations
#: 3 = scoped budgets (``scopes``, ``violations[].scope``), ``llm.unbudgeted``, latency and
#: cost per model and agent, ``llm.cost.prices``
SCHEMA_MINOR = 3
SCHEMA_FILE = "report-v1.schema.json"


class ReportError(Exception):
    """A report file cannot be read or written; the message names the file."""


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the report (a dict)."""
    from importlib import resources

    text = (resources.files("pytest_agentperf") / "schema" / SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _git_commit(cwd: Path) -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def environment(rootdir: Path, pytest_version: str, plugin_version: str,
                argv: list[str] | None = None) -> dict[str, Any]:
    """Where the run happened: enough to tell two machines or Pythons apart.

    ``argv`` is the command line to record (the plugin passes it with option
    values redacted); ``sys.argv`` when not given.
    """
    import platform

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_class_gb(),
        "os": _os_name(),
        "pytest": pytest_version,
        "agentperf": plugin_version,
        "git_commit": _git_commit(rootdir),
        "argv": list(sys.argv) if argv is None else list(argv),
    }


def _cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Processor", "cpu model")):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def _memory_class_gb() -> int | None:
    """Total memory rounded to a power of two GiB (runners of one class report a few MiB
    apart)."""
    try:
        import psutil

        total = psutil.virtual_memory().total / 2**30
    except Exception:  # an unknown size is not an error
        return None
    return 1 << max(0, round(math.log2(total))) if total > 0 else None


def _os_name() -> str:
    """The OS and its release without the kernel build (``debian 12``, ``Darwin 23``)."""
    import platform

    try:
        info = platform.freedesktop_os_release()
        return f"{info.get('ID', 'linux')} {info.get('VERSION_ID', '')}".strip()
    except (OSError, AttributeError):
        return f"{platform.system()} {platform.release().split('.')[0]}".strip()


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second (``2026-11-28T19:23:15Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_report(
    *,
    tests: Iterable[Mapping[str, Any]],
    env: Mapping[str, Any],
    complete: bool,
    incomplete_reason: str | None = None,
    started: str | None = None,
    memory_method: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a report dict from per-test entries."""
    test_list = [dict(t) for t in tests]
    outcomes = [t.get("outcome") for t in test_list]
    summary = {
        "tests": len(test_list),
        "passed": outcomes.count("passed"),
        "failed": outcomes.count("failed"),
        "skipped": outcomes.count("skipped"),
        "errors": outcomes.count("error"),
        "xfailed": outcomes.count("xfailed"),
        "xpassed": outcomes.count("xpassed"),
        "budget_violations": sum(1 for t in test_list if t.get("violations")),
    }
    for outcome in ("crashed", "interrupted"):  # schema minor 1: only when there are some
        if outcome in outcomes:
            summary[outcome] = outcomes.count(outcome)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "schema_minor": SCHEMA_MINOR,
        "created": utc_now(),
        "started": started,
        "complete": complete,
        "incomplete_reason": None if complete else (incomplete_reason or "unknown"),
        "environment": dict(env),
        "settings": {"memory_method": memory_method},
        "summary": summary,
        "tests": test_list,
    }
    if extra:
        report.update(extra)
    return report


def check_writable(path: Path) -> None:
    """Raise :class:`ReportError` unless a report can be written at ``path``."""
    special = _special_file(path)
    if special is not None:
        raise ReportError(f"{path} is {special}, not a regular file: a report replaces its "
                          "file atomically; give a file path")
    path = _resolve(path)
    directory = path.parent
    if path.is_dir():
        raise ReportError(f"{path} is a directory, not a report file path")
    if not directory.is_dir():
        raise ReportError(f"cannot write report {path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".agentperf-", dir=directory)
    except OSError as exc:
        raise ReportError(f"cannot write report {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    os.unlink(tmp)


def _special_file(path: Path) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a directory."""
    try:
        mode = path.stat().st_mode  # follows a symlink: its target counts
    except OSError:
        return None
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


def _resolve(path: Path) -> Path:
    """``path`` with symlinks followed: a report at a symlink replaces the link's target."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + fsync + rename).

    A reader never sees a half-written file and a crash leaves the previous
    version in place.  An existing file keeps its permissions; a new one gets
    0666 less the umask (``mkstemp`` alone would make it 0600).  A symlink is
    written through: its target is replaced, the link stays.  A FIFO, device or
    socket is refused (:class:`ReportError`), never replaced by a regular file.
    ``durable=False`` skips the fsync: the rename still protects against a
    crashing process, not against a power cut (for in-progress snapshots).
    """
    target = Path(path)
    special = _special_file(target)
    if special is not None:
        raise ReportError(f"cannot write {target}: it is {special}, not a regular file")
    target = _resolve(target)
    try:
        mode = target.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_report(path: Path, report: Mapping[str, Any], *, durable: bool = True) -> None:
    """Write ``report`` as compact JSON to ``path`` atomically.

    Compact, because pretty-printing goes through the json module's pure-Python
    encoder, ten times slower; ``python -m json.tool`` or the HTML report are
    for reading.
    """
    try:
        text = json.dumps(report, separators=(",", ":"), allow_nan=False, default=str,
                          ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        # NaN or infinity, or a lone surrogate, from a plugin's section
        text = json.dumps(plain_json(report), separators=(",", ":"), allow_nan=False,
                          ensure_ascii=False)
    atomic_write_text(path, text + "\n", durable=durable)


def plain_json(data: Any) -> Any:
    """A copy of ``data`` made of plain JSON values that any JSON reader accepts.

    Objects JSON cannot hold become their ``str``; NaN and infinities become
    null; a string that is not valid Unicode (a lone surrogate such as
    ``"\\ud800"``, which UTF-8 cannot encode) gets U+FFFD in its place.  One
    sanitiser for the report file, the xdist transport, history and HTML.
    """
    text = json.dumps(data, default=str, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = fix_surrogates(text)
    return json.loads(text, parse_constant=lambda _: None)


def json_safe(data: Any) -> Any:
    """``data`` itself when it is already plain JSON (the common case, checked at C
    speed), else :func:`plain_json` of it."""
    try:
        json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return plain_json(data)
    return data


def fix_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (not encodable in UTF-8) replaced by U+FFFD."""
    # UTF-16 pairs surrogates that belong together; a lone one becomes U+FFFD
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report, checking it is JSON of a schema version we understand."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise ReportError(f"report file {p} does not exist") from None
    except OSError as exc:
        raise ReportError(f"cannot read report file {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, 4300+ digit ints, nesting
        raise ReportError(f"report file {p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ReportError(f"report file {p} is not a pytest-agentperf report (no schema_version)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ReportError(
            f"report file {p} has schema_version {data['schema_version']!r}; "
            f"this pytest-agentperf reads version {SCHEMA_VERSION}"
        )
    if not isinstance(data.get("tests"), list):
        raise ReportError(f"report file {p} has no 'tests' list")
    return data
