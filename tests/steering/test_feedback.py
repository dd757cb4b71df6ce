"""In-run learning in the steering adapter (scheduler_plugins.task_feedback), with fake scheduler objects.

A finished task feeds the OnlineCorrector with the served (uncorrected) p50; tasks not yet run are
planned with the corrected value; a drift alarm demotes the category (planned from the run's own
tasks from then on, whatever the source), is a decision event and a model event; placement admits
with the corrected p90 peak memory while events keep the served p50.
"""

from __future__ import annotations

import asyncio
import json
import math
from types import SimpleNamespace

import pytest

from daskflow.contracts import METADATA_KEY
from scheduler_plugins.policy import (
    CategoryCorrection,
    TaskPrediction,
    admission_peak_memory_bytes,
    planned_peak_memory_bytes,
)
from scheduler_plugins.steering import SteeringPlugin
from tests.steering.fakes import FakeClock

pytestmark = pytest.mark.timeout(30)


class FakePredictor:
    model_version = "v1"
    composite = None  # no manifest priors: the corrector's defaults (2 prior tasks, drift sigma 0.5)

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self.observed: list[tuple] = []
        self.reloads = 0

    def observe(self, category, duration_s, peak_memory_bytes=None):
        self.observed.append((category, duration_s, peak_memory_bytes))

    def baseline_for(self, category):
        return (1.0, "prefix-mean", 0.0, "default")

    def maybe_reload(self):
        return False


def make_plugin(clock: FakeClock, predictor=None) -> SteeringPlugin:
    plugin = SteeringPlugin(mode="steer", oracle=False, predictor=predictor or FakePredictor(), clock=clock, wall_clock=clock)
    plugin.scheduler = SimpleNamespace(plugins={}, log_event=lambda topic, event: None)
    return plugin


def finish(plugin: SteeringPlugin, key: str, duration_s: float, peak: float | None = None, at: float = 0.0) -> None:
    metadata = {METADATA_KEY: {"peak_memory_bytes": peak}} if peak is not None else None
    plugin.transition(key, "processing", "memory", worker=None, metadata=metadata,
                      startstops=[{"action": "compute", "start": at, "stop": at + duration_s}])


def fake_ts(key: str):
    return SimpleNamespace(key=key, dependencies=(), annotations={}, resource_restrictions=None,
                           prefix=SimpleNamespace(duration_average=None, name=key.split("-")[0]))


def test_not_yet_run_tasks_of_a_category_follow_its_finished_tasks():
    """A model 2x too optimistic for this run: after a few tasks the rest are planned near 2x, other categories not."""
    clock = FakeClock(100.0)
    plugin = make_plugin(clock)
    for i in range(12):
        plugin.state.predictions[f"fit-{i}"] = TaskPrediction(1.0, 0.0, "model", "v1", category="fit")
    plugin.state.predictions["load-0"] = TaskPrediction(1.0, 0.0, "model", "v1", category="load")
    pending = plugin.state.predictions["fit-11"]
    assert plugin.dispatcher.planned_s(pending, {}) == 1.0
    for i in range(8):
        clock.now += 1
        finish(plugin, f"fit-{i}", 2.0)
    planned = plugin.dispatcher.planned_s(pending, {})
    assert planned == pytest.approx(math.exp(8 * math.log(2.0) / (8 + 2)))  # 8 tasks at 2x, shrunk by 2 prior tasks
    assert plugin.dispatcher.task_info(plugin.scheduler, fake_ts("fit-11"), "fit-11", {}).duration_s == pytest.approx(planned)
    assert plugin.dispatcher.planned_s(plugin.state.predictions["load-0"], {}) == 1.0
    assert pending.duration_s == 1.0  # the served p50 is kept (the recorder copies it; drift compares against it)
    assert len(plugin.predictor.observed) == 8  # still exactly one running-mean observe per task
    assert plugin.fallback_count == 0


