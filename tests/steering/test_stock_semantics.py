"""Steering keeps stock semantics where the client restricted placement itself.

Regression for distributed's ``test_steal.py::test_steal_resource_restrictions_asym_diff``
(dask/distributed#5565), which timed out with the plugins preloaded in ``steer``
mode: tasks needing a resource were held in ``no-worker`` by the plugin, so a
worker with that resource joining later never stole any of them. The scenario is
reproduced here (after distributed's test, BSD-3-Clause, Copyright (c) 2015,
Anaconda, Inc. and contributors) with a predictor that claims to know every task,
so the plugin would hold them if it managed them.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from distributed import Worker
from distributed.utils_test import gen_cluster, slowinc

from daskflow.contracts import STEERING_PLUGIN
from scheduler_plugins.steering import SteeringPlugin

pytestmark = pytest.mark.timeout(60)


class KnowsEverything:
    """Every task is predicted by "the model" to take 1 s: long enough to be held."""

    model_version = "fake"

    def predict(self, records):
        n = len(records)
        return type("P", (), {
            "duration_s": np.full(n, 1.0), "peak_memory_bytes": np.zeros(n),
            "quality": np.array(["model"] * n), "memory_quality": np.array(["model"] * n), "model_version": "fake",
        })()

    def observe(self, *args) -> None:
        pass


async def steer(scheduler) -> SteeringPlugin:
    plugin = SteeringPlugin(mode="steer", predictor=KnowsEverything())
    await scheduler.register_scheduler_plugin(plugin, name=STEERING_PLUGIN, idempotent=False)
    return plugin


@gen_cluster(
    client=True,
    nthreads=[("", 1, {"resources": {"A": 2, "C": 1}})],
    config={"distributed.scheduler.work-stealing-interval": "100ms"},
)
async def test_resource_restricted_tasks_are_stolen_by_a_worker_joining_later(c, s, a):
    plugin = await steer(s)
    first = c.submit(slowinc, 1, delay=0.1, workers=a.address)
    await first
    futures = c.map(slowinc, range(100), delay=0.2, resources={"A": 1})
    for _ in range(1000):
        if len(a.state.tasks) >= 101:
            break
        await asyncio.sleep(0.01)
    assert len(a.state.tasks) == 101  # stock: all queued on the only worker with A
    assert not plugin.state.managed
    async with Worker(s.address, nthreads=1, resources={"A": 4, "B": 5}) as b:
        for _ in range(1000):
            if b.state.tasks and len(a.state.tasks) < 101:
                break
            await asyncio.sleep(0.01)
        assert len(b.state.tasks) > 0
        assert len(a.state.tasks) < 101
    del futures, first


@gen_cluster(client=True, nthreads=[("", 1, {"resources": {"A": 1}})])
async def test_unrestricted_tasks_of_the_same_graph_are_still_steered(c, s, a):
    """Positive control: the same predictor makes the plugin hold the unrestricted tasks."""
    plugin = await steer(s)
    restricted = c.map(slowinc, range(3), delay=0.01, resources={"A": 1}, key=[f"r-{i}" for i in range(3)])
    free = c.map(slowinc, range(3), delay=0.01, key=[f"f-{i}" for i in range(3)])
    await c.gather(restricted + free)
    placed = {str(e["key"]) for e in plugin.decisions if e["action"] in ("place", "release", "hold")}
    assert not any(k.startswith("r-") for k in placed)
    assert {"f-0", "f-1", "f-2"} <= placed


def test_the_stock_semantics_runner_lists_tests_failing_only_with_the_plugins(tmp_path):
    """``benchmarks/stock_semantics.py`` diffs two junit files (the runs themselves need distributed's sources)."""
    from benchmarks.stock_semantics import compare, main, outcomes

    def junit(name, cases):
        body = "".join(f'<testcase classname="m" name="{n}">{inner}</testcase>' for n, inner in cases)
        path = tmp_path / name
        path.write_text(f"<testsuites><testsuite>{body}</testsuite></testsuites>")
        return outcomes(path)

    without = junit("without.xml", [("a", ""), ("b", ""), ("c", "<skipped/>"), ("d", "<failure/>")])
    with_ = junit("with.xml", [("a", ""), ("b", "<failure/>"), ("c", "<skipped/>"), ("d", "")])
    result = compare(without, with_)
    assert result["fail_only_with_plugins"] == ["m::b"]
    assert result["fail_only_without_plugins"] == ["m::d"]
    assert (result["tests"], result["passed_without"], result["passed_with"]) == (4, 2, 2)
    assert main(["--source", str(tmp_path / "nowhere")]) == 2
