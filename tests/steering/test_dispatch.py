"""The steering adapter without a cluster: fake scheduler objects, an injected clock, no sleeping."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from daskflow.contracts import ANNOTATION_KEY, RECORDER_PLUGIN
from scheduler_plugins.policy import TaskPrediction
from scheduler_plugins.steering import SteeringPlugin
from tests.steering.fakes import FakeClock

pytestmark = pytest.mark.timeout(30)


class CountingPredictor:
    model_version = "fake"

    def __init__(self) -> None:
        self.observed: list[tuple] = []

    def observe(self, category, duration_s, peak_memory_bytes=None):
        self.observed.append((category, duration_s, peak_memory_bytes))

    def baseline_for(self, category):
        return (0.5, "prefix-mean", 0.0, "default")


def fake_task(key: str, duration_average: float | None = None):
    return SimpleNamespace(key=key, prefix=SimpleNamespace(duration_average=duration_average, name=key.split("-")[0]))


def fake_worker(address: str, processing=(), nthreads: int = 1):
    return SimpleNamespace(
        address=address, host="10.0.0.1", nthreads=nthreads, resources={}, memory_limit=4 * 2**30, nbytes=0,
        memory=SimpleNamespace(process=0, unmanaged_old=0), processing=list(processing),
    )


def plugin_with(clock: FakeClock, scheduler=None, predictor=None) -> SteeringPlugin:
    plugin = SteeringPlugin(mode="steer", oracle=False, predictor=predictor or CountingPredictor(), clock=clock,
                            wall_clock=clock)
    plugin.scheduler = scheduler
    return plugin


def test_worker_backlog_follows_the_injected_clock():
    """One thread, two tasks sent at t=0 (1 s and 2 s predicted): at t=0.25 the backlog is 0.75 + 2."""
    clock = FakeClock(0.0)
    worker = fake_worker("w1", [fake_task("a-1"), fake_task("b-1")])
    scheduler = SimpleNamespace(running=[worker], plugins={})
    plugin = plugin_with(clock, scheduler)
    plugin.state.predictions["a-1"] = TaskPrediction(1.0, 0.0, "oracle", "oracle", category="a")
    plugin.state.predictions["b-1"] = TaskPrediction(2.0, 0.0, "oracle", "oracle", category="b")
    plugin.state.dispatched_at.update({"a-1": 0.0, "b-1": 0.0})
    clock.now = 0.25
    [info] = plugin.dispatcher.worker_infos(scheduler, clock(), {}).values()
    assert info.n_processing == 2 and info.backlog_s == pytest.approx(2.75)
    clock.now = 0.75
    [info] = plugin.dispatcher.worker_infos(scheduler, clock(), {}).values()
    assert info.backlog_s == pytest.approx(2.25)


def test_unknown_and_baseline_tasks_use_the_prefix_and_running_means():
    clock = FakeClock(10.0)
    worker = fake_worker("w1", [fake_task("x-1", duration_average=0.3), fake_task("m-1")], nthreads=2)
    scheduler = SimpleNamespace(running=[worker], plugins={})
    plugin = plugin_with(clock, scheduler)
    plugin.state.predictions["m-1"] = TaskPrediction(0.01, 0.0, "prefix-mean", None, category="m")
    [info] = plugin.dispatcher.worker_infos(scheduler, clock(), {}).values()
    # x-1: the scheduler's prefix average (0.3 s); m-1: the predictor's current mean (0.5 s); both just sent
    assert info.backlog_s == pytest.approx(0.8)


def test_finished_task_feeds_the_running_means_once_with_or_without_a_recorder():
    """Exactly one ``observe`` per finished task: steering's (the recorder never observes)."""
    finished = {"worker": "w1", "startstops": [{"action": "compute", "start": 1.0, "stop": 1.5}], "metadata": None}
    for plugins, expected in (({}, 1), ({RECORDER_PLUGIN: object()}, 1)):
        predictor = CountingPredictor()
        plugin = plugin_with(FakeClock(5.0), SimpleNamespace(plugins=plugins), predictor)
        plugin.state.predictions["t-1"] = TaskPrediction(1.0, 0.0, "model", "v1", category="t")
        plugin.transition("t-1", "processing", "memory", **finished)
        assert len(predictor.observed) == expected
        assert plugin.summary()["observed"] == 1  # steering's own statistics are kept either way
        # the in-run corrector (replaced the EWMA calibration): 1 task at 0.5x, shrunk by 2 prior tasks at 1x
        assert plugin.state.correction.factor("t") == pytest.approx(math.exp(math.log(0.5) / 3))
        assert plugin.state.last_finish_at == {"w1": 5.0}  # from the injected clock
        assert plugin.fallback_count == 0


def test_dispatch_latency_is_measured_from_probes_with_the_wall_clock():
    """Startstops come on the scheduler's clock already: a slow last heartbeat (time_delay) is no latency."""
    clock = FakeClock(100.0)
    scheduler = SimpleNamespace(plugins={RECORDER_PLUGIN: object()}, workers={"w1": SimpleNamespace(time_delay=0.4)})
    plugin = plugin_with(clock, scheduler)
    plugin.state.predictions["t-1"] = TaskPrediction(1.0, 0.0, "oracle", "oracle", category="t")
    plugin.state.probe_sent_wall["t-1"] = (100.0, math.inf)
    plugin.transition("t-1", "processing", "memory", worker="w1",
                      startstops=[{"action": "compute", "start": 100.05, "stop": 101.0}])
    assert plugin.dispatch_latency_s == pytest.approx(0.2 * 0.05)
    assert "t-1" not in plugin.state.probe_sent_wall


