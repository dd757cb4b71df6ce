"""The recorder's tiny-task sampling: a prefix of only sub-millisecond tasks is recorded 1 in k, with weight k."""

from __future__ import annotations

import asyncio
import gc
import time
from types import SimpleNamespace

import dask.config
import pytest
from distributed.utils_test import gen_cluster

from daskflow.contracts import SAMPLE_WEIGHT_METADATA_KEY
from daskflow.learning.history import read_history
from scheduler_plugins.recorder import PLUGIN_NAME, RecorderPlugin

pytestmark = pytest.mark.timeout(120)

SAMPLING = {"daskflow.recorder.tiny-tasks.after": 32, "daskflow.recorder.tiny-tasks.sample-every": 4}


def finished(duration_s: float) -> dict:
    return {"worker": "tcp://127.0.0.1:1", "nbytes": 28, "metadata": {},
            "startstops": ({"action": "compute", "start": 10.0, "stop": 10.0 + duration_s},)}


async def settled(plugin: RecorderPlugin, n_tasks: int, timeout_s: float = 10.0) -> None:
    """Until every one of ``n_tasks`` finished tasks got a row or was sampled out."""
    deadline = time.monotonic() + timeout_s
    while plugin.rows_recorded + plugin.rows_sampled_out < n_tasks:
        assert time.monotonic() < deadline, "the recorder did not see every task before the deadline"
        await asyncio.sleep(0.01)


def recorder_on_fake_scheduler(tmp_path, prefixes: dict[str, int]) -> RecorderPlugin:
    worker = SimpleNamespace(nthreads=1, memory_limit=2**30, metrics={}, status=None, address="tcp://127.0.0.1:1")
    tasks = {f"{prefix}-{i}": SimpleNamespace(annotations=None, dependencies=(), prefix=SimpleNamespace(name=prefix),
                                              processing_on=worker)
             for prefix, n in prefixes.items() for i in range(n)}
    with dask.config.set(SAMPLING):
        plugin = RecorderPlugin(str(tmp_path / "h"), flush_rows=10**6, flush_interval_s=3600, register_worker_plugin=False)
    plugin.scheduler = SimpleNamespace(tasks=tasks, workers={worker.address: worker}, plugins={})
    return plugin


def test_a_prefix_of_tiny_tasks_is_recorded_in_full_then_one_in_k_with_weight_k(tmp_path):
    plugin = recorder_on_fake_scheduler(tmp_path, {"noop": 100})
    for i in range(100):
        plugin.transition(f"noop-{i}", "processing", "memory", **finished(0.0001))
    rows = list(plugin.recent_rows)
    weights = [row["sample_weight"] for row in rows]
    # tasks 1-32 in full; then the 36th, 40th, ..., 100th, each standing for 4
    assert weights == [1.0] * 32 + [4.0] * 17
    assert plugin.rows_recorded == 49 and plugin.rows_sampled_out == 51
    assert plugin.stats()["rows_sampled_out"] == 51


def test_long_tasks_over_one_percent_end_the_sampling_of_their_prefix_only_and_errors_are_always_recorded(tmp_path):
    plugin = recorder_on_fake_scheduler(tmp_path, {"a": 80, "b": 80})
    for i in range(40):
        plugin.transition(f"a-{i}", "processing", "memory", **finished(0.0001))
        plugin.transition(f"b-{i}", "processing", "memory", **finished(0.0001))
    plugin.transition("a-40", "processing", "memory", **finished(0.5))  # a is not a prefix of tiny tasks
    for i in range(41, 80):
        plugin.transition(f"a-{i}", "processing", "memory", **finished(0.0001))
    for i in range(40, 79):
        plugin.transition(f"b-{i}", "processing", "memory", **finished(0.0001))
    plugin.transition("b-79", "processing", "erred", **finished(0.0001))
    rows = list(plugin.recent_rows)
    a = [r for r in rows if r["key"].startswith("a-")]
    b = [r for r in rows if r["key"].startswith("b-")]
    # a: 32 in full, then 1 in 4 (its 36th and 40th task; the long 41st was decided before it ran: skipped),
    # then one long task in 41 (> 1 %): the 39 others in full
    assert [r["sample_weight"] for r in a] == [1.0] * 32 + [4.0] * 2 + [1.0] * 39
    # b: still sampled (its 36th, 40th, ..., 76th task), and the erred task is recorded whatever the interval
    assert [r["sample_weight"] for r in b] == [1.0] * 32 + [4.0] * 11 + [1.0]
    assert b[-1]["key"] == "b-79" and b[-1]["outcome"] == "error"


def test_a_rare_long_task_does_not_end_the_sampling(tmp_path):
    plugin = recorder_on_fake_scheduler(tmp_path, {"noop": 200})
    for i in range(200):
        plugin.transition(f"noop-{i}", "processing", "memory", **finished(0.5 if i == 150 else 0.0001))
    assert plugin.rows_recorded == 32 + (200 - 32) // 4  # 1 long task in 151..200 finished: under 1 %


