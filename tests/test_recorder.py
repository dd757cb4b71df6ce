"""The recorder: one history row per finished/erred task, peak memory from the workers, Parquet off the loop."""

from __future__ import annotations

import asyncio
import time

import dask.config
import numpy as np
import pandas as pd
import pytest
from distributed.utils_test import gen_cluster

from daskflow.daskgraph import TaskSpec, submit_graph
from daskflow.learning.features import feature_frame, record_from_annotations
from daskflow.learning.history import read_history
from scheduler_plugins.recorder import PLUGIN_NAME, RecorderPlugin, install
from scheduler_plugins.worker_memory import WORKER_PLUGIN_NAME

pytestmark = pytest.mark.timeout(120)

MB = 1_000_000


def allocate(n_bytes: int, hold_s: float = 0.0) -> int:
    """Allocate and touch ``n_bytes`` (every page), optionally hold them, return a small result."""
    block = np.ones(n_bytes, dtype=np.uint8)
    if hold_s:
        time.sleep(hold_s)
    return int(block[::4096].sum())


def add_one(x: int) -> int:
    return x + 1


def fail(*_args) -> None:
    raise ValueError("boom")


def allocate_after(n_bytes: int, *_upstream) -> int:
    return allocate(n_bytes)


def annotated(category: str, run_id: str = "run-1", **extra) -> dict:
    return {"run_id": run_id, "kind": "asset", "category": category, "asset": category, "input_bytes": 1000, "n_inputs": 1, **extra}


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def graph(run_id: str = "run-1") -> list[TaskSpec]:
    return [
        TaskSpec(f"load-{run_id}", allocate, (30 * MB,), annotations=annotated("load", run_id, partition="2024-01-02")),
        TaskSpec(f"use-{run_id}", add_one, dependencies=(f"load-{run_id}",), annotations=annotated("use", run_id)),
        TaskSpec(f"bad-{run_id}", fail, dependencies=(f"use-{run_id}",), annotations=annotated("bad", run_id)),
    ]


async def run_graph(client, run_id: str = "run-1") -> None:
    futures = submit_graph(client, graph(run_id))
    await client.gather([futures[f"use-{run_id}"]])
    with pytest.raises(ValueError, match="boom"):
        await futures[f"bad-{run_id}"]


def test_rows_for_finished_and_erred_tasks_reach_parquet_on_close(tmp_path):
    url = str(tmp_path / "history")
    recorded: list[dict] = []

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(url, flush_interval_s=3600, flush_rows=10_000)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        assert WORKER_PLUGIN_NAME in a.plugins
        await run_graph(c)
        await wait_for(lambda: plugin.rows_recorded == 3)
        recorded.extend(plugin.recent_rows)
        assert plugin.stats()["buffered_rows"] == 3  # not flushed yet: close must do it

    scenario()
    rows = {r["key"]: r for r in recorded}
    load, use, bad = rows["load-run-1"], rows["use-run-1"], rows["bad-run-1"]
    assert load["category"] == "load" and load["run_id"] == "run-1" and load["partition"] == "2024-01-02"
    assert load["outcome"] == "success" and bad["outcome"] == "error"
    assert load["peak_memory_method"] == "vmhwm"
    # In-process, glibc may hand the task pages cached earlier by this pytest process, so only bound it
    # here; exact per-task peaks are asserted on real worker processes (the slow test below).
    assert isinstance(load["peak_memory_bytes"], int) and 0 <= load["peak_memory_bytes"] <= 1.5 * 30 * MB
    assert bad["peak_memory_bytes"] is None  # erred tasks send no metadata
    assert use["n_dependencies"] == 1 and use["dependency_bytes"] == load["output_nbytes"] > 0
    assert load["worker_threads"] == 1 and load["worker_memory_limit_bytes"] > 0
    assert load["duration_s"] == pytest.approx(load["stop_s"] - load["start_s"]) and load["duration_s"] > 0
    assert load["key_prefix"] == "load-run" and load["input_bytes"] == 1000

    history = read_history(url)
    assert sorted(history["key"]) == sorted(rows)
    back = history.set_index("key").loc["load-run-1"]
    assert back["peak_memory_bytes"] == load["peak_memory_bytes"]
    assert back["duration_s"] == pytest.approx(load["duration_s"])
    assert back["outcome"] == "success" and back["worker"] == load["worker"]
    files = list((tmp_path / "history").glob("date=*/part-*.parquet"))
    assert len(files) == 1 and not list((tmp_path / "history").rglob(".tmp-*"))


