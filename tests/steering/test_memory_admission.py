"""Memory: zero lost workers. Admission against real memory, and the pair rule (pure)."""

from __future__ import annotations

import pytest

from scheduler_plugins.policy import (
    PolicyConfig,
    TaskInfo,
    WorkerInfo,
    admitted_memory_bytes,
    choose_worker,
    pair_allowed,
    plan_dispatch,
)

pytestmark = pytest.mark.timeout(30)
GB = 2**30


def worker(address, *, memory=0, processing=0, peaks=0, max_peak=0, limit=2 * GB) -> WorkerInfo:
    return WorkerInfo(address, host=address, memory_limit_bytes=limit, pause_fraction=0.8, terminate_fraction=0.95,
                      memory_bytes=memory, n_processing=processing, nthreads=2, running_peak_bytes=peaks,
                      max_running_peak_bytes=max_peak)  # fmt: skip


def test_unmanaged_memory_not_given_back_counts_at_admission():
    """The worker holds 1.36 GiB unmanaged that no prediction accounts for: a 0.5 GiB task goes elsewhere."""
    held = admitted_memory_bytes(managed_bytes=0, unmanaged_floor=int(0.2 * GB), process_bytes=int(1.36 * GB),
                                 running_peaks_bytes=0)  # fmt: skip
    assert held == int(1.36 * GB)
    loaded, fresh = worker("a-loaded", memory=held), worker("b-fresh", memory=int(0.2 * GB))
    placement = choose_worker(TaskInfo("big", 1.0, peak_memory_bytes=int(0.5 * GB)), [loaded, fresh], PolicyConfig())
    assert placement.worker == "b-fresh" and placement.reason == "memory"


def test_running_tasks_are_not_counted_twice():
    """Process memory that is the running tasks' own (predicted) peaks is not counted again."""
    assert admitted_memory_bytes(0, int(0.1 * GB), int(1.1 * GB), running_peaks_bytes=1 * GB) == int(0.1 * GB)


def test_two_big_tasks_never_share_a_worker_even_when_one_overcommits():
    """2 GB workers pause at 1.6 GiB. A 1.7 GiB task (too big for any pause threshold) may run past the pause
    only alone: not beside a running 0.2 GiB one (it waits), but on an idle worker it goes (overcommit)."""
    huge = TaskInfo("huge-1", 1.0, peak_memory_bytes=int(1.7 * GB))
    busy = worker("busy", processing=1, peaks=int(0.2 * GB), max_peak=int(0.2 * GB))
    assert not pair_allowed(huge, busy)
    assert choose_worker(huge, [busy], PolicyConfig()).action == "hold"
    idle = worker("idle")
    placement = choose_worker(huge, [busy, idle], PolicyConfig())
    assert placement.worker == "idle" and placement.reason == "memory-overcommit"
    pair = TaskInfo("big-2", 1.0, peak_memory_bytes=int(1.0 * GB))
    assert not pair_allowed(pair, worker("w", processing=1, peaks=int(1.0 * GB), max_peak=int(1.0 * GB)))


def test_plan_dispatch_admits_one_big_task_per_worker_and_holds_the_rest():
    workers = {name: worker(name) for name in ("a", "b")}
    tasks = [TaskInfo(f"big-{i}", 1.0, peak_memory_bytes=int(1.0 * GB)) for i in range(4)]
    placements = list(plan_dispatch(tasks, workers, PolicyConfig()))
    placed = [p for p in placements if p.action == "place"]
    assert sorted(p.worker for p in placed) == ["a", "b"]
    assert all(p.reason == "memory" for p in placements if p.action == "hold")


def test_small_tasks_still_pair_with_a_big_one():
    busy = worker("busy", processing=1, peaks=int(1.0 * GB), max_peak=int(1.0 * GB))
    assert pair_allowed(TaskInfo("small", 1.0, peak_memory_bytes=int(0.1 * GB)), busy)
