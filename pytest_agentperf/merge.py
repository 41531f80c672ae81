"""Merging reports: CI shards and repeated runs into one report.

Different nodeids are collected; the same nodeid in several inputs has its
samples pooled (uniformly, in proportion to each input's count) and its
latency summary recomputed, flagged ``exact: false`` when approximate.
Per-run figures (tokens, operation totals) are averaged so a merged baseline
stays comparable with one run.  The statistics live in :mod:`.stats`; the
comparison of reports in :mod:`.compare`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .compare import environment_warnings
from .reportdata import number, samples
from .stats import summarize

__all__ = ["merge_entries", "merge_reports", "pool_labelled", "pool_samples"]


def pool_samples(
    parts: Sequence[tuple[Sequence[float], int]], size: int, seed: int = 0
) -> tuple[list[float], bool]:
    """Pool reservoirs into one uniform sample of at most ``size`` values.

    Each part is ``(reservoir, count)``: a uniform sample standing for
    ``count`` original values.  Returns ``(samples, exact)``; ``exact`` is true
    when every original value is kept (each reservoir is complete and the total
    fits).  Otherwise each part contributes in proportion to its ``count``
    (seeded, so merging is reproducible).
    """
    samples, _, exact = pool_labelled(
        [(s, c, [0] * len(s)) for s, c in parts], size, seed)
    return samples, exact


def pool_labelled(
    parts: Sequence[tuple[Sequence[float], int, Sequence[int]]], size: int, seed: int = 0
) -> tuple[list[float], list[int], bool]:
    """:func:`pool_samples` keeping a label per value (the session it came from).

    Each part is ``(reservoir, count, labels)`` with one label per reservoir
    value; returns ``(samples, labels, exact)``.
    """
    kept = [(list(s), int(c), list(g)) for s, c, g in parts if c > 0 and len(s) > 0]
    total = sum(c for _, c, _ in kept)
    if total == 0:
        return [], [], True
    if all(len(s) == c for s, c, _ in kept) and total <= size:
        return ([v for s, _, _ in kept for v in s], [g for _, _, gs in kept for g in gs],
                True)
    target = min([float(size)] + [len(s) * total / c for s, c, _ in kept])
    rng = random.Random(seed)
    out: list[float] = []
    labels: list[int] = []
    for s, c, gs in kept:
        k = min(len(s), max(1, round(target * c / total)))
        for i in rng.sample(range(len(s)), k):
            out.append(s[i])
            labels.append(gs[i])
    return out[:size], labels[:size], False


def _session_labels(parts: Sequence[Mapping[str, Any]], sessions: bool) -> list[list[int]]:
    """One session label per sample of each part: a part's own ``sample_sessions``
    (a merged entry) shifted past the labels used so far, else one new session per part
    (all parts one session when ``sessions`` is false: runs of one process)."""
    out: list[list[int]] = []
    offset = 0
    for p in parts:
        n = len(samples(p.get("samples")))
        own = p.get("sample_sessions")
        if not sessions:
            out.append([0] * n)
        elif isinstance(own, list) and len(own) == n and all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in own):
            out.append([offset + g for g in own])
            offset += max(own, default=-1) + 1
        else:
            out.append([offset] * n)
            offset += 1
    return out


_OUTCOME_RANK = ("crashed", "error", "failed", "interrupted", "xpassed", "passed", "xfailed",
                 "skipped")
_TEST_RESERVOIR = 1000
_OP_RESERVOIR = 200


def _worst_outcome(outcomes: Iterable[Any]) -> str:
    found = {str(o) for o in outcomes}
    for outcome in _OUTCOME_RANK:
        if outcome in found:
            return outcome
    return "passed"


def _mean(values: Iterable[Any]) -> float | None:
    nums = [v for v in (number(x) for x in values) if v is not None]
    return math.fsum(nums) / len(nums) if nums else None


def _merge_latency(parts: list[Mapping[str, Any]], sessions: bool
                   ) -> tuple[dict[str, Any], bool]:
    with_data = [p for p in parts if isinstance(p.get("count"), int) and p["count"] > 0]
    if not with_data:
        return dict(parts[0]) if parts else summarize(()), True
    labels = _session_labels(with_data, sessions)
    pooled, pooled_labels, exact = pool_labelled(
        [(samples(p.get("samples")), int(p["count"]), g)
         for p, g in zip(with_data, labels, strict=True)], _TEST_RESERVOIR)
    exact = exact and all(p.get("exact", True) for p in with_data)
    out = summarize(pooled)
    if not exact:  # count, min, max and mean are known exactly from the inputs
        count = sum(int(p["count"]) for p in with_data)
        out["count"] = count
        mins = [number(p.get("min")) for p in with_data]
        maxs = [number(p.get("max")) for p in with_data]
        out["min"] = min(v for v in mins if v is not None) if any(
            v is not None for v in mins) else out["min"]
        out["max"] = max(v for v in maxs if v is not None) if any(
            v is not None for v in maxs) else out["max"]
        sums = [(number(p.get("mean")) or 0.0) * int(p["count"]) for p in with_data]
        out["mean"] = math.fsum(sums) / count
    out["exact"] = exact
    sources = []
    for p in with_data:
        for src in str(p.get("source", "")).split("+"):
            if src and src not in sources:
                sources.append(src)
    out["source"] = "+".join(sources) or "none"
    out["samples"] = pooled
    if len(set(pooled_labels)) > 1:
        out["sample_sessions"] = pooled_labels
    return out, exact


def _merge_operation(parts: list[Mapping[str, Any]], runs: int, sessions: bool
                     ) -> tuple[dict[str, Any], bool]:
    labels = _session_labels(parts, sessions)
    pooled, pooled_labels, exact = pool_labelled(
        [(samples(p.get("samples")), int(p.get("count") or 0), g)
         for p, g in zip(parts, labels, strict=True)], _OP_RESERVOIR)
    out: dict[str, Any] = dict(parts[0])
    out.pop("sample_sessions", None)
    count = sum(int(p.get("count") or 0) for p in parts)
    total_s = math.fsum(number(p.get("total_s")) or 0.0 for p in parts)
    summary = summarize(pooled)
    out.update({
        "count": count,
        "total_s": total_s / runs,
        "mean_s": total_s / count if count else None,
        "p50_s": summary["p50"],
        "p95_s": summary["p95"],
        "max_s": max((v for v in (number(p.get("max_s")) for p in parts) if v is not None),
                     default=summary["max"]),
        "tokens": round(sum(int(p.get("tokens") or 0) for p in parts) / runs),
        "samples": pooled,
    })
    if len(set(pooled_labels)) > 1:
        out["sample_sessions"] = pooled_labels
    for key in ("prompt_tokens", "completion_tokens", "errors"):
        if key in out:
            out[key] = round(sum(int(p.get(key) or 0) for p in parts) / runs)
    if "cpu_s" in out:
        out["cpu_s"] = math.fsum(number(p.get("cpu_s")) or 0.0 for p in parts) / runs
    return out, exact


def _peak(memory: Mapping[str, Any]) -> float:
    return number(memory.get("peak_mb")) or 0.0


def _merge_runs(parts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``runs`` objects (perf_runs) of several sessions: counts add up."""
    out = dict(parts[0])
    out["runs"] = sum(int(p.get("runs") or 0) for p in parts)
    out["durations_s"] = [d for p in parts for d in samples(p.get("durations_s"))][:10_000]
    for key in ("tokens", "llm_calls"):
        total = sum(int((p.get(key) or {}).get("total") or 0) for p in parts)
        out[key] = {"mean": total / out["runs"] if out["runs"] else 0.0, "total": total}
    out["sessions"] = len(parts)
    return out