def test_a_probe_that_started_after_another_task_was_sent_to_its_worker_is_no_latency_sample():
    """The worker runs its tasks by priority: a probe queued behind a later-sent task measures that task."""
    clock = FakeClock(100.0)
    scheduler = SimpleNamespace(plugins={RECORDER_PLUGIN: object()}, workers={"w1": SimpleNamespace(time_delay=0.0)})
    plugin = plugin_with(clock, scheduler)
    for key in ("t-1", "t-2"):
        plugin.state.predictions[key] = TaskPrediction(1.0, 0.0, "oracle", "oracle", category="t")
    plugin.state.probe_sent_wall["t-1"] = (100.0, 100.001)  # t-2 went to w1 a millisecond after t-1
    plugin.transition("t-1", "processing", "memory", worker="w1",
                      startstops=[{"action": "compute", "start": 100.6, "stop": 101.0}])  # ran after t-2
    assert plugin.dispatch_latency_s == 0.0
    assert plugin.state.counts["latency_probes_dropped"] == 1
    plugin.state.probe_sent_wall["t-2"] = (101.0, 101.2)  # the next send came after it started: a round trip
    plugin.transition("t-2", "processing", "memory", worker="w1",
                      startstops=[{"action": "compute", "start": 101.05, "stop": 102.0}])
    assert plugin.dispatch_latency_s == pytest.approx(0.2 * 0.05)


def test_a_task_sent_beside_a_pending_probe_marks_it_and_a_new_probe_replaces_it():
    from scheduler_plugins.steering_state import SteeringState

    state = SteeringState(max_decisions=10)
    state.note_sent("p", "w1", 5.0, probe=True)
    state.note_sent("q", "w2", 5.0, probe=True)
    assert state.probe_sent_wall == {"p": (5.0, math.inf), "q": (5.0, math.inf)}
    state.note_sent("p2", "w1", 5.01, probe=False)  # queued behind p on w1: w1 may run it first
    state.note_sent("p3", "w1", 5.02, probe=False)  # the first send after the probe is what counts
    assert state.probe_sent_wall["p"] == (5.0, 5.01) and state.probe_sent_wall["q"] == (5.0, math.inf)
    del state.probe_sent_wall["p"]  # measured
    state.note_sent("r", "w1", 6.0, probe=True)
    assert state.probe_of_worker["w1"] == "r" and state.probe_sent_wall["r"] == (6.0, math.inf)
    state.forget_worker("w1")
    assert "w1" not in state.probe_of_worker


def test_forgotten_task_leaves_no_state_behind():
    plugin = plugin_with(FakeClock(), SimpleNamespace(plugins={}))
    state = plugin.state
    state.predictions["k"] = TaskPrediction(1.0, 0.0, "oracle", "oracle")
    state.managed.add("k")
    state.held_since["k"] = 1.0
    state.probe_sent_wall["k"] = 1.0
    plugin.transition("k", "released", "forgotten")
    assert not (state.predictions or state.managed or state.held_since or state.probe_sent_wall)


def test_pickled_plugin_ships_config_and_builds_fresh_state():
    import pickle

    copy = pickle.loads(pickle.dumps(SteeringPlugin(mode="shadow", oracle=True)))
    assert copy.mode == "shadow" and copy.oracle and copy.predictor is None
    assert copy.state.predictions == {} and copy.dispatcher.state is copy.state


def test_batch_records_of_plain_dask_tasks_equal_the_feature_records():
    """The per-prefix template used for tasks without a daskflow annotation gives exactly record_from_annotations."""
    from daskflow.learning.features import record_from_annotations
    from scheduler_plugins.graph_batch import predict_batch

    dep = SimpleNamespace(nbytes=123, who_has=set())

    def task(key, annotations, deps=()):
        return SimpleNamespace(key=key, annotations=annotations, dependencies=list(deps),
                               prefix=SimpleNamespace(name=key.rsplit("-", 1)[0]))

    tasks = [task("inc-1", None), task("inc-2", {}, [dep]), task("load-1", {ANNOTATION_KEY: {"category": "load", "run_id": "r"}})]
    seen = []

    class Recording:
        def predict(self, records):
            import numpy as np

            seen.extend(records)
            n = len(records)
            return SimpleNamespace(duration_s=np.ones(n), peak_memory_bytes=np.zeros(n), quality=np.array(["default"] * n))

    predictions: dict = {}
    assert predict_batch(Recording(), tasks, predictions, 100, None) is False
    expected = [
        record_from_annotations("inc-1", {}, n_dependencies=0, dependency_bytes=0, key_prefix="inc"),
        record_from_annotations("inc-2", {}, n_dependencies=1, dependency_bytes=123, key_prefix="inc"),
        record_from_annotations("load-1", {"category": "load", "run_id": "r"}, n_dependencies=0, dependency_bytes=0,
                                key_prefix="load"),
    ]
    assert seen == expected
    assert predictions["load-1"].category == "load" and predictions["load-1"].run_id == "r"


def test_a_decision_event_for_an_absurd_peak_still_fits_the_wire():
    """Events travel as msgpack (integers < 2**64): one absurd predicted peak must not fail the scheduler's batch."""
    import msgpack

    from scheduler_plugins.steering_events import MAX_WIRE_BYTES, decision_event
    from scheduler_plugins.steering_state import SteeringState

    state = SteeringState(max_decisions=10)
    state.predictions["t-1"] = TaskPrediction(1.0, 1e30, "model", "v1", category="t", p90_peak_memory_bytes=1e31)
    event = decision_event(state, "place", "t-1", {"worker": "w1"}, "v1", now=0.0)
    assert event["predicted_peak_memory_bytes"] == MAX_WIRE_BYTES
    assert event.get("p90_peak_memory_bytes", 0) <= MAX_WIRE_BYTES
    msgpack.dumps(event)
