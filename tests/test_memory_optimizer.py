"""MemoryOptimizer: the guide's API with its bugs fixed."""

from __future__ import annotations

import array
import gc
import sys

import psutil
import pytest

from pytest_agentperf.toolkit.memory_optimizer import MemoryOptimizer, peak_rss_mb, slotted_class


class _Blob:
    def __init__(self, size: int) -> None:
        self.data = bytearray(size)


def test_small_dicts_become_slotted_objects_of_one_cached_class() -> None:
    a = MemoryOptimizer.optimize_data_structure({"role": "user", "content": "hi"})
    b = MemoryOptimizer.optimize_data_structure({"role": "bot", "content": "yo"})
    assert type(a) is type(b)  # the guide made a new class per call
    assert a.role == "user" and a["content"] == "hi"
    assert not hasattr(a, "__dict__")
    assert a != b
    assert a == MemoryOptimizer.optimize_data_structure({"role": "user", "content": "hi"})
    assert "role='user'" in repr(a)
    assert slotted_class(("role", "content")) is type(a)
    with pytest.raises(KeyError):
        a["missing"]  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        {"not an identifier": 1},
        {1: "int key"},
        {"__dunder": 1},
        {"class": 1},
        {f"k{i}": i for i in range(10)},  # not small
    ],
)
def test_dicts_that_cannot_be_slotted_are_unchanged(data: dict[object, object]) -> None:
    assert MemoryOptimizer.optimize_data_structure(data) is data


def test_numeric_lists_become_arrays() -> None:
    ints = MemoryOptimizer.optimize_data_structure([1, 2, 3])
    assert isinstance(ints, array.array) and ints.typecode == "q" and list(ints) == [1, 2, 3]
    mixed = MemoryOptimizer.optimize_data_structure([1, 2.5])
    assert isinstance(mixed, array.array) and mixed.typecode == "d"
    for unchanged in ([True, False], [2**70], ["a", 1]):
        assert MemoryOptimizer.optimize_data_structure(unchanged) is unchanged
    assert MemoryOptimizer.optimize_data_structure("text") == "text"


def test_track_large_object_holds_only_weak_references() -> None:
    opt = MemoryOptimizer()
    blob = _Blob(1024)
    assert opt.track_large_object("blob", blob) is True
    assert opt.track_large_object("history", [1, 2, 3]) is False  # the guide raised TypeError
    assert opt.untrackable_objects == {"history": "list"}
    assert len(opt.large_objects) == 1
    del blob
    gc.collect()
    assert len(opt.large_objects) == 0


def test_optimize_memory_reports_and_records_gc_runs() -> None:
    opt = MemoryOptimizer()
    keep = _Blob(10)
    opt.track_large_object("a", keep)
    stats = opt.optimize_memory()
    assert stats["weak_refs_cleared"] == 1
    assert len(opt.large_objects) == 0
    assert stats["memory_freed_mb"] == pytest.approx(
        stats["memory_before_mb"] - stats["memory_after_mb"]
    )
    assert stats["objects_collected"] >= 0
    opt.optimize_memory()
    first, second = opt.gc_stats
    assert second["timestamp"] >= first["timestamp"]  # monotonic
    section = opt.report_section()
    assert section["gc_runs"] == 2 and section["large_objects_tracked"] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux")
def test_peak_memory_is_real_on_linux() -> None:
    peak = peak_rss_mb()
    current = psutil.Process().memory_info().rss / 1024 / 1024
    assert peak >= current * 0.99 > 0  # the guide reported 0 off Windows


def test_memory_report_lists_types_by_size() -> None:
    opt = MemoryOptimizer()
    report = opt.get_memory_report(top=5)
    assert report["peak_memory_mb"] >= report["current_memory_mb"] * 0.99 > 0
    consumers = report["top_consumers"]
    assert len(consumers) == 5
    sizes = [c["size_mb"] for c in consumers]
    assert sizes == sorted(sizes, reverse=True)
    for row in consumers:
        assert isinstance(row["type"], str) and row["location"] == row["type"]
        assert isinstance(row["count"], int) and row["count"] > 0
    assert report["gc_stats"] == [] and report["large_objects_tracked"] == 0
