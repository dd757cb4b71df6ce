"""The memory scenario's memory-aware lower bound, reported beside the issue's bound (pure)."""

from __future__ import annotations

import pytest

from benchmarks import multihost_summary as ms
from benchmarks.steering_memory import memory_lower_bound_s
from daskflow.replay.harness import resolve_trace
from daskflow.replay.trace import trace_from_dict

pytestmark = pytest.mark.timeout(30)


def test_big_tasks_that_cannot_share_a_worker_bound_the_makespan():
    """Eight 1 s tasks of 0.9 GB on 2 workers x 4 threads (1.6 GB usable each): 1 s by slots, but no two share a
    worker, so at least 4 s; the memory area alone says 8 x 0.9 / 3.2 = 2.25 s."""
    trace = trace_from_dict({"name": "t", "tasks": [
        {"id": f"h{i}", "category": "h", "runtime_s": 1.0, "memory_bytes": 900_000_000, "parents": []} for i in range(8)]})
    bound = memory_lower_bound_s(trace, workers=2, threads_per_worker=4, usable_bytes_per_worker=1.6e9)
    assert bound["issue"] == pytest.approx(1.0)
    assert bound["memory_area"] == pytest.approx(2.25)
    assert bound["exclusive"] == pytest.approx(4.0)
    assert bound["memory_aware"] == pytest.approx(4.0)


def test_small_tasks_leave_the_issue_bound():
    trace = trace_from_dict({"name": "t", "tasks": [
        {"id": f"s{i}", "category": "s", "runtime_s": 1.0, "memory_bytes": 10_000_000, "parents": []} for i in range(8)]})
    bound = memory_lower_bound_s(trace, workers=2, threads_per_worker=4, usable_bytes_per_worker=1.6e9)
    assert bound["memory_aware"] == bound["issue"] == pytest.approx(1.0)


def test_memory_pressure_bag_bound_is_the_slots():
    """The bag's heavy quarter needs about half of the slot bound on 4 x 2 GB workers: memory is not the bound."""
    bound = memory_lower_bound_s(resolve_trace("memory-pressure:0:64"), 4, 2, 1.6e9)
    assert bound["memory_aware"] == bound["issue"]
    assert bound["exclusive"] < 0.6 * bound["issue"]


def test_summary_reports_the_memory_aware_ratio():
    per_seed = {"0": {"lower_bounds": {"issue": 8.0, "memory_aware": 10.0},
                      "runs": [{"mode": "steer", "makespan_s": 11.0, "makespan_over_lower_bound": 1.375,
                                "workers_lost": 0, "failed_tasks": 0}]}}  # fmt: skip
    row = ms.memory_summary(per_seed)["0"]["steer"]
    assert row["median_over_memory_lb"] == pytest.approx(1.1)
    assert "× memory-aware LB" in ms.memory_markdown(ms.memory_summary(per_seed))


def test_random_order_list_schedule_pays_for_not_knowing_durations():
    """One 3 s task among twelve 1 s ones on 4 slots: 4 s when it starts by the second wave, 6 s when it
    starts last; the bag's random order pays past the issue's bound."""
    from benchmarks.steering_memory import random_order_list_s

    trace = trace_from_dict({"name": "t", "tasks": [{"id": "long", "category": "c", "runtime_s": 3.0, "parents": []}] + [
        {"id": f"s{i}", "category": "c", "runtime_s": 1.0, "parents": []} for i in range(12)]})
    value = random_order_list_s(trace, slots=4, samples=200)
    assert 4.0 <= value <= 6.0
    assert random_order_list_s(resolve_trace("memory-pressure:0:64"), 8, samples=50) > memory_lower_bound_s(
        resolve_trace("memory-pressure:0:64"), 4, 2, 1.6e9)["issue"]
