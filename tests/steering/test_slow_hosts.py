"""A host slowed mid-run: stragglers read as a slow host, restart vs wait at the new speed, orphans (pure, fake clock).

The scene of the test bed's mid-run slowdown (tests/testbed/test_steering_on_bed.py), without a cluster::

    h0  fast  |probe|probe|probe|....
    h1  8x    |probe=========================|     <- straggles before anything finished there
                    ^ read as "h1 slowed": its speed drops at once, before the probe ends
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from scheduler_plugins.policy import SpeedEstimates, TaskPrediction, WorkerInfo
from scheduler_plugins.policy.stragglers import (
    CategorySpread,
    HostActivity,
    Orphan,
    RunningTask,
    SlowedUnder,
    Straggler,
    find_stragglers,
    host_slowed_under,
    live_orphans,
    reads_as_slow_host,
    remaining_here_s,
    restart_decision,
    slowed_remaining_s,
    thread_start_times,
)
from tests.steering.fakes import FakeClock

pytestmark = pytest.mark.timeout(30)


def running(key="probe-1", *, kind="replay", planned_s=0.15, speed=1.0, start=10.0, host="h1") -> RunningTask:
    return RunningTask(key, f"tcp://{host}:1", host, "probe", kind, planned_s, speed, start)


def straggler_at(now: float, task: RunningTask | None = None) -> Straggler:
    [found] = find_stragglers([task or running()], now=now, spread=CategorySpread(), straggler_factor=3.0)
    return found


# ---------------------------------------------------------------- reading the host


def test_a_straggler_where_nothing_finished_since_it_started_reads_as_a_slow_host():
    activity = HostActivity()
    activity.observe("h1", finished_at=9.0, actual_s=0.15, expected_s=0.15)  # on time, but before it could start
    activity.observe("h0", finished_at=10.2, actual_s=0.15, expected_s=0.15)  # meanwhile h0 is on time
    assert reads_as_slow_host(straggler_at(10.5), activity)


def test_a_straggler_while_every_host_overruns_is_a_loaded_machine_not_a_slow_host():
    activity = HostActivity()
    activity.observe("h0", finished_at=10.2, actual_s=0.6, expected_s=0.15)
    assert not reads_as_slow_host(straggler_at(10.5), activity)
    assert not reads_as_slow_host(straggler_at(10.5), HostActivity())  # nothing finished anywhere: no evidence


def test_a_straggler_beside_tasks_that_finished_on_time_is_a_lone_straggler():
    activity = HostActivity()
    activity.observe("h1", finished_at=10.3, actual_s=0.16, expected_s=0.15)  # the other worker of h1: on time
    assert not reads_as_slow_host(straggler_at(10.5), activity)


def test_a_straggler_whose_host_neighbours_all_overran_reads_as_a_slow_host():
    activity = HostActivity()
    activity.observe("h1", finished_at=10.3, actual_s=1.2, expected_s=0.15)
    activity.observe("h0", finished_at=10.4, actual_s=0.15, expected_s=0.15)  # another host on time meanwhile
    assert reads_as_slow_host(straggler_at(10.5), activity)


def test_a_category_the_model_under_predicts_is_no_slow_host():
    """The slowdown benchmark's epigenomics run: filterContams 3x under-predicted overran on h1, h2 and h3 at once
    while short tasks of another category finished on time on h0 -> three hosts read as slowed, everything sent to h0
    (the one host that was then really slowed). On time elsewhere must be of the straggler's category."""
    activity = HostActivity()
    activity.observe("h0", finished_at=10.2, actual_s=0.15, expected_s=0.15, category="sol2sanger")
    assert not reads_as_slow_host(straggler_at(10.5), activity)
    activity.observe("h0", finished_at=10.3, actual_s=0.15, expected_s=0.15, category="probe")
    assert reads_as_slow_host(straggler_at(10.5), activity)


def test_a_host_that_slows_after_its_category_ran_on_time_elsewhere_still_reads_as_slowed():
    """The slowdown benchmark's soykb run: h0 slowed x4 while it ran the last ``haplotype_caller`` tasks; the others
    had finished on time on h1 before. Its stragglers read as lone ones (no task of the category finished elsewhere
    *meanwhile*), h0 kept its speed, and the run's longest task (41 s) went to h0."""
    activity = HostActivity()
    activity.observe("h0", finished_at=6.0, actual_s=0.15, expected_s=0.15, category="probe")  # the category on time, before
    assert not reads_as_slow_host(straggler_at(10.5), activity)  # ... but nothing on time anywhere meanwhile: loaded?
    activity.observe("h0", finished_at=10.3, actual_s=0.7, expected_s=0.7, category="genotype")  # another host fine meanwhile
    assert reads_as_slow_host(straggler_at(10.5), activity)
    activity.observe("h1", finished_at=10.4, actual_s=0.15, expected_s=0.15, category="genotype")  # the straggler's host itself on time
    assert not reads_as_slow_host(straggler_at(10.5), activity)


