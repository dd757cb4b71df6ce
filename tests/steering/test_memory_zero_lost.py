"""Memory: zero lost workers. The learned baseline, the pair rule in every path, admission races (pure and fake scheduler).

2 GiB workers pause at 1.6 GiB and are killed at 1.9 GiB; the bags' big tasks peak at 1-1.4 GiB.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from scheduler_plugins.policy import (
    MemoryBaseline,
    Placement,
    PolicyConfig,
    TaskInfo,
    TaskPrediction,
    WorkerInfo,
    admitted_memory_bytes,
    is_memory_heavy,
    pin_is_loose,
    plan_dispatch,
)
from tests.steering.fakes import FakeClock

pytestmark = pytest.mark.timeout(30)
GB = 2**30


# ------------------------------------------------------------------- the baseline


def test_the_baseline_is_learned_from_idle_heartbeats_only():
    baseline = MemoryBaseline()
    assert baseline.observe("w", reading_at=1.0, process_bytes=int(1.5 * GB), managed_bytes=0, busy=True) is False
    assert baseline.bytes_for("w", unmanaged_old=int(0.1 * GB)) == int(0.1 * GB)  # distributed's rolling minimum
    assert baseline.observe("w", reading_at=2.0, process_bytes=int(0.5 * GB), managed_bytes=int(0.1 * GB), busy=False)
    assert baseline.bytes_for("w", unmanaged_old=int(0.1 * GB)) == pytest.approx(0.4 * GB, abs=1)  # process - managed
    assert baseline.bytes_for("other", unmanaged_old=None) == 0


def test_the_baseline_follows_memory_that_is_not_given_back_and_ignores_one_spike():
    """A worker that keeps 1.2 GiB after its big tasks: the baseline rises to it within a few idle heartbeats,
    and one reading taken before memory was released does not move it."""
    baseline = MemoryBaseline(recent_n=3)
    for at, unmanaged in enumerate([0.15, 0.15, 0.15]):
        baseline.observe("w", at, int(unmanaged * GB), 0, busy=False)
    baseline.observe("w", 3, int(1.5 * GB), 0, busy=False)  # one spike
    assert baseline.bytes_for("w", None) == int(0.15 * GB)
    for at in (4, 5):
        baseline.observe("w", at, int(1.2 * GB), 0, busy=False)
    assert baseline.bytes_for("w", None) == int(1.2 * GB)


def test_one_heartbeat_is_one_reading():
    baseline = MemoryBaseline(recent_n=3)
    for _ in range(3):
        baseline.observe("w", reading_at=7.0, process_bytes=int(1.2 * GB), managed_bytes=0, busy=False)
    baseline.observe("w", reading_at=8.0, process_bytes=int(0.2 * GB), managed_bytes=0, busy=False)
    baseline.observe("w", reading_at=9.0, process_bytes=int(0.2 * GB), managed_bytes=0, busy=False)
    assert baseline.bytes_for("w", None) == int(0.2 * GB)


def test_a_baseline_that_grew_keeps_a_second_big_task_off_a_worker_whose_big_task_just_started():
    """The running 1.0 GiB task has not allocated yet (process 1.25 GiB = the 1.2 GiB the worker keeps + a little):
    process - predicted peaks says 0.25 GiB. Only the learned baseline sees the 1.2 GiB; a lifetime minimum
    (0.15 GiB, from when the worker was fresh) would admit a 0.3 GiB task: 1.2 + 1.0 + 0.3 > 1.9 GiB, killed."""
    pause = 1.6 * GB
    lifetime_floor = admitted_memory_bytes(0, int(0.15 * GB), int(1.25 * GB), running_peaks_bytes=1 * GB)
    learned = admitted_memory_bytes(0, int(1.2 * GB), int(1.25 * GB), running_peaks_bytes=1 * GB)
    assert lifetime_floor == int(0.25 * GB) and learned == int(1.2 * GB)
    task = TaskInfo("big", 1.0, peak_memory_bytes=int(0.3 * GB))
    for memory, admitted in ((lifetime_floor, True), (learned, False)):
        worker = WorkerInfo("w", memory_limit_bytes=2 * GB, pause_fraction=0.8, memory_bytes=memory, nthreads=2,
                            n_processing=1, running_peak_bytes=1 * GB, max_running_peak_bytes=1 * GB)  # fmt: skip
        assert (worker.headroom_bytes >= task.peak_memory_bytes) is admitted
        assert pause - memory - 1 * GB == pytest.approx(worker.headroom_bytes)


# ---------------------------------------------------------------- the pair rule, every path


def test_no_round_ever_co_locates_two_tasks_whose_peaks_together_pass_the_pause_threshold():
    """Whatever the peaks, the baseline and the order: after a round, any two tasks on one worker fit under its
    pause threshold together (the overcommit path included: a task too big for any headroom runs alone, not even
    a task predicted to need no memory joins it)."""
    peaks_gb = [0.0, 0.1, 0.5, 0.8, 1.0, 1.4, 1.7]
    config = PolicyConfig()
    for memory_gb, order in itertools.product([0.0, 0.3], itertools.permutations(peaks_gb, 4)):
        workers = {name: WorkerInfo(name, memory_limit_bytes=2 * GB, pause_fraction=0.8, terminate_fraction=0.95,
                                    memory_bytes=int(memory_gb * GB), nthreads=2) for name in ("a", "b")}  # fmt: skip
        tasks = [TaskInfo(f"t{i}", 1.0, peak_memory_bytes=int(p * GB)) for i, p in enumerate(order)]
        peaks = {t.key: t.peak_memory_bytes for t in tasks}
        on: dict[str, list[int]] = {"a": [], "b": []}
        for placement in plan_dispatch(tasks, workers, config):
            if placement.action == "place":
                on[placement.worker].append(peaks[placement.key])
        for name, placed in on.items():
            for first, second in itertools.combinations(placed, 2):
                assert first + second <= workers[name].pause_bytes, (memory_gb, order, name, placed)


def test_a_task_sent_in_this_round_counts_at_once():
    """One worker, two 1.0 GiB tasks ready together: the first is placed, the second is held (not admitted on a
    heartbeat that cannot show the first yet)."""
    workers = {"w": WorkerInfo("w", memory_limit_bytes=2 * GB, pause_fraction=0.8, nthreads=2)}
    tasks = [TaskInfo("big-1", 1.0, peak_memory_bytes=1 * GB), TaskInfo("big-2", 1.0, peak_memory_bytes=1 * GB)]
    placements = list(plan_dispatch(tasks, workers, PolicyConfig()))
    assert [(p.key, p.action) for p in placements] == [("big-1", "place"), ("big-2", "hold")]
    assert workers["w"].running_peak_bytes == 1 * GB and workers["w"].n_processing == 1


def test_heavy_tasks_are_pinned_strictly_so_work_stealing_cannot_pair_them():
    worker = WorkerInfo("w", memory_limit_bytes=2 * GB, pause_fraction=0.8)
    heavy = TaskInfo("big", 1.0, peak_memory_bytes=int(0.5 * GB))
    light = TaskInfo("small", 1.0, peak_memory_bytes=int(0.01 * GB))
    assert is_memory_heavy(heavy, worker, PolicyConfig()) and not is_memory_heavy(light, worker, PolicyConfig())
    placement = Placement("big", "place", "w", "finish-time")
    assert pin_is_loose(placement, memory_heavy=False) and not pin_is_loose(placement, memory_heavy=True)


# -------------------------------------------------- the dispatcher between rounds (fake scheduler)


class FakeScheduler:
    """Just enough scheduler for dispatch rounds: recommending ``processing`` moves a task to its pinned worker."""

    def __init__(self, workers) -> None:
        self.running = workers
        self.tasks: dict = {}
        self.plugins: dict = {}
        self.bandwidth = 1e8
        self.loop = SimpleNamespace(call_later=lambda delay, callback: None, remove_timeout=lambda handle: None)

    def log_event(self, topic, event):
        pass

    def transitions(self, recommendations, stimulus_id):
        by_address = {w.address: w for w in self.running}
        for key, finish in recommendations.items():
            task = self.tasks[key]
            if finish == "processing":
                [address] = task.worker_restrictions
                task.state = "processing"
                by_address[address].processing.append(task)


def fake_worker(address: str, process_bytes: int, last_seen: float):
    return SimpleNamespace(address=address, host=address, nthreads=2, resources={}, memory_limit=2 * GB, nbytes=0,
                           memory=SimpleNamespace(process=process_bytes, unmanaged_old=int(0.1 * GB)),
                           processing=[], last_seen=last_seen)  # fmt: skip


def fake_ready_task(key: str):
    return SimpleNamespace(key=key, state="no-worker", priority=(0, key), dependencies=(), annotations={},
                           resource_restrictions=None, worker_restrictions=None, loose_restrictions=False,
                           prefix=SimpleNamespace(duration_average=None, name="big"))  # fmt: skip


def steering(clock, scheduler):
    from scheduler_plugins.steering import SteeringPlugin

    predictor = SimpleNamespace(model_version="oracle", observe=lambda *a, **k: None)
    plugin = SteeringPlugin(mode="steer", oracle=True, predictor=predictor, clock=clock, wall_clock=clock)
    plugin.scheduler = scheduler
    plugin.state.pause_fraction, plugin.state.terminate_fraction = 0.8, 0.95
    return plugin


def make_ready(plugin, scheduler, key: str, peak_bytes: int) -> None:
    import heapq

    from scheduler_plugins import compat

    task = scheduler.tasks[key] = fake_ready_task(key)
    compat.hold(task)
    plugin.state.predictions[key] = TaskPrediction(2.0, peak_bytes, "oracle", "oracle", category="big")
    plugin.state.managed.add(key)
    heapq.heappush(plugin.state.ready, (task.priority, next(plugin.state.seq), key))


def _one_worker_running_big_1():
    """One worker with 0.2 GiB in use; a 1.0 GiB task ``big-1`` dispatched to it in the first round."""
    clock = FakeClock(100.0)
    worker = fake_worker("tcp://w:1", process_bytes=int(0.2 * GB), last_seen=99.9)
    scheduler = FakeScheduler([worker])
    plugin = steering(clock, scheduler)
    make_ready(plugin, scheduler, "big-1", int(1.0 * GB))
    plugin.dispatcher.run_round(scheduler)
    assert [t.key for t in worker.processing] == ["big-1"]
    return clock, worker, scheduler, plugin


def test_a_big_task_sent_in_one_round_counts_in_the_next_before_any_heartbeat_shows_it():
    clock, worker, scheduler, plugin = _one_worker_running_big_1()
    assert scheduler.tasks["big-1"].loose_restrictions is False  # heavy: pinned strictly (no stealing onto it)
    clock.now = 100.01  # the next round, same heartbeat (process still 0.2 GiB)
    make_ready(plugin, scheduler, "big-2", int(1.0 * GB))
    plugin.dispatcher.run_round(scheduler)
    assert [t.key for t in worker.processing] == ["big-1"] and "big-2" in {k for _, _, k in plugin.state.ready}
    assert [e["reason"] for e in plugin.state.decisions if e["action"] == "hold"] == ["memory"]


def test_idle_heartbeats_teach_the_dispatcher_the_memory_a_worker_keeps():
    clock = FakeClock(100.0)
    worker = fake_worker("tcp://w:1", process_bytes=int(1.2 * GB), last_seen=99.5)  # idle, keeping 1.2 GiB
    scheduler = FakeScheduler([worker])
    plugin = steering(clock, scheduler)
    info = plugin.dispatcher.worker_infos(scheduler, clock(), {})["tcp://w:1"]
    assert info.memory_bytes == int(1.2 * GB)
    assert plugin.state.memory_baseline.bytes_for("tcp://w:1", None) == int(1.2 * GB)
    # a big task starts; the next heartbeat was taken while it ran (not idle): the baseline stays
    clock.now, worker.last_seen, worker.memory.process = 101.0, 100.8, int(1.3 * GB)
    worker.processing.append(SimpleNamespace(key="big-1", prefix=SimpleNamespace(duration_average=None, name="big")))
    plugin.state.predictions["big-1"] = TaskPrediction(2.0, 1 * GB, "oracle", "oracle", category="big")
    plugin.state.dispatched_at["big-1"] = 100.5
    info = plugin.dispatcher.worker_infos(scheduler, clock(), {})["tcp://w:1"]
    assert plugin.state.memory_baseline.bytes_for("tcp://w:1", None) == int(1.2 * GB)
    assert info.memory_bytes == int(1.2 * GB)  # not 1.3 - 1.0 = 0.3 GiB: the baseline counts
    assert info.headroom_bytes == pytest.approx(1.6 * GB - 1.2 * GB - 1 * GB)


def test_memory_of_a_task_that_ended_after_the_reading_is_not_held_outside_the_running_tasks():
    """The heartbeat's process memory (1.2 GiB) was measured while big-1 (1.0 GiB) ran; big-1 ended since. Until
    the next reading that 1.0 GiB is big-1's, not memory the worker keeps: big-2 is admitted at once (it was held
    until the next heartbeat, and a small task took the free thread meanwhile)."""
    clock, worker, scheduler, plugin = _one_worker_running_big_1()
    clock.now, worker.last_seen, worker.memory.process = 100.5, 100.5, int(1.2 * GB)  # measured while big-1 ran
    clock.now = 101.0
    worker.processing.clear()
    small = SimpleNamespace(key="small-1", prefix=SimpleNamespace(duration_average=None, name="small"))
    worker.processing.append(small)  # the other thread runs a small task (so waiting would free memory)
    plugin.state.predictions["small-1"] = TaskPrediction(2.0, int(0.05 * GB), "oracle", "oracle", category="small")
    plugin.state.dispatched_at["small-1"] = 100.9
    plugin.transition("big-1", "processing", "memory", worker="tcp://w:1")
    clock.now = 101.01  # no heartbeat since
    make_ready(plugin, scheduler, "big-2", int(1.0 * GB))
    plugin.dispatcher.run_round(scheduler)
    assert [t.key for t in worker.processing] == ["small-1", "big-2"]


def test_the_reading_is_as_old_as_the_system_monitor_sample_it_carries():
    """A heartbeat repeats the system monitor's latest sample: the reading is from the sample's time."""
    from scheduler_plugins import compat

    worker = fake_worker("tcp://w:1", process_bytes=int(1.2 * GB), last_seen=102.0)
    assert compat.worker_heartbeat_at(worker) == 102.0
    worker.metrics = {"time": 100.4, "memory": int(1.2 * GB)}
    assert compat.worker_heartbeat_at(worker) == 100.4
