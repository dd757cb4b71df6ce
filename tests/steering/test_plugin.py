"""In-process cluster tests of SteeringPlugin: assert on the decision events it records."""

from __future__ import annotations

import asyncio
import time

import dask
import pytest
from distributed import Event, wait
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_test import captured_logger, gen_cluster

from daskflow.daskgraph import TaskSpec, submit_graph
from scheduler_plugins import compat
from daskflow.contracts import SPEED_RESOURCE, STEERING_PLUGIN, STEERING_TOPIC
from scheduler_plugins.steering import SteeringPlugin

pytestmark = pytest.mark.timeout(60)

GB = 2**30
NO_SPILL = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": 0.8,
    "distributed.worker.memory.terminate": False,
    "distributed.scheduler.work-stealing": False,
}


def timed_sleep(duration_s: float, *deps):
    """Sleep; return (start, stop) on the shared in-process clock."""
    start = time.monotonic()
    time.sleep(duration_s)
    return (start, time.monotonic())


class FakeSize:
    """An object that claims to be large (``sizeof``) without using the memory."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def __sizeof__(self) -> int:
        return self.nbytes


def spec(key: str, duration_s: float, *, deps=(), peak: int = 0, category: str | None = None) -> TaskSpec:
    annotations = {
        "run_id": "test-run",
        "kind": "replay",
        "category": category or key.split("-")[0],
        "true_duration_s": duration_s,
        "true_peak_memory_bytes": peak,
    }
    return TaskSpec(key, timed_sleep, (duration_s,), dependencies=tuple(deps), annotations=annotations)


async def steer(scheduler, **kwargs) -> SteeringPlugin:
    kwargs.setdefault("mode", "steer")
    kwargs.setdefault("oracle", True)
    plugin = SteeringPlugin(**kwargs)
    await scheduler.register_scheduler_plugin(plugin, name=STEERING_PLUGIN, idempotent=False)
    return plugin


async def events(client, action: str | None = None) -> list[dict]:
    found = [msg for _, msg in await client.get_events(STEERING_TOPIC)]
    return [msg for msg in found if action is None or msg["action"] == action]


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], config=NO_SPILL)
async def test_long_task_starts_first_even_in_the_first_wave(c, s, a):
    """Eight short tasks and one long one, all ready at once on one thread: the long one goes first."""
    plugin = await steer(s)
    specs = [spec(f"short-{i}", 0.02) for i in range(8)] + [spec("long-0", 0.3)]
    futures = submit_graph(c, specs)
    results = dict(zip(futures, await c.gather(list(futures.values()))))
    starts = {key: value[0] for key, value in results.items()}
    assert min(starts, key=starts.get) == "long-0"
    placed = await events(c, "place")
    assert placed[0]["key"] == "long-0"
    assert placed[0]["reason"] == "finish-time" and placed[0]["worker"] == a.address
    assert placed[0]["predicted_duration_s"] == pytest.approx(0.3)
    assert placed[0]["model_version"] == "oracle" and placed[0]["run_id"] == "test-run"
    assert placed[0]["priority_index"] == 0
    assert plugin.fallback_count == 0


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL, worker_kwargs={"memory_limit": "4GB"})
async def test_big_memory_task_avoids_the_nearly_full_worker(c, s, a, b):
    await steer(s)
    # Worker a holds 2.8 GB (by sizeof) and the task's input, so locality alone would pick a.
    [held] = await c.scatter([FakeSize(int(2.8e9))], workers=[a.address])
    with dask.annotate(daskflow={"category": "big", "true_duration_s": 0.05, "true_peak_memory_bytes": int(1e9)}):
        future = c.submit(timed_sleep, 0.05, held, key="big-1")
    await future
    assert s.tasks["big-1"].who_has == {s.workers[b.address]}
    [placed] = await events(c, "place")
    assert placed["key"] == "big-1" and placed["worker"] == b.address and placed["reason"] == "memory"
    fits = {alt["worker"]: alt["fits_memory"] for alt in placed["alternatives"]}
    assert fits == {a.address: False, b.address: True}


@gen_cluster(client=True, nthreads=[("127.0.0.1", 2)], config=NO_SPILL, worker_kwargs={"memory_limit": "4GB"})
async def test_hold_until_memory_frees(c, s, a):
    """Two tasks whose peaks do not fit together on the only worker run one after the other."""
    plugin = await steer(s)
    peak = int(1.6e9)  # 2 x 1.6 GB + the process > 0.8 x 4 GB
    futures = submit_graph(c, [spec("mem-1", 0.2, peak=peak), spec("mem-2", 0.2, peak=peak)])
    (s1, e1), (s2, e2) = await c.gather([futures["mem-1"], futures["mem-2"]])
    assert s2 >= e1 or s1 >= e2, "the two big tasks overlapped"
    actions = [(m["action"], m["key"]) for m in await events(c) if m["key"]]
    held_key = next(key for action, key in actions if action == "hold")
    assert ("release", held_key) in actions
    release = next(m for m in plugin.decisions if m["action"] == "release")
    assert release["held_s"] > 0


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL)
async def test_pinned_tasks_survive_a_worker_death(c, s, a, b):
    await steer(s)
    started = Event("started")
    release = Event("release")

    def block(*deps):
        Event("started").set()
        Event("release").wait(timeout=30)
        return 1

    with dask.annotate(daskflow={"category": "block", "true_duration_s": 5.0}):
        future = c.submit(block, key="block-1")
    await started.wait(timeout=10)
    [placed] = await events(c, "place")
    victim, survivor = (a, b) if placed["worker"] == a.address else (b, a)
    await victim.close(executor_wait=False)
    await release.set()
    assert await future == 1
    replaced = [m for m in await events(c, "place") if m["key"] == "block-1"]
    assert [m["worker"] for m in replaced] == [victim.address, survivor.address]
    assert not compat.is_held(s.tasks["block-1"])


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL)
async def test_tasks_short_against_the_round_trip_keep_stock_placement(c, s, a, b):
    """Only tasks long enough to pay for late binding are held; short ones run under stock placement."""
    with dask.config.set({"daskflow.steering.min-task-duration": "100ms"}):
        plugin = await steer(s)
    specs = [spec(f"tiny-{i}", 0.01) for i in range(6)] + [spec("long-0", 0.3)]
    futures = submit_graph(c, specs)
    await wait(list(futures.values()))
    [priority] = await events(c, "priority")
    assert priority["n_held"] == 1 and priority["n_tasks"] == 7
    assert [m["key"] for m in await events(c, "place")] == ["long-0"]
    assert not any(compat.is_held(s.tasks[key]) for key in futures)
    assert plugin.fallback_count == 0


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], config=NO_SPILL)
async def test_next_task_is_bound_before_the_running_one_ends(c, s, a):
    """A timed round binds the next task while the worker's current task still runs (no idle round trip)."""
    with dask.config.set({"daskflow.steering.lookahead": "300ms", "daskflow.steering.watchdog-interval": "60s"}):
        await steer(s)
    futures = submit_graph(c, [spec("first-0", 1.0), spec("second-0", 0.5)])
    (first_start, first_stop), _ = await c.gather([futures["first-0"], futures["second-0"]])
    wall_minus_monotonic = time.time() - time.monotonic()
    placed = {m["key"]: m["time"] for m in await events(c, "place")}
    assert set(placed) == {"first-0", "second-0"}
    assert placed["second-0"] > first_start + wall_minus_monotonic, "bound at once, not when the worker opened"
    assert placed["second-0"] < first_stop + wall_minus_monotonic, "bound only after the first task ended"


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL)
async def test_shadow_mode_changes_nothing(c, s, a, b):
    plugin = await steer(s, mode="shadow")
    seen: dict = {}

    class Spy(SchedulerPlugin):
        name = "spy"

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing":
                ts = s.tasks[key]
                seen[key] = (ts.worker_restrictions, ts.priority)

    s.add_plugin(Spy(), name="spy")
    specs = [spec(f"short-{i}", 0.01) for i in range(6)] + [spec("long-0", 0.1)]
    futures = submit_graph(c, specs)
    await wait(list(futures.values()))
    assert set(seen) == set(futures)
    assert all(restrictions is None for restrictions, _ in seen.values())
    actions = {m["action"] for m in await events(c)}
    assert actions == {"shadow"}
    shadow_places = [m for m in plugin.decisions if m.get("would_place")]
    assert shadow_places and all(m["worker"] in (a.address, b.address) for m in shadow_places)