def test_stragglers_of_one_category_on_two_hosts_at_once_are_the_categorys():
    from scheduler_plugins.policy.stragglers import categories_on_many_hosts

    found = find_stragglers([running("a", host="h1"), running("b", host="h2"), running("c", host="h0")], now=10.5,
                            spread=CategorySpread(), straggler_factor=3.0)
    assert categories_on_many_hosts(found) == {"probe"}
    alone = find_stragglers([running("a", host="h1"), running("b", host="h1")], now=10.5, spread=CategorySpread(),
                            straggler_factor=3.0)
    assert categories_on_many_hosts(alone) == set()  # two workers of one slowed host: still the host


def test_a_host_known_slow_is_judged_by_what_its_plan_expected():
    """h1 was already learned at half speed: a task that took 2x its speed-1 plan there did not overrun."""
    activity = HostActivity()
    activity.observe("h1", finished_at=10.3, actual_s=0.3, expected_s=0.3)
    assert not reads_as_slow_host(straggler_at(10.5), activity)


# ------------------------------------------------------------------- the speed first


def test_reading_a_slow_host_drops_its_speed_before_any_slow_task_finished():
    speeds = SpeedEstimates(window=8, pseudo_n=2.0)
    for _ in range(8):  # the early tasks: h1 at nominal speed
        speeds.observe("tcp://h1:1", "h1", actual_s=0.15, planned_s=0.15)
    assert speeds.speed("tcp://h1:1", "h1") == 1.0
    straggler = straggler_at(10.5)
    assert speeds.observe_slow_host("h1", straggler.elapsed_s, planned_s=0.15)
    assert speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.15 / 0.5)
    assert speeds.speed("tcp://h1:2", "h1") == pytest.approx(0.15 / 0.5)  # the host's other workers too
    assert speeds.speed("tcp://h0:1", "h0") == 1.0
    speeds.observe_slow_host("h1", elapsed_s=0.9, planned_s=0.15)  # still running: the bound only rises
    speeds.observe_slow_host("h1", elapsed_s=0.6, planned_s=0.15)
    assert speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.15 / 0.9)


def test_tasks_finished_in_a_slow_regime_set_its_speed_and_one_on_time_ends_it():
    speeds = SpeedEstimates(window=8, pseudo_n=2.0)
    for _ in range(8):
        speeds.observe("tcp://h1:1", "h1", actual_s=1.0, planned_s=1.0)
    speeds.observe_slow_host("h1", elapsed_s=3.5, planned_s=1.0)
    speeds.observe("tcp://h1:1", "h1", actual_s=8.0, planned_s=1.0)  # the straggler finished: 8x
    assert speeds.speed("tcp://h1:1", "h1") == pytest.approx(1 / 8)
    speeds.observe("tcp://h1:1", "h1", actual_s=1.05, planned_s=1.0)  # the host recovered
    assert speeds.slow_regime("h1") is None
    assert speeds.speed("tcp://h1:1", "h1") > 1 / 8


def test_nominal_speed_is_no_slow_regime():
    speeds = SpeedEstimates()
    assert not speeds.observe_slow_host("h1", elapsed_s=1.1, planned_s=1.0)  # within the dead band
    assert speeds.slow_regime("h1") is None


# ------------------------------------------------------------- restart vs wait


def test_the_time_left_is_taken_at_the_hosts_new_speed():
    straggler = straggler_at(10.5)  # elapsed 0.5 s of a 0.15 s plan
    assert remaining_here_s(straggler) == pytest.approx(0.35)  # heavy tail against the old plan
    assert remaining_here_s(straggler, speed_here=0.15 / 1.2) == pytest.approx(0.7)  # 8x: 1.2 s in all, 0.7 left
    assert remaining_here_s(straggler, speed_here=0.15 / 0.5) == pytest.approx(0.5)  # speed from itself: as long again