def test_sample_every_one_records_every_task(tmp_path):
    with dask.config.set({"daskflow.recorder.tiny-tasks.sample-every": 1}):
        plugin = RecorderPlugin(str(tmp_path / "h"), register_worker_plugin=False)
    plugin.scheduler = recorder_on_fake_scheduler(tmp_path, {"noop": 400}).scheduler
    for i in range(400):
        plugin.transition(f"noop-{i}", "processing", "memory", **finished(0.0001))
    assert plugin.rows_recorded == 400 and plugin.rows_sampled_out == 0
    assert {row["sample_weight"] for row in plugin.recent_rows} == {1.0}


def test_sampled_rows_reach_the_history_with_their_weights_on_a_real_cluster(tmp_path):
    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        # every task counts as tiny here (10 s), so the counts do not depend on the machine's speed
        with dask.config.set({**SAMPLING, "daskflow.recorder.tiny-tasks.seconds": "10s"}):
            plugin = RecorderPlugin(str(tmp_path / "h"), flush_rows=10**6, flush_interval_s=3600, register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        futures = c.map(lambda x: x + 1, range(100), key=[f"inc-{i}" for i in range(100)])
        await c.gather(futures)
        await settled(plugin, 100)
        await plugin.flush_and_wait()

    scenario()
    history = read_history(str(tmp_path / "h"))
    assert len(history) == 49
    assert history["sample_weight"].tolist().count(4.0) == 17 and history["sample_weight"].sum() == 32 + 17 * 4


def test_the_worker_plugin_decides_and_skipped_tasks_are_not_measured(tmp_path):
    from scheduler_plugins.worker_memory import WORKER_PLUGIN_NAME

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        with dask.config.set({**SAMPLING, "daskflow.recorder.tiny-tasks.seconds": "10s"}):
            plugin = RecorderPlugin(str(tmp_path / "h"), flush_rows=10**6, flush_interval_s=3600)
            await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
            deadline = time.monotonic() + 10
            while WORKER_PLUGIN_NAME not in a.plugins:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        futures = c.map(lambda x: x + 1, range(100), key=[f"inc-{i}" for i in range(100)])
        await c.gather(futures)
        await settled(plugin, 100)
        rows = list(plugin.recent_rows)
        assert len(rows) == 49 and plugin.rows_sampled_out == 51
        assert sorted(r["sample_weight"] for r in rows) == [1.0] * 32 + [4.0] * 17
        assert all(r["peak_memory_bytes"] is not None for r in rows)  # every recorded task was measured
        worker_plugin = a.plugins[WORKER_PLUGIN_NAME]
        assert not worker_plugin._unmeasured and not worker_plugin._weights  # nothing left behind
        skipped = [s.tasks[f.key].metadata for f in futures if SAMPLE_WEIGHT_METADATA_KEY in s.tasks[f.key].metadata]
        assert len(skipped) == 51 and all(m == {SAMPLE_WEIGHT_METADATA_KEY: 0.0} for m in skipped)
        assert not any(gc.is_tracked(m) for m in skipped)  # plain values: no work for the cyclic GC per live task

    scenario()


def test_the_steering_feedback_learns_only_from_measured_tasks():
    """A task the worker skipped (weight 0) is no learning sample; a sampled one (weight k) and an unsampled one are."""
    from daskflow.contracts import METADATA_KEY
    from scheduler_plugins.policy import TaskPrediction
    from scheduler_plugins.steering import SteeringPlugin
    from tests.steering.fakes import FakeClock

    observed = []

    class Predictor:
        model_version, composite = "v1", None

        def observe(self, category, duration_s, peak_memory_bytes=None):
            observed.append((category, duration_s))

        def baseline_for(self, category):
            return (1.0, "prefix-mean", 0.0, "default")

        def maybe_reload(self):
            return False

    clock = FakeClock(10.0)
    plugin = SteeringPlugin(mode="steer", oracle=False, predictor=Predictor(), clock=clock, wall_clock=clock)
    plugin.scheduler = SimpleNamespace(plugins={}, log_event=lambda topic, event: None)
    weights = [None, 1.0, 0.0, 16.0, 0.0, 0.0]
    for i, weight in enumerate(weights):
        plugin.state.predictions[f"noop-{i}"] = TaskPrediction(0.001, 0.0, "model", "v1", category="noop")
        metadata = (None if weight is None else {SAMPLE_WEIGHT_METADATA_KEY: 0.0} if weight == 0
                    else {METADATA_KEY: {"sample_weight": weight}})
        plugin.transition(f"noop-{i}", "processing", "memory", worker=None, metadata=metadata,
                          startstops=[{"action": "compute", "start": 0.0, "stop": 0.0005 * (i + 1)}])
    assert [d for _, d in observed] == pytest.approx([0.0005, 0.001, 0.002])  # tasks 0, 1 and 3
    summary = plugin.summary()
    assert summary["observed"] == 3
    assert plugin.state.counts["sampled_out"] == 3
    assert plugin.fallback_count == 0