def merge_entries(entries: Sequence[Mapping[str, Any]], *, sessions: bool = True
                  ) -> dict[str, Any]:
    """One entry from several runs of the same test.

    ``sessions``: the entries come from separate pytest sessions (processes),
    so the pooled samples keep ``sample_sessions``, the session each came
    from, for the regression gate's round-level test; false for repeated runs
    inside one process (``perf_runs``).

    Distributions pool (latency and operation samples; percentiles are
    recomputed, ``exact`` is false when the pooled samples are a subsample);
    per-run figures (tokens, operation totals, durations) are averaged over the
    runs so the result stays comparable with a single run; peak memory keeps
    the largest peak and every run's value in ``memory.values``; the outcome
    is the worst one.  ``merged`` records ``runs`` and ``exact``.
    """
    if not entries:
        raise ValueError("merge_entries needs at least one entry")
    if len(entries) == 1:
        return dict(entries[0])
    runs = len(entries)
    out: dict[str, Any] = {}
    for e in entries:  # sections (cache, load, …) from the first entry holding them
        for key, value in e.items():
            out.setdefault(key, value)
    latency, exact = _merge_latency(
        [e["latency"] for e in entries if isinstance(e.get("latency"), Mapping)], sessions)
    out["latency"] = latency
    out["outcome"] = _worst_outcome(e.get("outcome") for e in entries)
    out["duration_s"] = _mean(e.get("duration_s") for e in entries)
    out["cpu_time_s"] = _mean(e.get("cpu_time_s") for e in entries)
    memories: list[Mapping[str, Any]] = [
        e["memory"] for e in entries if isinstance(e.get("memory"), Mapping)]
    if memories:
        peaks = [v for v in (number(m.get("peak_mb")) for m in memories) if v is not None]
        values: list[float] = []
        for m in memories:
            values.extend(samples(m.get("values")) or [
                v for v in (number(m.get("peak_mb")),) if v is not None])
        best = max(memories, key=_peak)
        memory: dict[str, Any] = dict(best)
        if peaks:
            memory["peak_mb"] = max(peaks)
        memory["values"] = values
        out["memory"] = memory
    tokens = [e["tokens"] for e in entries if isinstance(e.get("tokens"), Mapping)]
    if tokens:
        merged_tokens = dict(tokens[0])
        for key in ("total", "prompt", "completion", "requests", "unknown_calls"):
            if key in merged_tokens:
                merged_tokens[key] = round(sum(int(t.get(key) or 0) for t in tokens) / runs)
        requests = merged_tokens.get("requests") or 1
        merged_tokens["per_request"] = merged_tokens.get("total", 0) / requests
        out["tokens"] = merged_tokens
    ops: dict[str, list[Mapping[str, Any]]] = {}
    for e in entries:
        if isinstance(e.get("operations"), Mapping):
            for key, data in e["operations"].items():
                if isinstance(data, Mapping):
                    ops.setdefault(key, []).append(data)
    merged_ops: dict[str, Any] = {}
    for key, parts in ops.items():
        merged_ops[key], op_exact = _merge_operation(parts, runs, sessions)
        exact = exact and op_exact
    out["operations"] = merged_ops
    out["violations"] = [v for e in entries for v in (e.get("violations") or [])]
    out["findings"] = [f for e in entries for f in (e.get("findings") or [])]
    out["merged"] = {"runs": runs, "exact": exact}
    repeated = [e["runs"] for e in entries if isinstance(e.get("runs"), Mapping)]
    if repeated:
        out["runs"] = _merge_runs(repeated)
    return out