def test_a_cost_that_doubles_mid_run_is_a_drift_event_and_the_category_is_served_online():
    """10 tasks as predicted, then the category costs 2x: one drift alarm within the run, category demoted."""
    clock = FakeClock(1000.0)
    plugin = make_plugin(clock)
    for i in range(40):  # a running-mean prediction: not corrected until its category drifts
        plugin.state.predictions[f"load-{i}"] = TaskPrediction(1.0, 0.0, "prefix-mean", "v1", category="load")
    pending = plugin.state.predictions["load-39"]
    for i in range(10):
        clock.now += 1
        finish(plugin, f"load-{i}", 1.0)
    assert not plugin.state.correction.drifted
    detected_after = None
    for i in range(10, 30):
        clock.now += 1
        finish(plugin, f"load-{i}", 2.0)
        if detected_after is None and plugin.state.correction.drifted:
            detected_after = i - 9
    assert detected_after is not None and detected_after <= 12
    [drift] = [d for d in plugin.decisions if d["action"] == "drift"]
    assert drift["reason"] == "drift" and drift["category"] == "load" and drift["direction"] == "slower"
    assert drift["target"] == "duration" and drift["model_version"] == "v1"
    assert drift["changed_at"] >= 1010.0  # the change point: after the last task at the old cost
    [event] = [e for e in plugin.model_events if e["event"] == "drift"]
    assert event["category"] == "load" and event["served_by"] == "online"
    assert plugin.summary()["drifted"] == ["load"]
    # served by the online estimate since the change: the not-yet-run task is planned near the new cost
    assert plugin.dispatcher.planned_s(pending, {}) == pytest.approx(2.0, rel=0.15)
    placed = plugin.dispatcher.task_info(plugin.scheduler, fake_ts("load-39"), "load-39", {})
    assert placed.duration_s == pytest.approx(2.0, rel=0.15)


def test_no_drift_for_categories_the_model_never_saw_or_the_oracle():
    clock = FakeClock(0.0)
    plugin = make_plugin(clock)
    for i in range(30):
        plugin.state.predictions[f"new-{i}"] = TaskPrediction(0.5, 0.0, "default", "v1", category="new")
        plugin.state.predictions[f"true-{i}"] = TaskPrediction(1.0, 0.0, "oracle", "oracle", category="true")
    for i in range(30):
        clock.now += 1
        finish(plugin, f"new-{i}", 5.0)
        finish(plugin, f"true-{i}", 3.0)
    assert not plugin.state.correction.drifted and not [e for e in plugin.model_events if e["event"] == "drift"]
    assert not plugin.state.corrector.online["duration"].observations


def test_placement_admits_with_the_corrected_p90_and_events_show_the_served_p50():
    clock = FakeClock(0.0)
    plugin = make_plugin(clock)
    gib = 2**30
    plugin.state.predictions["big-1"] = TaskPrediction(2.0, 1 * gib, "model", "v1", category="big",
                                                       p90_duration_s=3.0, p90_peak_memory_bytes=1.5 * gib)
    info = plugin.dispatcher.task_info(plugin.scheduler, fake_ts("big-1"), "big-1", {})
    assert info.peak_memory_bytes == int(1.5 * gib)  # no finished task yet: the model's p90
    plugin._log("place", "big-1", worker="w1", reason="memory")
    event = plugin.decisions[-1]
    assert event["predicted_peak_memory_bytes"] == gib and event["p90_peak_memory_bytes"] == int(1.5 * gib)
    assert event["predicted_duration_s"] == 2.0 and event["p90_duration_s"] == 3.0
    # finished tasks of the category peak at 2 GiB: the p50 and the p90 used for admission follow
    for i in range(10):
        plugin.state.predictions[f"big-done-{i}"] = TaskPrediction(2.0, 1 * gib, "model", "v1", category="big",
                                                                   p90_peak_memory_bytes=1.5 * gib)
        clock.now += 1
        finish(plugin, f"big-done-{i}", 2.0, peak=2 * gib)
    prediction = plugin.state.predictions["big-1"]
    p50 = planned_peak_memory_bytes(prediction, plugin.state.correction)
    assert 1.5 * gib < p50 < 2 * gib
    info = plugin.dispatcher.task_info(plugin.scheduler, fake_ts("big-1"), "big-1", {})
    assert info.peak_memory_bytes == int(admission_peak_memory_bytes(prediction, plugin.state.correction))
    assert info.peak_memory_bytes >= p50


def test_admission_p90_rule_is_pure():
    prediction = TaskPrediction(1.0, 100.0, "model", "v1", category="c", p90_peak_memory_bytes=200.0)
    assert admission_peak_memory_bytes(prediction, CategoryCorrection()) == pytest.approx(200.0)
    # the run's residuals say the corrected p50 is tight (q = 0): the p90 shrinks toward the p50 with n
    tight = CategoryCorrection(memory_upper={"c": (90, 0.0)}, spread_prior_rows=10.0)
    assert admission_peak_memory_bytes(prediction, tight) == pytest.approx(100.0 * math.exp(10 * math.log(2.0) / 100))
    # never below the corrected p50, and a baseline is not corrected until its category drifts
    mean = TaskPrediction(1.0, 100.0, "prefix-mean", None, category="c")
    scaled = CategoryCorrection(peak_memory={"c": 3.0})
    assert planned_peak_memory_bytes(mean, scaled) == 100.0
    scaled.memory_drifted.add("c")
    assert planned_peak_memory_bytes(mean, scaled) == 300.0
    assert admission_peak_memory_bytes(TaskPrediction(1.0, 0.0, "model", "v1", category="c"), scaled) == 0.0