def test_wait_when_at_the_new_speed_it_ends_before_a_restart_would():
    """A long task on a host read as 2x slower is almost done there: a restart on the fast worker would lose."""
    straggler = straggler_at(18.0, running(planned_s=2.0, start=10.0))  # 8 s of a 2 s plan
    fast = WorkerInfo("tcp://h0:1", host="h0")
    at_new_speed = restart_decision(straggler, [fast], 1e8, speed_here=2.0 / 8.5)  # 8.5 s there: 0.5 s left
    assert not at_new_speed.restart and at_new_speed.reason == "straggler"
    assert at_new_speed.remaining_here_s == pytest.approx(0.5) and at_new_speed.finish_there_s == pytest.approx(2.0)
    blind = restart_decision(straggler, [fast], 1e8)  # the old plan: heavy tail, 6 s left
    assert blind.restart and blind.worker == "tcp://h0:1"


def test_restart_when_a_faster_idle_worker_beats_the_time_left_at_the_new_speed():
    straggler = straggler_at(10.5)
    decision = restart_decision(straggler, [WorkerInfo("tcp://h0:1", host="h0")], 1e8, speed_here=0.15 / 1.2)
    assert decision.restart and decision.finish_there_s == pytest.approx(0.15) and decision.remaining_here_s == pytest.approx(0.7)


def test_a_key_is_never_restarted_twice():
    straggler = straggler_at(10.5)
    decision = restart_decision(straggler, [WorkerInfo("tcp://h0:1", host="h0")], 1e8, already_restarted=True)
    assert not decision.restart and decision.worker is None and decision.reason == "straggler"


def test_an_asset_on_a_slow_host_is_never_restarted():
    straggler = straggler_at(10.5, running(kind="asset"))
    decision = restart_decision(straggler, [WorkerInfo("tcp://h0:1", host="h0")], 1e8, speed_here=0.1)
    assert not decision.restart and decision.reason == "straggler-asset"


# ------------------------------------------------------------------------ orphans


def test_an_orphan_holds_its_thread_until_its_predicted_end():
    orphan = Orphan("probe-1", "tcp://h1:1", restarted_at=10.5, ends_at=11.2, peak_memory_bytes=100)
    assert live_orphans([orphan], now=11.0) == [orphan]
    assert live_orphans([orphan], now=11.3) == []
    # one thread: a task that finished there after the restart ran behind it, so it has ended
    assert live_orphans([orphan], now=11.0, last_finish_at=10.9, nthreads=1) == []
    assert live_orphans([orphan], now=11.0, last_finish_at=10.9, nthreads=2) == [orphan]


def test_a_task_queued_behind_an_orphan_starts_its_clock_when_the_orphan_ends():
    assert thread_start_times([10.1], nthreads=1, last_finish_at=9.0, orphan_ends_at=[11.2]) == [11.2]
    assert thread_start_times([10.1, 10.2], nthreads=2, last_finish_at=9.0, orphan_ends_at=[11.2]) == [10.1, 11.2]
    assert thread_start_times([10.1], nthreads=1, last_finish_at=9.0) == [10.1]


# --------------------------------------------------------- the dispatcher, fake scheduler


def fake_task(key: str, worker=None, dependencies=()):
    return SimpleNamespace(key=key, state="processing", prefix=SimpleNamespace(duration_average=None, name="probe"),
                           annotations={"daskflow": {"kind": "replay", "category": "probe"}}, processing_on=worker,
                           dependencies=list(dependencies), resource_restrictions=None)  # fmt: skip


def fake_worker(address: str, host: str, processing=()):
    return SimpleNamespace(address=address, host=host, nthreads=1, resources={}, memory_limit=4 * 2**30, nbytes=0,
                           memory=SimpleNamespace(process=0, unmanaged_old=0), processing=list(processing))


class FakeScheduler:
    def __init__(self, workers, tasks) -> None:
        self.running = workers
        self.tasks = {t.key: t for t in tasks}
        self.plugins: dict = {}
        self.bandwidth = 1e8
        self.released: list = []

    def log_event(self, topic, event):
        pass

    def transitions(self, recommendations, stimulus_id):
        for key, finish in recommendations.items():
            self.released.append(key)
            task = self.tasks[key]
            task.state = finish
            for worker in self.running:
                if task in worker.processing:
                    worker.processing.remove(task)


def oracle_steering(scheduler: FakeScheduler, clock: FakeClock):
    """A steering plugin on ``scheduler`` with the oracle's predictions and a 3x straggler threshold."""
    from scheduler_plugins.steering import SteeringPlugin

    predictor = SimpleNamespace(model_version="oracle", observe=lambda *a, **k: None)
    plugin = SteeringPlugin(mode="steer", oracle=True, predictor=predictor, clock=clock, wall_clock=clock)
    plugin.scheduler = scheduler
    plugin.dispatcher.straggler_factor = 3.0
    return plugin


