"""Pure policy tests: fake tasks and workers, no cluster."""

from __future__ import annotations

import pytest

from scheduler_plugins.policy import (
    DependencyInfo,
    PolicyConfig,
    TaskInfo,
    WorkerInfo,
    choose_worker,
    critical_path_ranks,
    estimate_finish,
    is_open,
    order_keys,
    plan_dispatch,
    remaining_s,
)

pytestmark = pytest.mark.timeout(30)
GB = 2**30


def test_critical_path_prefers_the_long_chain():
    """
    a(1) -> b(5) -> d(1)        c(3) -> e(0.5)
    The chain through b is longest, so a outranks c although c is longer.
    """
    durations = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 1.0, "e": 0.5}
    parents = {"b": ["a"], "d": ["b"], "e": ["c"]}
    ranks = critical_path_ranks(durations, parents)
    assert ranks == {"a": 7.0, "b": 6.0, "c": 3.5, "d": 1.0, "e": 0.5}
    assert order_keys(ranks)[:3] == ["a", "b", "c"]


def test_critical_path_ignores_parents_outside_the_batch_and_handles_diamonds():
    durations = {"x": 2.0, "y": 1.0, "z": 4.0, "w": 1.0}
    parents = {"y": ["x", "old-key"], "z": ["x"], "w": ["y", "z"]}
    ranks = critical_path_ranks(durations, parents)
    assert ranks["x"] == 2.0 + 4.0 + 1.0
    assert ranks["y"] == 2.0 and ranks["z"] == 5.0


def test_user_priority_comes_before_rank():
    ranks = {"long": 10.0, "short": 1.0}
    assert order_keys(ranks, user_priority={"short": 1}) == ["short", "long"]
    assert order_keys(ranks) == ["long", "short"]


def test_memory_headroom_avoids_the_nearly_full_worker():
    config = PolicyConfig()
    full = WorkerInfo("full", memory_limit_bytes=2 * GB, memory_bytes=int(1.2 * GB))
    roomy = WorkerInfo("roomy", memory_limit_bytes=2 * GB, memory_bytes=int(0.2 * GB), backlog_s=0.0)
    # the dependency lives on "full", so without memory "full" would win
    task = TaskInfo("big", 1.0, peak_memory_bytes=int(1.0 * GB), dependencies=(DependencyInfo(500_000_000, frozenset({"full"})),))
    placement = choose_worker(task, [full, roomy], config)
    assert placement.action == "place" and placement.worker == "roomy"
    assert placement.reason == "memory"
    assert {alt["worker"]: alt["fits_memory"] for alt in placement.alternatives} == {"full": False, "roomy": True}


def test_hold_when_nothing_fits_but_something_runs():
    config = PolicyConfig()
    busy = WorkerInfo("busy", nthreads=2, memory_limit_bytes=2 * GB, n_processing=1, running_peak_bytes=int(1.2 * GB), backlog_s=3.0)
    task = TaskInfo("big", 1.0, peak_memory_bytes=int(1.0 * GB))
    placement = choose_worker(task, [busy], config)
    assert placement.action == "hold" and placement.reason == "memory" and placement.worker is None


def test_never_stall_when_nothing_runs():
    """A task bigger than any worker's headroom goes where there is most room when nothing would free memory."""
    config = PolicyConfig()
    small = WorkerInfo("small", memory_limit_bytes=1 * GB)
    large = WorkerInfo("large", memory_limit_bytes=2 * GB)
    task = TaskInfo("huge", 1.0, peak_memory_bytes=3 * GB)
    placement = choose_worker(task, [small, large], config)
    assert placement.action == "place" and placement.worker == "large" and placement.reason == "memory-overcommit"


def test_locality_prefers_the_host_that_stores_the_input():
    config = PolicyConfig(storage_bandwidth_bytes_per_s=100e6)
    here = WorkerInfo("w-here", host="10.0.0.1")
    there = WorkerInfo("w-there", host="10.0.0.2")
    task = TaskInfo("read", 1.0, input_locations=(("10.0.0.2", 400_000_000),))
    placement = choose_worker(task, [here, there], config)
    assert placement.worker == "w-there" and placement.reason == "locality"
    estimate = estimate_finish(task, here, config)
    assert estimate.storage_s == pytest.approx(4.0)


def test_dependency_transfer_cost_counts_only_missing_bytes():
    config = PolicyConfig(bandwidth_bytes_per_s=1e6)
    task = TaskInfo("t", 0.0, dependencies=(DependencyInfo(2_000_000, frozenset({"a"})), DependencyInfo(1_000_000, frozenset({"b"}))))
    assert estimate_finish(task, WorkerInfo("a"), config).transfer_s == pytest.approx(1.0)
    assert estimate_finish(task, WorkerInfo("b"), config).transfer_s == pytest.approx(2.0)