class BrokenPredictor:
    model_version = "broken"

    def predict(self, records):
        raise RuntimeError("model file is corrupt")


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL)
async def test_broken_model_falls_back_with_one_warning(c, s, a, b):
    plugin = await steer(s, oracle=False, predictor=BrokenPredictor())
    with captured_logger("scheduler_plugins.steering") as log, pytest.warns(RuntimeWarning, match="steering failed"):
        first = submit_graph(c, [spec(f"x-{i}", 0.01) for i in range(5)])
        second = submit_graph(c, [spec(f"y-{i}", 0.01) for i in range(5)])
        await wait(list(first.values()) + list(second.values()))
    assert all(f.status == "finished" for f in [*first.values(), *second.values()])
    assert plugin.fallback_count == 2
    assert log.getvalue().count("daskflow steering failed") == 1
    fallbacks = await events(c, "fallback")
    assert len(fallbacks) == 2 and fallbacks[0]["reason"] == "fallback"
    assert not any(compat.is_held(s.tasks[k]) for k in [*first, *second])


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL)
async def test_exception_in_policy_releases_held_tasks_to_stock(c, s, a, b, monkeypatch):
    import scheduler_plugins.dispatch as dispatch_module

    def explode(*args, **kwargs):
        raise ZeroDivisionError("policy bug")
        yield  # pragma: no cover

    monkeypatch.setattr(dispatch_module, "plan_dispatch", explode)
    plugin = await steer(s)
    with pytest.warns(RuntimeWarning, match="policy bug"):
        futures = submit_graph(c, [spec(f"z-{i}", 0.01, deps=[f"z-{i - 1}"] if i else ()) for i in range(4)])
        await asyncio.wait_for(wait(list(futures.values())), 20)
    assert all(f.status == "finished" for f in futures.values())
    assert plugin.fallback_count >= 1
    assert next(m["where"] for m in await events(c, "fallback")) == "dispatch"


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.1", 1, {"resources": {SPEED_RESOURCE: 3}})], config=NO_SPILL)
async def test_register_plugin_from_the_client_and_fast_worker(c, s, a, b):
    """Client.register_plugin ships the plugin; a long task goes to the worker declared 3x faster."""
    with dask.config.set({"daskflow.steering.oracle": True, "daskflow.steering.mode": "steer"}):
        await c.register_plugin(SteeringPlugin())
    plugin = s.plugins[STEERING_PLUGIN]
    assert plugin.mode == "steer" and plugin.oracle
    futures = submit_graph(c, [spec("long-1", 0.3), spec("tiny-1", 0.01, deps=["long-1"])])
    await wait(list(futures.values()))
    placed = {m["key"]: m for m in await events(c, "place")}
    assert placed["long-1"]["worker"] == b.address
    assert placed["long-1"]["reason"] in {"speed", "finish-time"}


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL)
async def test_without_a_model_first_graph_is_stock_then_running_means_steer(c, s, a, b, tmp_path):
    """No model: the first graph keeps stock placement; once means are observed, the next graph is steered."""
    plugin = await steer(s, oracle=False, model_url=str(tmp_path / "no-model"))
    first = submit_graph(c, [spec(f"learn-{i}", 0.03, category="learn") for i in range(4)])
    await wait(list(first.values()))
    [priority] = await events(c, "priority")
    assert priority["reason"] == "no-information" and priority["n_held"] == 0
    assert not await events(c, "place")
    second = submit_graph(c, [spec(f"again-{i}", 0.03, category="learn") for i in range(4)])
    await wait(list(second.values()))
    placed = await events(c, "place")
    assert {m["key"] for m in placed} == set(second)
    assert {m["quality"] for m in placed} == {"prefix-mean"}
    assert all(m["predicted_duration_s"] >= 0.03 for m in placed)  # the observed mean of learn-* (sleep 0.03 s)
    assert plugin.fallback_count == 0