def test_recorded_row_gives_the_serving_features(tmp_path):
    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(str(tmp_path / "h"), register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        await run_graph(c, "run-2")
        await wait_for(lambda: plugin.rows_recorded == 3)
        row = next(r for r in plugin.recent_rows if r["key"] == "use-run-2")
        worker = s.workers[a.address]
        served = record_from_annotations(
            "use-run-2", annotated("use", "run-2"), n_dependencies=1, dependency_bytes=row["dependency_bytes"],
            worker_threads=worker.nthreads, worker_memory_limit_bytes=worker.memory_limit,
        )
        levels = ["load", "use"]
        pd.testing.assert_frame_equal(feature_frame([row], levels), feature_frame([served], levels))

    scenario()


def test_recorder_errors_never_break_a_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        broken = RecorderPlugin(str(blocker / "history"), flush_rows=1, flush_interval_s=3600, register_worker_plugin=False)
        await s.register_scheduler_plugin(broken, name=PLUGIN_NAME, idempotent=False)
        await run_graph(c, "run-3")
        await wait_for(lambda: broken.rows_recorded == 3 and broken.flush_error_count >= 1)
        await broken._wait_pending()
        assert broken.rows_flushed == 0 and broken.stats()["buffered_rows"] == 3  # all kept for a retry

        def explode(*args, **kwargs):
            raise RuntimeError("recorder bug")

        broken.make_row = explode
        futures = submit_graph(c, graph("run-4")[:2])
        assert await c.gather(futures["use-run-4"]) > 0
        assert broken.error_count >= 2

    scenario()


def test_buffer_is_bounded_and_counts_dropped_rows(tmp_path):
    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(str(tmp_path / "h"), max_buffer_rows=3, flush_rows=10**6, flush_interval_s=3600, register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        futures = c.map(add_one, range(10), key=[f"inc-{i}" for i in range(10)])
        await c.gather(futures)
        await wait_for(lambda: plugin.rows_recorded == 10)
        assert plugin.stats()["buffered_rows"] == 3 and plugin.dropped_rows == 7
        assert plugin.recent_rows[-1]["category"] == "inc" and plugin.recent_rows[-1]["kind"] == "dask"
        await plugin.flush_and_wait()
        assert plugin.rows_flushed == 3

    scenario()
    assert len(read_history(str(tmp_path / "h"))) == 3


def test_steering_predictions_are_added_to_rows(tmp_path):
    class FakeSteering:
        model_version = "v-test"

        def __init__(self):
            self.predictions = {"use-run-5": {"duration_s": 1.25, "peak_memory_bytes": 4096.0}}

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        s.plugins["daskflow-steering"] = FakeSteering()
        plugin = RecorderPlugin(str(tmp_path / "h"), register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        await run_graph(c, "run-5")
        await wait_for(lambda: plugin.rows_recorded == 3)
        rows = {r["key"]: r for r in plugin.recent_rows}
        assert rows["use-run-5"]["predicted_duration_s"] == 1.25
        assert rows["use-run-5"]["predicted_peak_memory_bytes"] == 4096.0
        assert rows["use-run-5"]["model_version"] == "v-test"
        assert "predicted_duration_s" not in rows["load-run-5"]
        del s.plugins["daskflow-steering"]

    scenario()


def test_install_reads_config_and_is_idempotent(daskflow_home):
    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        with dask.config.set({"daskflow.recorder.enabled": False}):
            install(s)
        assert PLUGIN_NAME not in s.plugins
        install(s)
        plugin = s.plugins[PLUGIN_NAME]
        install(s)
        assert s.plugins[PLUGIN_NAME] is plugin
        assert plugin.history_url == str(daskflow_home / "history")
        await wait_for(lambda: WORKER_PLUGIN_NAME in a.plugins)  # registered on the running worker
        assert WORKER_PLUGIN_NAME in s.worker_plugins  # and stored for future workers
        await c.submit(add_one, 1, key="inc-1")
        await wait_for(lambda: plugin.rows_recorded == 1)
        assert plugin.recent_rows[0]["peak_memory_method"] == "vmhwm"

    scenario()
    assert read_history()["key"].tolist() == ["inc-1"]  # default URL under the daskflow home


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_real_processes_measure_peak_memory_and_duration(daskflow_home):
    """Worker processes via the scheduler preload: 200 MB within 20 %, a 0.5 s sleep within 10 %."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
        scheduler_kwargs={"preload": ["scheduler_plugins.recorder"]}, memory_limit="2GB",
    ) as cluster, Client(cluster) as client:
        assert client.run_on_scheduler(lambda dask_scheduler: PLUGIN_NAME in dask_scheduler.plugins)
        client.wait_for_workers(1)
        tasks = [
            TaskSpec("alloc-200mb", allocate, (200 * 1024 * 1024, 0.1), annotations=annotated("alloc", "real")),
            TaskSpec("sleep-half", time.sleep, (0.5,), annotations=annotated("sleep", "real")),
        ]
        # A chain of 100 MB tasks: each must report its own ~100 MB although the previous one just freed as much.
        tasks += [
            TaskSpec(f"chain-{i}", allocate_after, (100 * 1024 * 1024,), dependencies=(f"chain-{i - 1}",) if i else ("alloc-200mb",),
                     annotations=annotated("chain", "real"))
            for i in range(3)
        ]
        futures = submit_graph(client, tasks)
        client.gather(list(futures.values()))

        def recorded(dask_scheduler):
            plugin = dask_scheduler.plugins[PLUGIN_NAME]
            return [dict(r) for r in plugin.recent_rows]

        deadline = time.monotonic() + 30
        while len(rows := recorded_rows(client, recorded)) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    by_key = {r["key"]: r for r in rows}
    peak = by_key["alloc-200mb"]["peak_memory_bytes"]
    assert by_key["alloc-200mb"]["peak_memory_method"] == "vmhwm"
    assert abs(peak - 200 * 1024 * 1024) <= 0.2 * 200 * 1024 * 1024, peak
    assert by_key["sleep-half"]["duration_s"] == pytest.approx(0.5, rel=0.1)
    for i in range(3):
        chained = by_key[f"chain-{i}"]["peak_memory_bytes"]
        assert abs(chained - 100 * 1024 * 1024) <= 0.2 * 100 * 1024 * 1024, (i, chained)
    history = read_history()  # flushed on close, under the daskflow home
    assert set(history["key"]) == {"alloc-200mb", "sleep-half", "chain-0", "chain-1", "chain-2"}
    assert history.set_index("key").loc["alloc-200mb", "peak_memory_bytes"] == peak


def recorded_rows(client, function) -> list[dict]:
    return client.run_on_scheduler(function)


def test_rows_carry_the_real_steering_plugins_predictions(tmp_path):
    """Cross-plugin contract: with steering (shadow) loaded on a trained model, rows hold its predictions."""
    steering = pytest.importorskip("scheduler_plugins.steering")
    from daskflow.learning.training import train_models

    history = pd.DataFrame(
        [{"run_id": "old", "category": c, "kind": "asset", "input_bytes": 1000 * (i + 1), "duration_s": 0.01 * (i + 1),
          "peak_memory_bytes": 10**6 * (i + 1), "outcome": "success"} for i in range(20) for c in ("load", "use")]
    )
    manifest = train_models(history, str(tmp_path / "model"), rounds=10)

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        config = {"daskflow.steering.mode": "shadow", "daskflow.steering.model": str(tmp_path / "model"),
                  "daskflow.history.url": str(tmp_path / "h")}
        with dask.config.set(config):
            plugin = RecorderPlugin()
            await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
            await s.register_scheduler_plugin(steering.SteeringPlugin(s), name=steering.PLUGIN_NAME, idempotent=False)
        await run_graph(c, "run-6")
        await wait_for(lambda: plugin.rows_recorded == 3)
        rows = {r["key"]: r for r in plugin.recent_rows}
        for key in ("load-run-6", "use-run-6"):
            assert rows[key]["model_version"] == manifest["model_version"]
            assert rows[key]["predicted_duration_s"] > 0 and rows[key]["predicted_peak_memory_bytes"] > 0
        # finished tasks feed the predictor's running mean: a new category is known after its first task
        predictor = s.plugins[steering.PLUGIN_NAME].predictor
        assert predictor.baseline_for("never-trained")[1] == "default"
        await c.submit(add_one, 1, key="never-trained-1")
        await wait_for(lambda: predictor.baseline_for("never-trained")[1] == "prefix-mean")

    scenario()


def test_periodic_flush_writes_without_being_asked(tmp_path):
    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(str(tmp_path / "h"), flush_interval_s=0.05, flush_rows=10**6, register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        await c.gather(c.map(add_one, range(5), key=[f"inc-{i}" for i in range(5)]))
        await wait_for(lambda: plugin.rows_flushed == 5)
        assert plugin.stats()["buffered_rows"] == 0 and plugin.stats()["files_written"] >= 1
        assert len(read_history(str(tmp_path / "h"))) == 5  # visible while the scheduler still runs

    scenario()


def seceding_allocate(n_bytes: int) -> int:
    from distributed import secede

    secede()  # executing -> long-running: still the same task, still measured
    return allocate(n_bytes)


def test_seceded_tasks_are_still_measured(tmp_path):
    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(str(tmp_path / "h"))
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        await c.submit(seceding_allocate, 20 * MB, key="seceding-1")
        await wait_for(lambda: plugin.rows_recorded == 1)
        row = plugin.recent_rows[0]
        assert row["peak_memory_method"] == "vmhwm" and 0 <= row["peak_memory_bytes"] <= 1.5 * 20 * MB

    scenario()


def test_unwritable_history_gives_one_warning_and_counters(tmp_path, caplog):
    """Issue 16.4: a history URL that cannot be written is reported ONCE (probe at start), then only counted."""
    import logging

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(str(blocker / "history"), flush_rows=1, flush_interval_s=3600, register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        await wait_for(lambda: plugin.history_write_failures >= 1)  # the start-up probe
        await c.gather(c.map(add_one, range(4), key=[f"inc-{i}" for i in range(4)]))
        await wait_for(lambda: plugin.rows_recorded == 4 and plugin.flush_error_count >= 2)
        await plugin._wait_pending()
        stats = plugin.stats()
        assert stats["history_write_failures"] >= 3 and "Error" in stats["history_error"]
        assert stats["rows_flushed"] == 0

    with caplog.at_level(logging.WARNING, logger="scheduler_plugins.recorder"):
        scenario()
    warnings_logged = [r for r in caplog.records if r.name == "scheduler_plugins.recorder" and r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1 and "not writable" in warnings_logged[0].getMessage()
    assert "daskflow.history.url" in warnings_logged[0].getMessage()


def test_a_writable_history_gives_no_warning_and_hygiene_columns(tmp_path, caplog):
    import logging

    marker = tmp_path / "attempted"

    def flaky(x):
        if not marker.exists():
            marker.write_text("1")
            raise ValueError("first attempt fails")
        return x

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def scenario(c, s, a):
        plugin = RecorderPlugin(str(tmp_path / "h"), flush_rows=10**6, flush_interval_s=3600, register_worker_plugin=False)
        await s.register_scheduler_plugin(plugin, name=PLUGIN_NAME, idempotent=False)
        assert await c.submit(flaky, 1, key="flaky-1", retries=1) == 1
        assert await c.submit(add_one, 1, key="plain-1") == 2
        await wait_for(lambda: plugin.rows_recorded == 2)
        await plugin.flush_and_wait()
        assert plugin.history_write_failures == 0 and plugin.stats()["history_error"] is None

    with caplog.at_level(logging.WARNING, logger="scheduler_plugins.recorder"):
        scenario()
    assert not [r for r in caplog.records if r.name == "scheduler_plugins.recorder"]
    rows = read_history(str(tmp_path / "h")).sort_values("recorded_at")
    assert rows["key"].tolist() == ["flaky-1", "plain-1"] and rows["outcome"].tolist() == ["success", "success"]
    assert rows["attempt"].tolist() == [2, 1]  # the retry is marked: cleaning down-weights it
    assert rows["worker_paused"].tolist() == [False, False]
    assert rows["spilled_bytes"].tolist() == [0, 0]