def probes_running(idle, first_worker, second_worker, clock: FakeClock):
    """``probe-1`` and ``probe-2`` running on two workers beside an idle one, under :func:`oracle_steering`."""
    first, second = fake_task("probe-1"), fake_task("probe-2")
    first_worker.processing[:], second_worker.processing[:] = [first], [second]
    scheduler = FakeScheduler([idle, first_worker, second_worker], [first, second])
    return scheduler, oracle_steering(scheduler, clock)


def bed(clock: FakeClock, input_bytes: int = 0):
    h0 = fake_worker("tcp://h0:1", "h0")
    h1 = fake_worker("tcp://h1:1", "h1")
    data = [SimpleNamespace(key="input", nbytes=input_bytes, who_has=[h1])] if input_bytes else []
    probe, queued = fake_task("probe-1", dependencies=data), fake_task("probe-2")
    h1.processing[:] = [probe, queued]
    scheduler = FakeScheduler([h0, h1], [probe, queued])
    plugin = oracle_steering(scheduler, clock)
    for key in ("probe-1", "probe-2"):
        plugin.state.predictions[key] = TaskPrediction(0.15, 50_000_000, "oracle", "oracle", category="probe")
        plugin.state.dispatched_at[key] = 10.0
        plugin.state.planned_speed[key] = 1.0
    plugin.state.last_finish_at["tcp://h1:1"] = 9.9
    plugin.state.host_activity.observe("h0", finished_at=10.2, actual_s=0.15, expected_s=0.15)  # h0 is on time
    return plugin, scheduler


def test_the_dispatcher_reads_h1_slowed_restarts_once_and_keeps_the_orphan_on_its_thread():
    clock = FakeClock(10.5)
    plugin, scheduler = bed(clock)
    plugin.dispatcher.check_stragglers(scheduler)
    state = plugin.state
    assert state.speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.3)  # the speed first ...
    [restart] = [e for e in state.decisions if e["action"] == "restart"]  # ... then the restart, at that speed
    assert restart["key"] == "probe-1" and restart["slow_host"] and restart["target_worker"] == "tcp://h0:1"
    assert restart["speed_here"] == pytest.approx(0.3) and restart["remaining_s"] == pytest.approx(0.5)
    assert scheduler.released == ["probe-1"]
    [orphan] = state.orphans["tcp://h1:1"]
    assert orphan.ends_at == pytest.approx(11.0)
    # the orphan holds h1's thread and its memory; probe-2 behind it has not started
    infos = plugin.dispatcher.worker_infos(scheduler, clock(), {})
    h1 = infos["tcp://h1:1"]
    assert h1.n_processing == 2 and h1.running_peak_bytes == 100_000_000 and h1.max_running_peak_bytes == 50_000_000
    [queued] = plugin.dispatcher.running_tasks(scheduler, infos, {}, clock())
    assert queued.key == "probe-2" and queued.could_start_at == pytest.approx(11.0)
    clock.now = 11.4  # probe-2 ran 0.4 s since the orphan's predicted end: no straggler yet
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released == ["probe-1"]
    # probe-1 placed again, on h0, and straggling there: never restarted a second time
    h0 = scheduler.running[0]
    task = scheduler.tasks["probe-1"]
    task.state = "processing"
    h0.processing.append(task)
    state.dispatched_at["probe-1"] = 11.0
    clock.now = 12.0
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released.count("probe-1") == 1