def merge_reports(
    reports: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
) -> dict[str, Any]:
    """One report from several (CI shards or separate runs).

    Tests with distinct nodeids are collected; the same nodeid in several
    inputs is merged by :func:`merge_entries`.  The summary is recomputed,
    ``complete`` is true only when every input is complete, the environment is
    the first input's (``merge.environment_warnings`` lists differences).
    """
    from .report import build_report  # local: keep the import graph obvious

    if not reports:
        raise ValueError("merge_reports needs at least one report")
    names = list(names) if names is not None else [f"input {i + 1}" for i in range(len(reports))]
    if len(names) != len(reports):
        raise ValueError("merge_reports: one name per report")
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for report in reports:
        for entry in report.get("tests", []):
            if isinstance(entry, Mapping) and "nodeid" in entry:
                grouped.setdefault(str(entry["nodeid"]), []).append(entry)
    tests = [merge_entries(group) for group in grouped.values()]
    first = reports[0]
    warnings: list[str] = []
    for name, report in zip(names[1:], reports[1:], strict=True):
        for w in environment_warnings(first.get("environment"), report.get("environment")):
            warnings.append(f"{name}: {w}")
    reasons = [f"{n}: {r.get('incomplete_reason') or 'incomplete'}"
               for n, r in zip(names, reports, strict=True) if not r.get("complete")]
    starts = [str(r["started"]) for r in reports if r.get("started")]
    settings = first.get("settings")
    memory_method = settings.get("memory_method") if isinstance(settings, Mapping) else None
    return build_report(
        tests=tests,
        env=dict(first.get("environment") or {}),
        complete=not reasons,
        incomplete_reason="; ".join(reasons) or None,
        started=min(starts) if starts else None,
        memory_method=memory_method,
        extra={"merge": {
            "inputs": names,
            "exact": all(t.get("merged", {}).get("exact", True) for t in tests),
            "environment_warnings": warnings,
        }},
    )
