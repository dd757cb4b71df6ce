"""Pure tests for the benchmark driver's planning and reporting (benchmarks/replay_all.py)."""

from __future__ import annotations

import math

import pytest

from benchmarks.replay_all import (
    geometric_mean,
    markdown_table,
    summarize,
    training_instances,
)
from daskflow.replay.simulate import lower_bound_s
from daskflow.replay.trace import Trace, TraceTask

pytestmark = pytest.mark.timeout(30)


def _trace(name: str, application: str, n: int, runtime_s: float = 1.0) -> Trace:
    tasks = tuple(TraceTask(f"t{i}", "work", runtime_s, None, 0, 0) for i in range(n))
    return Trace(name=name, tasks=tasks, application=application, source=f"/x/{name}.json")


def test_training_uses_only_other_instances_of_the_same_application():
    small, medium, large = _trace("a-s", "a", 8), _trace("a-m", "a", 80), _trace("a-l", "a", 8000)
    other_app = _trace("b-s", "b", 8)
    pool = [small, medium, large, other_app]
    scale = 8.0 / lower_bound_s(small, 8)  # small replayed with an 8 s lower bound
    chosen = training_instances(small, pool, slots=8, time_scale=scale, max_record_seconds=100)
    assert [t.name for t in chosen] == ["a-m"]  # large would take 8000 s here; b is another application
    # when every other instance is too long, the shortest one is still used
    chosen = training_instances(small, pool, slots=8, time_scale=scale, max_record_seconds=1)
    assert [t.name for t in chosen] == ["a-m"]
    assert training_instances(other_app, pool, slots=8, time_scale=1.0, max_record_seconds=100) == []


def _run(trace, mode, makespan_s, **extra):
    return {"trace": trace, "mode": mode, "tasks": 10, "makespan_s": makespan_s, "lower_bound_s": 8.0,
            "simulated_list_makespan_s": 8.8, "workers_lost": 0, "failed_tasks": 0, **extra}


def test_summary_ratios_and_geometric_mean():
    runs = [
        _run("x", "stock", 12.0), _run("x", "steer", 9.0, duration_median_ape=0.2, baseline_duration_median_ape=0.6),
        _run("x", "oracle", 8.5), _run("y", "stock", 10.0), _run("y", "steer", 10.0), _run("y", "oracle", 10.0),
        {"trace": "z", "mode": "steer", "error": "TimeoutError: ..."},
    ]
    rows = summarize(runs)
    assert [row["trace"] for row in rows] == ["x", "y"]
    x = rows[0]
    assert x["steer_over_stock"] == pytest.approx(0.75)
    assert x["stock_over_lb"] == pytest.approx(1.5)
    assert x["simulated_over_lb"] == pytest.approx(1.1)
    assert x["steer_over_oracle"] == pytest.approx(9.0 / 8.5)
    assert x["duration_median_ape"] == pytest.approx(0.2)
    assert geometric_mean([x["steer_over_stock"], rows[1]["steer_over_stock"]]) == pytest.approx(math.sqrt(0.75))
    table = markdown_table(rows, {"workers": 8, "threads_per_worker": 1, "target_seconds": 8.0, "memory_scale": 0.01,
                                  "bytes_scale": 0.001, "repeat": 1, "date": "today", "commit": "abc"})
    lines = table.splitlines()
    assert lines[2].startswith("| trace |")
    assert lines[3].count("|") == lines[2].count("|")
    assert "**geometric mean**" in lines[-1] and "**0.866**" in lines[-1]
    assert geometric_mean([None, -1.0]) is None