def test_a_category_overrunning_on_two_hosts_at_once_is_neither_restarted_nor_read_as_slow_workers():
    """multi8 (48b7fbc), soykb on the slowdown bed: 0.4 s into the run the first three ``alignment_to_reference`` tasks,
    planned 0.065 s by a sibling model, had all run 0.36 s on two hosts. Each was restarted on an idle worker "to finish
    in 0.16 s" (the copies took as long again), and each fed its worker a censored 6x slowness: speeds of 0.05 and
    0.12 on full-speed hosts steered the run (1.03 x stock, the oracle 0.62 x). The category overruns, not a worker:
    a copy pays the same cost anywhere."""
    clock = FakeClock(10.5)
    idle = fake_worker("tcp://h0:1", "h0")
    h1, h2 = fake_worker("tcp://h1:1", "h1"), fake_worker("tcp://h2:1", "h2")
    scheduler, plugin = probes_running(idle, h1, h2, clock)
    state = plugin.state
    for key, worker in (("probe-1", "tcp://h1:1"), ("probe-2", "tcp://h2:1")):
        state.predictions[key] = TaskPrediction(0.1, 50_000_000, "oracle", "oracle", category="probe")
        state.dispatched_at[key] = 10.0
        state.planned_speed[key] = 1.0
        state.last_finish_at[worker] = 9.9
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released == []
    events = [e for e in state.decisions if e["action"] in ("straggler", "restart")]
    assert [(e["action"], e["reason"], e["slow_host"]) for e in events] == [("straggler", "straggler", False)] * 2
    assert all(e["restart_finish_s"] >= e["elapsed_s"] for e in events)  # a copy needs the work already done
    assert state.speeds.n_observed("tcp://h1:1") == state.speeds.n_observed("tcp://h2:1") == 0
    # the other one ended: the category still overruns (nothing of it finished on its plan), probe-1 still waits
    h2.processing.clear()
    state.dispatched_at.pop("probe-2")
    def finished(key: str, duration_s: float) -> None:
        state.predictions[key] = TaskPrediction(0.1, 50_000_000, "oracle", "oracle", category="probe")
        plugin.feedback.finished(scheduler, key, {"worker": "tcp://h2:1", "metadata": None,
                                                  "startstops": [{"action": "compute", "start": 10.0, "stop": 10.0 + duration_s}]})

    finished("probe-2", 0.6)
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released == []
    # one of the category finished on its (corrected) plan: no longer the category's overrun; probe-1, alone past
    # its plan on h1 while the category ran on plan on h2, now reads as h1 slowed and is restarted on h0
    finished("probe-3", 0.1)
    assert "probe" not in state.overrunning
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released == ["probe-1"]
    # a model loads: what was read against the old plans is forgotten
    state.overrunning.add("probe")
    plugin.feedback.model_loaded(SimpleNamespace(model_version="oracle", observe=lambda *a, **k: None))
    assert not state.overrunning


def test_a_finished_straggler_placed_by_stock_dask_also_reads_as_a_slow_host():
    clock = FakeClock(11.0)  # it ran from 9.8 s; h0 finished one on time at 10.2 s
    plugin, _ = bed(clock)
    plugin.dispatcher.observe_finished("h1", "probe", duration_s=1.2, planned_s=0.15, speed=1.0)
    assert plugin.state.speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.125)
    plugin.dispatcher.observe_finished("h0", "probe", duration_s=0.15, planned_s=0.15, speed=1.0)
    assert plugin.state.speeds.slow_regime("h0") is None


def test_a_straggler_planned_from_a_default_guess_says_nothing_about_its_host():
    clock = FakeClock(10.5)
    plugin, scheduler = bed(clock)
    for key in ("probe-1", "probe-2"):
        plugin.state.predictions[key] = TaskPrediction(0.15, 0, "default", None, category="probe")
    plugin.dispatcher.predictor = lambda: SimpleNamespace(baseline_for=lambda category: (0.15, "default", 0.0, "default"))
    plugin.dispatcher.check_stragglers(scheduler)
    assert plugin.state.speeds.slow_regime("h1") is None
    assert [e["slow_host"] for e in plugin.state.decisions if e["action"] in ("straggler", "restart")] == [False]


def test_stock_placed_probes_teach_a_slowed_host_at_its_first_slow_finish():
    """Probes left to stock placement (no straggler checks): five finish on time on h0, then one 8x on h1. Its own
    8x ratio must not widen the category's spread it is judged by: h1 reads as slowed at once. The same on an
    in-process cluster where the one other host finished nothing meanwhile is no slow host (a loaded machine)."""
    clock = FakeClock(20.0)
    plugin, _ = bed(clock)
    prediction = TaskPrediction(0.15, 0, "oracle", "oracle", category="probe")
    for _ in range(5):
        plugin.feedback._observe_speed("tcp://10.0.0.1:1", prediction, 0.15)
    plugin.feedback._observe_speed("tcp://10.0.0.2:1", prediction, 1.2)
    assert plugin.state.speeds.speed("tcp://10.0.0.2:1", "10.0.0.2") == pytest.approx(0.125)
    assert plugin.state.speeds.speed("tcp://10.0.0.1:1", "10.0.0.1") == 1.0
    clock.now = 100.0  # later: nothing finished anywhere in the last 1.2 s
    plugin.feedback._observe_speed("tcp://10.0.0.3:1", prediction, 1.2)
    assert plugin.state.speeds.slow_regime("10.0.0.3") is None


