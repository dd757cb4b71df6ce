"""Pure tests: loading, validating, scaling and generating traces."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from daskflow.errors import TraceFormatError
from daskflow.replay.simulate import critical_path_s, lower_bound_s
from daskflow.replay.trace import (
    load_trace,
    memory_pressure_bag,
    sanitize_category,
    scale_time,
    scale_to_target,
    skewed_bag,
    trace_from_dict,
)

pytestmark = pytest.mark.timeout(60)

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "srasearch-13tasks-cut.json"


def _task(task_id, parents=(), runtime_s=1.0, **extra):
    return {"id": task_id, "category": "c", "runtime_s": runtime_s, "memory_bytes": None,
            "input_bytes": 0, "output_bytes": 0, "parents": list(parents), **extra}


def _write(tmp_path, tasks, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"name": "t", "tasks": tasks}))
    return path


def test_load_fixture():
    trace = load_trace(FIXTURE)
    assert len(trace) == 13
    assert trace.application == "srasearch"
    assert trace.tasks[0].id == "bowtie2-build_ID0000001"
    assert trace.has_memory()
    assert set(trace.categories()) == {"bowtie2-build", "fasterq-dump", "bowtie2", "merge"}
    merge = trace.tasks[-1]
    assert merge.parents == ("merge_ID0000063",)
    assert trace.parent_indices()[-1] == [11]
    assert trace.time_scale == 1.0


def test_load_shared_workloads(workloads_dir):
    for path in sorted(workloads_dir.glob("*.json")):
        trace = load_trace(path)
        stats = trace.meta["stats"]
        assert len(trace) == stats["n_tasks"]
        assert math.isclose(trace.total_work_s(), stats["total_runtime_s"], abs_tol=0.01)
        assert math.isclose(critical_path_s(trace), stats["critical_path_s"], abs_tol=0.01)


@pytest.mark.parametrize(
    "tasks, field, task_label",
    [
        ([_task("a"), _task("a")], "'id'", "'a'"),
        ([_task("a"), _task("b", parents=["zzz"])], "'parents'", "'b'"),
        ([_task("b", parents=["a"]), _task("a")], "'parents'", "'b'"),
        ([_task("a", runtime_s=-1.0)], "'runtime_s'", "'a'"),
        ([_task("a", runtime_s="long")], "'runtime_s'", "'a'"),
        ([_task("a", memory_bytes="1GB")], "'memory_bytes'", "'a'"),
        ([_task("a", input_bytes=-5)], "'input_bytes'", "'a'"),
        ([_task("a", parents="b")], "'parents'", "'a'"),
        ([{"id": "a", "runtime_s": 1.0}], "'category'", "'a'"),
    ],
)
def test_errors_name_file_task_and_field(tmp_path, tasks, field, task_label):
    path = _write(tmp_path, tasks)
    with pytest.raises(TraceFormatError) as info:
        load_trace(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message
    assert f"task {task_label}" in message
    assert "fix" in message  # says how to repair it


def test_error_topological_order_is_explained(tmp_path):
    path = _write(tmp_path, [_task("b", parents=["a"]), _task("a")])
    with pytest.raises(TraceFormatError, match="topological order"):
        load_trace(path)
    path = _write(tmp_path, [_task("b", parents=["nope"])], name="unknown.json")
    with pytest.raises(TraceFormatError, match="not a task of this trace"):
        load_trace(path)


def test_errors_for_unreadable_files(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(TraceFormatError, match="does not exist"):
        load_trace(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TraceFormatError, match="broken.json"):
        load_trace(broken)
    empty = _write(tmp_path, [], name="empty.json")
    with pytest.raises(TraceFormatError, match="'tasks'"):
        load_trace(empty)


def test_scale_to_target_sets_lower_bound_and_keeps_shape():
    trace = load_trace(FIXTURE)
    for slots in (1, 4, 8):
        scaled = scale_to_target(trace, 3.0, slots)
        assert math.isclose(lower_bound_s(scaled, slots), 3.0, rel_tol=1e-9)
        ratios = {b.runtime_s / a.runtime_s for a, b in zip(trace.tasks, scaled.tasks) if a.runtime_s > 0}
        assert max(ratios) == pytest.approx(min(ratios))
        assert scaled.time_scale == pytest.approx(next(iter(ratios)))
    twice = scale_time(scale_time(trace, 2.0), 3.0)
    assert twice.time_scale == pytest.approx(6.0)


def test_scale_rejects_all_zero_and_bad_targets():
    zero = trace_from_dict({"name": "zero", "tasks": [_task("a", runtime_s=0.0)]})
    with pytest.raises(TraceFormatError, match="zero"):
        scale_to_target(zero, 8.0, 2)
    trace = load_trace(FIXTURE)
    with pytest.raises(ValueError):
        scale_to_target(trace, 0.0, 2)


def test_sanitized_categories_are_dask_prefixes():
    from dask.utils import key_split

    for category in ["fasterq-dump", "bowtie2-build", "NFCORE_RNASEQ.RNASEQ.ALIGN_STAR.STAR_ALIGN",
                     "cat", "2pass", "weird name/with:stuff", "deadbeef"]:
        name = sanitize_category(category)
        for run8 in ("deadbeef", "12345678", "0a1b2c3d"):
            assert key_split(f"{name}-{run8}-17") == name


def test_skewed_bag_grows_with_input_and_is_heavy_tailed():
    bag = skewed_bag(n=240, seed=3)
    assert len(bag) == 240 and all(not t.parents for t in bag.tasks)
    assert bag == skewed_bag(n=240, seed=3)  # deterministic
    assert bag != skewed_bag(n=240, seed=4)
    runtimes = sorted(t.runtime_s for t in bag.tasks)
    assert runtimes[-1] / runtimes[len(runtimes) // 2] > 3  # heavy tail
    for category in bag.categories():
        pairs = [(math.log(t.input_bytes), math.log(t.runtime_s)) for t in bag.tasks if t.category == category]
        xs, ys = zip(*pairs)
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        cov = sum((x - mx) * (y - my) for x, y in pairs)
        corr = cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
        assert corr > 0.9


def test_memory_pressure_bag_has_a_heavy_quarter():
    bag = memory_pressure_bag(n=64, seed=1)
    heavy = [t for t in bag.tasks if t.category == "mem_heavy"]
    assert len(heavy) == 16
    assert all(1_000_000_000 <= t.memory_bytes <= 1_400_000_000 for t in heavy)
    assert all(t.memory_bytes < 100_000_000 for t in bag.tasks if t.category == "mem_light")