def test_a_new_model_resets_the_in_run_learner():
    clock = FakeClock(0.0)
    predictor = FakePredictor()
    plugin = make_plugin(clock, predictor)
    for i in range(5):
        plugin.state.predictions[f"fit-{i}"] = TaskPrediction(1.0, 0.0, "model", "v1", category="fit")
        clock.now += 1
        finish(plugin, f"fit-{i}", 3.0)
    assert plugin.state.correction.factor("fit") > 1.5
    predictor.maybe_reload = lambda: True
    predictor.model_version = "v2"
    plugin._maybe_reload()
    assert plugin.state.correction.factor("fit") is None
    assert plugin.state.corrector.model_version == "v2"
    assert [e["event"] for e in plugin.model_events][-1] == "model-loaded"
    assert plugin.decisions[-1]["action"] == "model" and plugin.decisions[-1]["reason"] == "model-loaded"


def test_drift_events_are_appended_to_the_models_event_log_off_the_loop(tmp_path):
    from daskflow.learning.registry import ModelRegistry

    clock = FakeClock(0.0)
    plugin = make_plugin(clock, FakePredictor(url=str(tmp_path / "models")))

    async def run() -> None:
        for i in range(40):
            plugin.state.predictions[f"load-{i}"] = TaskPrediction(1.0, 0.0, "model", "v1", category="load")
        for i in range(40):
            clock.now += 1
            finish(plugin, f"load-{i}", 1.0 if i < 10 else 3.0)
        for _ in range(200):  # the append runs in the loop's executor
            if ModelRegistry(str(tmp_path / "models")).read_events():
                return
            await asyncio.sleep(0.01)

    asyncio.run(run())
    rows = ModelRegistry(str(tmp_path / "models")).read_events()
    assert [r["event"] for r in rows] == ["drift"]
    assert rows[0]["category"] == "load" and rows[0]["target"] == "duration"
    json.dumps(rows)


def test_model_page_lists_drift_alarms_and_model_loads():
    pytest.importorskip("bokeh")
    from scheduler_plugins.dashboard.pages import format_model_events

    html = format_model_events([
        {"event": "drift", "category": "load", "target": "duration", "direction": "slower", "shift": 2.0, "observed": 4,
         "model_version": "v1"},
        {"event": "model-loaded", "model_version": "v1"},
    ])
    assert "drift: duration of load slower x2.0 after 4 task(s)" in html and "model-loaded: model v1" in html
    assert "none in this scheduler" in format_model_events([])


def test_a_category_mispredicted_on_every_worker_of_one_host_is_corrected_not_read_as_slow_workers():
    """One host, 8 identical workers, the model 10x too optimistic for one category: the speed learner first
    reads every worker as slow, but the in-run correction must see the 10x within the first round of tasks and
    plan near it (durations are taken relative to the *current* median speed: a median cached from before the
    workers' first tasks counts part of the bias twice)."""
    clock = FakeClock(100.0)
    plugin = make_plugin(clock)
    workers = [f"tcp://198.18.0.1:{9000 + i}" for i in range(8)]
    for address in workers:
        plugin.state.facts[address] = {"host": "198.18.0.1", "nthreads": 1, "speed": 1.0, "speed_declared": False}
    for i in range(40):
        plugin.state.predictions[f"blast-{i}"] = TaskPrediction(1.0, 0.0, "model", "v1", category="blast")
    pending = plugin.state.predictions["blast-39"]
    planned = []
    for i in range(16):
        clock.now += 1.25  # one task a worker, round-robin: each worker finishes its first task, then its second
        metadata = None
        plugin.transition(f"blast-{i}", "processing", "memory", worker=workers[i % 8], metadata=metadata,
                          startstops=[{"action": "compute", "start": clock.now - 10.0, "stop": clock.now}])
        planned.append(plugin.dispatcher.planned_s(pending, {}))
    assert max(planned[:12]) >= 5.0, planned
    assert 10.0 / 1.25 <= planned[-1] <= 10.0 * 1.25, planned  # the 10x itself, not a speed counted twice