def test_tasks_shorter_than_the_speed_threshold_never_read_as_a_slow_host():
    """A 10 ms warm-up task that took 50 ms on a loaded machine is overhead, not a slow host."""
    speeds = SpeedEstimates(min_planned_s=0.05)
    assert not speeds.observe_slow_host("h1", elapsed_s=0.05, planned_s=0.01)
    clock = FakeClock(5.0)
    plugin, _ = bed(clock)
    plugin.state.speeds.min_planned_s = 0.05
    plugin.dispatcher.observe_finished("h1", "warmup", duration_s=0.05, planned_s=0.01, speed=1.0)
    assert plugin.state.speeds.slow_regime("h1") is None and plugin.state.host_activity.since("h1", 0.0) == []


def test_a_category_the_model_misses_by_over_100x_is_planned_at_its_running_mean():
    """The slowdown benchmark's epigenomics run: a sibling model served ``map`` at ~10^6 s (runs ~5 s); the
    correction stopped at its x1/100 clamp, so the plan still said 10^4 s, speeds learned from it hit the x20 clamp
    and every map task was held for the one "fast" host (the one then slowed x4)."""
    clock = FakeClock(10.0)
    plugin, _ = bed(clock)
    plugin.predictor = SimpleNamespace(model_version="v1", observe=lambda *a, **k: None,
                                       baseline_for=lambda category: (5.0, "prefix-mean", 0.0, "default"))
    prediction = TaskPrediction(1.1e6, 0, "model", "v1", category="map")
    plugin.state.correction.duration["map"] = 0.5
    assert plugin.dispatcher.planned_s(prediction, {}) == pytest.approx(5.5e5)  # a correction within its clamp
    plugin.state.correction.duration["map"] = 1e-6
    assert plugin.dispatcher.planned_s(prediction, {}) == 5.0
    assert not plugin.state.speeds.observe("tcp://h0:1", "h0", actual_s=5.0, planned_s=1.1e4)  # no speed from it


def test_the_dispatcher_weighs_a_restart_with_the_read_rates_the_placement_uses():
    """multi6: the copy of a restart is placed by the learned per-host-pair read rates, so the restart is weighed with
    them. Dask's measured bandwidth (1 GB/s here, ~18 x the link on the test bed) says moving the 200 MB input from
    slowed h1 to h0 costs 0.2 s; the tasks' own reads say 10 s: no restart (the 0.5 s it still needs on h1 win)."""
    clock = FakeClock(10.5)
    plugin, scheduler = bed(clock, input_bytes=200_000_000)
    scheduler.bandwidth = 1e9
    for _ in range(3):
        plugin.state.transfers.observe("h1", "h0", nbytes=20_000_000, seconds=1.0)  # 20 MB/s over the link
    plugin.dispatcher.check_stragglers(scheduler)
    state = plugin.state
    assert state.speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.3)  # h1 still read as slowed
    assert scheduler.released == [] and not state.orphans
    [kept] = [e for e in state.decisions if e["action"] == "straggler" and e["key"] == "probe-1"]
    assert kept["reason"] == "straggler" and kept["restart_finish_s"] == pytest.approx(0.15 + 10.0)


def test_without_learned_read_rates_a_restart_is_priced_at_the_measured_bandwidth():
    clock = FakeClock(10.5)
    plugin, scheduler = bed(clock, input_bytes=20_000_000)  # 0.2 s at Dask's 1e8 B/s: the copy still wins
    plugin.dispatcher.check_stragglers(scheduler)
    [restart] = [e for e in plugin.state.decisions if e["action"] == "restart"]
    assert restart["key"] == "probe-1" and restart["restart_finish_s"] == pytest.approx(0.15 + 0.2)


# ------------------------------------------------- a host that slowed under a long task


def long_task(start=10.0, planned_s=40.0, speed=1.0) -> RunningTask:
    return RunningTask("merge", "tcp://h0:1", "h0", "merge", "replay", planned_s, speed, start)


def test_a_sibling_slowed_since_the_task_could_start_says_its_host_slowed_under_it():
    slowed = host_slowed_under(long_task(), [("tcp://h0:1", 0.25, 9.9), ("tcp://h0:2", 0.25, 12.0)])
    assert slowed == SlowedUnder(speed_now=0.25, seen_at=12.0)


def test_no_slowdown_under_a_task_from_old_evidence_a_mild_change_its_own_worker_or_one_sibling_on_time():
    task = long_task()
    assert host_slowed_under(task, [("tcp://h0:2", 0.25, 9.5)]) is None  # its plan already knew
    assert host_slowed_under(task, [("tcp://h0:2", 0.8, 12.0)]) is None  # 1.25x: within the overrun ratio
    assert host_slowed_under(task, [("tcp://h0:1", 0.25, 12.0), ("tcp://h0:2", 1.0, None)]) is None  # its own worker
    assert host_slowed_under(task, [("tcp://h0:2", 0.25, 12.0), ("tcp://h0:3", 1.0, 12.5)]) is None  # one on time
    assert host_slowed_under(long_task(speed=0.3), [("tcp://h0:2", 0.25, 12.0)]) is None  # planned slow already