def test_model_predictions_are_calibrated_by_finished_tasks_of_their_category():
    """A model 10x off for this instance is planned with the observed factor after its first task (pure policy)."""
    from scheduler_plugins.policy import CategoryCalibration, TaskPrediction, planned_duration_s

    weight = 0.3  # daskflow.steering.calibration-weight
    calibration = CategoryCalibration()
    predictions = {
        "fit-1": TaskPrediction(2.0, 0.0, "model", "v1", category="fit"),
        "fit-2": TaskPrediction(4.0, 0.0, "model", "v1", category="fit"),
        "load-1": TaskPrediction(2.0, 0.0, "model", "v1", category="load"),
        "true-1": TaskPrediction(2.0, 0.0, "oracle", "oracle", category="fit"),
    }
    assert planned_duration_s(predictions["fit-2"], calibration) == 4.0
    calibration.observe("fit", actual_s=0.2, predicted_s=predictions["fit-1"].duration_s, weight=weight)
    assert planned_duration_s(predictions["fit-2"], calibration) == pytest.approx(0.4)
    assert planned_duration_s(predictions["load-1"], calibration) == 2.0  # other categories keep their prediction
    assert planned_duration_s(predictions["true-1"], calibration) == 2.0  # the oracle is the truth
    calibration.observe("fit", actual_s=4.0, predicted_s=predictions["fit-2"].duration_s, weight=weight)  # now exact
    assert 0.4 < planned_duration_s(predictions["fit-2"], calibration) < 4.0  # moves toward 1x, not jumps