@pytest.mark.parametrize("read_s, slow", [(0.0, True), (4.0, False)])
def test_a_tasks_own_reads_are_no_slow_worker(read_s, slow):
    """Placement prices a task's reads of stored data apart from its compute: the speed learner takes them out."""
    from daskflow.contracts import TRANSFER_METADATA_KEY

    clock = FakeClock(100.0)
    plugin = make_plugin(clock)
    hosts = {"tcp://198.18.0.1:9000": "198.18.0.1", "tcp://198.18.0.2:9000": "198.18.0.2"}
    for address, host in hosts.items():
        plugin.state.facts[address] = {"host": host, "nthreads": 1, "speed": 1.0, "speed_declared": False}
    for i in range(24):
        plugin.state.predictions[f"fit-{i}"] = TaskPrediction(1.0, 0.0, "model", "v1", category="fit")
    for i in range(24):
        clock.now += 1.0
        address = list(hosts)[i % 2]
        slow_host = address == "tcp://198.18.0.1:9000"
        duration = 5.0 if slow_host else 1.0  # 4 s more on host 1: slower compute, or 4 s of reads
        metadata = {TRANSFER_METADATA_KEY: [["198.18.0.2", 10_000_000, read_s]]} if read_s and slow_host else None
        plugin.transition(f"fit-{i}", "processing", "memory", worker=address, metadata=metadata,
                          startstops=[{"action": "compute", "start": clock.now - duration, "stop": clock.now}])
    ratio = plugin.state.speeds.speed("tcp://198.18.0.1:9000", "198.18.0.1") / plugin.state.speeds.speed(
        "tcp://198.18.0.2:9000", "198.18.0.2")
    assert (ratio < 0.5) is slow, ratio


def test_a_half_speed_host_that_ran_the_over_predicted_categories_reads_slower_through_the_feedback():
    """Two hosts, 198.18.0.2 at half speed; the model serves "over" 4x too long and "under" 2x too short, and the
    slow host ran mostly "over" (as locality sends chains of categories to one host). The plain median of its
    actual / planned (the in-run correction moving the plans) read it near full speed; the category + host fit of
    the ratios against the served predictions reads it at about half."""
    clock = FakeClock(100.0)
    plugin = make_plugin(clock)
    fast, slow = "tcp://198.18.0.1:9000", "tcp://198.18.0.2:9000"
    for address in (fast, slow):
        plugin.state.facts[address] = {"host": address[6:16], "nthreads": 1, "speed": 1.0, "speed_declared": False}
    cost = {"over": 0.25, "under": 2.0}
    n = 0
    for round_ in range(6):
        for address, slowness, mostly, rarely in ((fast, 1.0, "under", "over"), (slow, 2.0, "over", "under")):
            for category in [mostly] * 3 + [rarely]:
                key = f"{category}-{n}"
                n += 1
                plugin.state.predictions[key] = TaskPrediction(1.0, 0.0, "model", "v1", category=category)
                clock.now += 1.0
                duration = cost[category] * slowness * (1 + 0.02 * (n % 3))
                plugin.transition(key, "processing", "memory", worker=address, metadata=None,
                                  startstops=[{"action": "compute", "start": clock.now - duration, "stop": clock.now}])
    speeds = plugin.state.speeds
    ratio = speeds.speed(slow, "198.18.0.2") / speeds.speed(fast, "198.18.0.1")
    assert 0.35 <= ratio <= 0.65, ratio  # 0.59 (shrunk toward nominal); the plain median gave 0.77


@pytest.mark.parametrize("read_s, observed", [(0.4, True), (0.9, False)])
def test_a_task_that_mostly_read_teaches_no_speed(read_s, observed):
    """A task that spent most of its time on its own reads (montage's mDiffFit: a 1 s plan learned from durations
    that held reads, 0.04 s of compute) left a tenth of its duration as compute and read as a worker x10 fast."""
    from daskflow.contracts import TRANSFER_METADATA_KEY

    clock = FakeClock(100.0)
    plugin = make_plugin(clock)
    address = "tcp://198.18.0.1:9000"
    plugin.state.facts[address] = {"host": "198.18.0.1", "nthreads": 1, "speed": 1.0, "speed_declared": False}
    for i in range(8):
        plugin.state.predictions[f"diff-{i}"] = TaskPrediction(1.0, 0.0, "model", "v1", category="diff")
        clock.now += 1.0
        metadata = {TRANSFER_METADATA_KEY: [["198.18.0.2", 10_000_000, read_s]]}
        plugin.transition(f"diff-{i}", "processing", "memory", worker=address, metadata=metadata,
                          startstops=[{"action": "compute", "start": clock.now - 1.0, "stop": clock.now}])
    assert (plugin.state.speeds.n_observed(address) == 8) is observed
    assert plugin.state.counts["speed_read_bound"] == (0 if observed else 8)
    assert len(plugin.predictor.observed) == 8  # the running means still learn from every task