def test_the_time_left_counts_the_old_speed_until_the_slowdown_was_seen_and_the_new_one_since():
    slowed = SlowedUnder(speed_now=0.25, seen_at=14.0)
    assert slowed_remaining_s(long_task(), now=20.0, slowed=slowed) == pytest.approx((40 - 4 - 6 * 0.25) / 0.25)
    # evidence after ``now`` (the clock moved on): every second so far at the old speed
    assert slowed_remaining_s(long_task(), now=12.0, slowed=slowed) == pytest.approx(38 / 0.25)
    assert slowed_remaining_s(long_task(planned_s=1.0), now=20.0, slowed=slowed) == 0.0  # past its work: not this rule


def test_a_restart_weighed_against_a_given_time_left_keeps_its_reason():
    task = long_task()
    as_running = Straggler(task, elapsed_s=10.0, expected_s=40.0, threshold_s=float("inf"))
    idle = [WorkerInfo("tcp://h1:1", host="h1")]
    decision = restart_decision(as_running, idle, 1e8, 0.25, remaining_s=138.0, reason="slowed-host-restart")
    assert decision.restart and decision.worker == "tcp://h1:1" and decision.reason == "slowed-host-restart"
    assert decision.remaining_here_s == 138.0 and decision.finish_there_s == pytest.approx(40.0)
    assert not restart_decision(as_running, idle, 1e8, 0.25, remaining_s=50.0).restart  # 40 s is not < 0.75 x 50 s


def slowed_bed(clock: FakeClock, other_host_idle: bool = True):
    """h0 runs ``merge`` (40 s at speed 1) since 10 s; its sibling h0:2 finished a task at 12 s and is now slowed
    x4; h1:1 is idle (or busy); h2's two workers are busy (speeds are relative to the median worker: not h0's)."""
    merge = fake_task("merge")
    merge.annotations = {"daskflow": {"kind": "replay", "category": "merge"}}
    busy = [fake_task(f"busy-{i}") for i in range(3)]
    h0a, h0b = fake_worker("tcp://h0:1", "h0", [merge]), fake_worker("tcp://h0:2", "h0")
    h1 = fake_worker("tcp://h1:1", "h1", [] if other_host_idle else [busy[0]])
    h2 = [fake_worker(f"tcp://h2:{i}", "h2", [busy[i]]) for i in (1, 2)]
    scheduler = FakeScheduler([h0a, h0b, h1, *h2], [merge, *busy])
    plugin = oracle_steering(scheduler, clock)
    for key, planned in (("merge", 40.0), ("busy-0", 100.0), ("busy-1", 100.0), ("busy-2", 100.0)):
        plugin.state.predictions[key] = TaskPrediction(planned, 0, "oracle", "oracle", category=key)
        plugin.state.dispatched_at[key] = 10.0
        plugin.state.planned_speed[key] = 1.0
    plugin.state.last_finish_at.update({"tcp://h0:1": 9.9, "tcp://h0:2": 12.0, "tcp://h1:1": 9.9, "tcp://h2:1": 9.9,
                                        "tcp://h2:2": 9.9})
    plugin.dispatcher.worker_infos(scheduler, 11.0, {})  # every worker known at speed 1 (the speed level)
    assert plugin.state.speeds.observe_slow_host("h0", elapsed_s=4.0, planned_s=1.0, now=12.0)  # h0 is now x4 slower
    return plugin, scheduler


def test_the_dispatcher_restarts_a_long_task_off_a_host_that_slowed_under_it_once():
    """The slowdown benchmark's soykb run: ``merge_gcvf`` (41 s, its category's only task) was placed on h0 just as
    h0 slowed x4. Its threshold was 3x the old plan, and a category seen once never reads as a slowed host, so it ran
    at a quarter speed to the end. Its sibling's speed says so at once."""
    clock = FakeClock(14.0)
    plugin, scheduler = slowed_bed(clock)
    plugin.dispatcher.check_stragglers(scheduler)
    [restart] = [e for e in plugin.state.decisions if e["action"] == "restart"]
    assert restart["key"] == "merge" and restart["reason"] == "slowed-host-restart"
    assert restart["target_worker"] == "tcp://h1:1" and restart["slow_host"]
    assert restart["remaining_s"] == pytest.approx((40 - 2 - 2 * 0.25) / 0.25, rel=0.05)
    assert scheduler.released == ["merge"] and [o.key for o in plugin.state.orphans["tcp://h0:1"]] == ["merge"]
    clock.now = 15.0
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released == ["merge"]  # once


