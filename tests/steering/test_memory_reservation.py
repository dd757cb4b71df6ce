"""Memory: a task held for memory reserves the worker that drains first, so small tasks cannot starve it (pure)."""

from __future__ import annotations

import pytest

from scheduler_plugins.policy import PolicyConfig, TaskInfo, WorkerInfo, plan_dispatch
from scheduler_plugins.policy.placement import assign

pytestmark = pytest.mark.timeout(30)
GB = 2**30
BASE = int(0.2 * GB)  # what a worker process holds outside its tasks


def worker(address: str, running: list[TaskInfo] = ()) -> WorkerInfo:
    w = WorkerInfo(address, host=address, nthreads=2, memory_limit_bytes=2 * GB, pause_fraction=0.8,
                   terminate_fraction=0.95, memory_bytes=BASE)  # fmt: skip
    for task in running:
        assign(task, w)
    return w


def light(i: int, seconds: float = 1.0) -> TaskInfo:
    return TaskInfo(f"light-{i}", seconds, peak_memory_bytes=int(0.07 * GB))


def test_held_big_task_keeps_small_ones_off_the_worker_it_waits_for():
    """1.35 GiB fits a drained worker (0.2 + 1.35 < 1.6) but not beside a 0.07 GiB task: it is held, and the
    free thread of the worker that drains first is not given to a small task (the old rule gave both)."""
    workers = {"a": worker("a", [light(100, 0.3)]), "b": worker("b", [light(101, 0.9)])}
    workers["a"].backlog_s, workers["b"].backlog_s = 0.3, 0.9
    big = TaskInfo("big", 1.0, peak_memory_bytes=int(1.35 * GB))
    placements = {p.key: p for p in plan_dispatch([big] + [light(i) for i in range(4)], workers, PolicyConfig())}
    assert placements["big"].action == "hold" and placements["big"].reason == "memory"
    placed_on = [p.worker for p in placements.values() if p.action == "place"]
    assert placed_on and "a" not in placed_on  # a (drains first) is left to drain for the big task


def test_small_tasks_still_share_a_worker_reserved_for_a_task_that_leaves_room():
    """A held 1.0 GiB task leaves room for 0.07 GiB beside it: nothing is kept off its worker."""
    big_running = TaskInfo("running-big", 1.0, peak_memory_bytes=int(1.0 * GB))
    workers = {"a": worker("a", [big_running]), "b": worker("b", [TaskInfo("running-big-2", 1.0, peak_memory_bytes=int(1.0 * GB))])}
    held = TaskInfo("big", 1.0, peak_memory_bytes=int(1.0 * GB))
    placements = {p.key: p for p in plan_dispatch([held, light(0), light(1)], workers, PolicyConfig())}
    assert placements["big"].action == "hold"
    assert sorted(p.worker for p in placements.values() if p.action == "place") == ["a", "b"]


def simulate(tasks: list[TaskInfo], n_workers: int = 2) -> dict[str, float]:
    """Event simulation of list-scheduling rounds (a round at every finish); returns each task's start time."""
    now, running, started = 0.0, [], {}  # running: (end, worker, task)
    pending = list(tasks)
    while pending or running:
        workers = {f"w{i}": worker(f"w{i}") for i in range(n_workers)}
        for end, address, task in running:
            assign(task, workers[address])
        for w in workers.values():
            w.backlog_s = sum(end - now for end, address, _ in running if address == w.address)
        for placement in list(plan_dispatch(list(pending), workers, PolicyConfig())):
            if placement.action == "place":
                task = next(t for t in pending if t.key == placement.key)
                pending.remove(task)
                started[task.key] = now
                running.append((now + task.duration_s, placement.worker, task))
        assert running, "the run stalled"
        running.sort(key=lambda r: r[0])
        now = running[0][0]
        running = [r for r in running if r[0] > now]
    return started


def test_a_big_task_that_needs_a_drained_worker_is_not_left_for_last():
    """Two 2-thread workers, 28 small tasks of staggered lengths, two tasks that fit only a drained worker,
    ranked right after the first four small ones (which take every thread). The old rule admitted them only
    once small tasks ran out (after ~all of them); with the reservation each starts within the first finishes."""
    bigs = [TaskInfo(f"big-{i}", 1.0, peak_memory_bytes=int(1.35 * GB)) for i in range(2)]
    smalls = [light(i, 0.5 + 0.1 * (i % 7)) for i in range(28)]
    started = simulate(smalls[:4] + bigs + smalls[4:])
    last_small = max(started[t.key] for t in smalls)
    assert max(started[t.key] for t in bigs) < 0.5 * last_small