def test_heterogeneous_speed_sends_the_long_task_to_the_fast_worker():
    config = PolicyConfig()
    slow = WorkerInfo("slow", speed=1.0)
    fast = WorkerInfo("fast", speed=2.0)
    placement = choose_worker(TaskInfo("long", 10.0), [slow, fast], config)
    assert placement.worker == "fast" and placement.finish_s == pytest.approx(5.0)


def test_threads_and_backlog_decide_the_wait():
    config = PolicyConfig()
    two_threads = WorkerInfo("two", nthreads=2, n_processing=2, backlog_s=4.0)
    one_thread = WorkerInfo("one", nthreads=1, n_processing=1, backlog_s=3.0)
    assert two_threads.wait_s() == pytest.approx(2.0)
    assert one_thread.wait_s() == pytest.approx(3.0)
    placement = choose_worker(TaskInfo("t", 1.0), [two_threads, one_thread], config, open_only=False)
    assert placement.worker == "two"


def test_resource_constraints_are_hard():
    config = PolicyConfig()
    cpu = WorkerInfo("cpu")
    gpu = WorkerInfo("gpu", n_processing=1, nthreads=1, backlog_s=0.01)
    task = TaskInfo("t", 1.0, allowed_workers=frozenset({"gpu"}))
    placement = choose_worker(task, [cpu, gpu], config)
    assert placement.worker == "gpu"
    assert choose_worker(TaskInfo("t", 1.0, allowed_workers=frozenset()), [cpu], config).action == "hold"


def test_plan_dispatch_is_a_list_schedule_in_priority_order():
    """Two free single-thread workers, three ready tasks: the first two are placed on different workers, the third waits."""
    config = PolicyConfig()
    workers = {"a": WorkerInfo("a"), "b": WorkerInfo("b")}
    tasks = [TaskInfo("t1", 5.0), TaskInfo("t2", 3.0), TaskInfo("t3", 1.0)]
    consumed = []

    def ready():
        for task in tasks:
            consumed.append(task.key)
            yield task

    placements = list(plan_dispatch(ready(), workers, config))
    assert [p.key for p in placements] == ["t1", "t2"]
    assert {p.worker for p in placements} == {"a", "b"}
    assert consumed == ["t1", "t2"]  # t3 was never taken from the ready queue
    assert not any(is_open(w, config) for w in workers.values())


def test_plan_dispatch_held_task_does_not_block_smaller_ones():
    config = PolicyConfig()
    workers = {"a": WorkerInfo("a", nthreads=2, memory_limit_bytes=2 * GB, n_processing=1, running_peak_bytes=int(1.2 * GB), backlog_s=2.0)}
    tasks = [TaskInfo("big", 5.0, peak_memory_bytes=GB), TaskInfo("small", 1.0, peak_memory_bytes=10_000_000)]
    placements = list(plan_dispatch(iter(tasks), workers, config))
    assert [(p.key, p.action) for p in placements] == [("big", "hold"), ("small", "place")]


def test_short_tasks_queue_a_little_deeper_than_long_ones():
    config = PolicyConfig(lookahead_s=0.05, max_depth=2)
    assert is_open(WorkerInfo("w", n_processing=1, backlog_s=0.001), config)
    assert not is_open(WorkerInfo("w", n_processing=1, backlog_s=2.0), config)
    assert not is_open(WorkerInfo("w", n_processing=2, backlog_s=0.001), config)


def test_overrunning_task_never_looks_finished():
    assert remaining_s(10.0, 4.0) == pytest.approx(6.0)
    assert remaining_s(1.0, 10.0) == pytest.approx(5.0)
    assert remaining_s(1.0, 0.9) == pytest.approx(0.1)  # near its predicted end the worker is about to open


def test_too_big_for_the_pause_threshold_accepts_a_pause_but_never_the_kill():
    """Waiting cannot make room for a task bigger than any empty worker's pause headroom: it goes where it stays under
    the terminate threshold, instead of waiting for the whole cluster to drain."""
    config = PolicyConfig()
    workers = [
        WorkerInfo("busy", nthreads=2, memory_limit_bytes=2 * GB, memory_bytes=int(0.3 * GB), n_processing=1,
                   running_peak_bytes=int(0.5 * GB), backlog_s=1.0),
        WorkerInfo("light", nthreads=2, memory_limit_bytes=2 * GB, memory_bytes=int(0.3 * GB), n_processing=1,
                   running_peak_bytes=int(0.05 * GB), backlog_s=1.0),
    ]
    task = TaskInfo("huge", 1.0, peak_memory_bytes=int(1.4 * GB))  # 1.4 + 0.3 > 0.8 x 2 GB
    placement = choose_worker(task, workers, config)
    assert placement.action == "place" and placement.worker == "light" and placement.reason == "memory-overcommit"