def test_no_slowed_host_restart_without_an_idle_worker_on_another_host():
    clock = FakeClock(14.0)
    plugin, scheduler = slowed_bed(clock, other_host_idle=False)
    plugin.dispatcher.check_stragglers(scheduler)  # h0:2 is idle, but on the slowed host
    assert scheduler.released == [] and not [e for e in plugin.state.decisions if e["action"] == "restart"]


# ------------------------------------------------- a slowed host read from its running tasks


def test_tasks_overrunning_on_two_workers_of_a_host_read_it_slowed_before_any_is_a_straggler():
    """The slowdown benchmark's srasearch (47fc8e7): h0 slowed x4 at 4.1 s under ~5 s tasks. A straggler is flagged
    at 3x its plan, so h0 read as slowed only at 12 s, and two more long tasks went there at speed 1.0 meanwhile (8.8 s,
    10.0 s). Its two workers' tasks, both past 1.5x their plans while the category ran on time elsewhere, say it
    at about half that: the host's speed drops then (the least overrun of the two: a censored bound), one event."""
    clock = FakeClock(10.0)
    h0 = fake_worker("tcp://h0:1", "h0")
    h1a, h1b = fake_worker("tcp://h1:1", "h1"), fake_worker("tcp://h1:2", "h1")
    scheduler, plugin = probes_running(h0, h1a, h1b, clock)
    state = plugin.state
    for key, worker, started in (("probe-1", "tcp://h1:1", 9.0), ("probe-2", "tcp://h1:2", 8.8)):
        state.predictions[key] = TaskPrediction(0.5, 50_000_000, "oracle", "oracle", category="probe")
        state.dispatched_at[key] = started
        state.planned_speed[key] = 1.0
        state.last_finish_at[worker] = started
    state.host_activity.observe("h0", finished_at=9.5, actual_s=0.5, expected_s=0.5, category="probe")
    clock.now = 9.6  # 1.2x and 1.6x their plans: one worker is no host
    plugin.dispatcher.check_stragglers(scheduler)
    assert state.speeds.slow_regime("h1") is None
    clock.now = 9.9  # 1.8x and 2.2x: no straggler yet (3x), but both workers of h1 overrun
    plugin.dispatcher.check_stragglers(scheduler)
    assert state.speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.5 / 0.9)  # the least overrun of the two
    assert state.speeds.speed("tcp://h0:1", "h0") == 1.0
    [event] = [e for e in state.decisions if e["action"] == "straggler"]
    assert event["reason"] == "host-overrun" and event["key"] == "probe-1" and event["slow_host"]
    assert scheduler.released == []  # no straggler yet: nothing restarted
    clock.now = 10.1
    plugin.dispatcher.check_stragglers(scheduler)  # still running: the bound rises, no second event
    assert state.speeds.speed("tcp://h1:1", "h1") == pytest.approx(0.5 / 1.1)
    assert len([e for e in state.decisions if e["reason"] == "host-overrun"]) == 1


def test_a_category_overrunning_on_two_hosts_reads_no_host_slowed_from_running_tasks():
    from scheduler_plugins.policy.stragglers import hosts_overrunning

    activity = HostActivity()
    activity.observe("h2", finished_at=9.5, actual_s=0.5, expected_s=0.5, category="other")
    tasks = [RunningTask(f"k{i}", f"tcp://{host}:{i}", host, "probe", "replay", 0.5, 1.0, 9.0)
             for i, host in enumerate(("h0", "h0", "h1"))]
    assert hosts_overrunning(tasks, 10.0, activity) == {}  # "probe" overruns on h0 and h1: the model's
    assert hosts_overrunning(tasks[:2], 10.0, activity) == {}  # "probe" never ran on time elsewhere: maybe drift
    activity.observe("h2", finished_at=9.6, actual_s=0.5, expected_s=0.5, category="probe")
    assert set(hosts_overrunning(tasks[:2], 10.0, activity)) == {"h0"}
    short = [RunningTask(t.key, t.worker, t.host, t.category, t.kind, 0.5, 1.0, 9.0) for t in tasks[:2]]
    assert hosts_overrunning(short, 10.0, activity, min_planned_s=1.0) == {}  # dispatch overhead, not speed
