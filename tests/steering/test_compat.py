"""compat is the only module that touches scheduler internals: check it against the installed distributed."""

from __future__ import annotations

import asyncio

import dask
import pytest
from distributed import wait
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_test import gen_cluster, inc

from daskflow.contracts import SPEED_RESOURCE
from scheduler_plugins import compat

pytestmark = pytest.mark.timeout(30)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_hold_pin_dispatch_round_trip(c, s, a, b):
    """A held task waits in no-worker, even when workers join; pinning + dispatch runs it on that worker."""

    class Holder(SchedulerPlugin):
        name = "holder"

        def update_graph(self, scheduler, *, tasks, **kwargs):
            for key in tasks:
                ts = compat.task_state(scheduler, key)
                if compat.is_manageable(ts):
                    compat.hold(ts)

    s.add_plugin(Holder(), name="holder")
    future = c.submit(inc, 1, key="held-1")
    while "held-1" not in s.tasks or compat.state_of(s.tasks["held-1"]) != "no-worker":
        await asyncio.sleep(0.01)
    ts = s.tasks["held-1"]
    assert compat.is_held(ts) and ts in compat.unrunnable_tasks(s)
    s.remove_plugin("holder")
    compat.pin(ts, b.address, loose=False)
    compat.dispatch(s, ["held-1"], "test-dispatch")
    assert compat.processing_on(ts) == b.address
    assert await future == 2
    assert compat.pinned_to(ts) == {b.address}


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_release_to_stock_unpins(c, s, a):
    class Holder(SchedulerPlugin):
        name = "holder"

        def update_graph(self, scheduler, *, tasks, **kwargs):
            for key in tasks:
                compat.hold(compat.task_state(scheduler, key))

    s.add_plugin(Holder(), name="holder")
    futures = c.map(inc, range(3), key=[f"r-{i}" for i in range(3)])
    while not all(k in s.tasks and s.tasks[k].state == "no-worker" for k in ("r-0", "r-1", "r-2")):
        await asyncio.sleep(0.01)
    s.remove_plugin("holder")
    assert compat.release_to_stock(s, ["r-0", "r-1", "r-2", "missing"], "test-release") == 3
    await wait(futures)
    assert not any(compat.pinned_to(s.tasks[k]) for k in ("r-0", "r-1", "r-2"))


@gen_cluster(client=True, nthreads=[("127.0.0.1", 2, {"resources": {SPEED_RESOURCE: 2, "GPU": 1}, "memory_limit": "1GB"})])
async def test_worker_facts_speed_resources_memory(c, s, a):
    [ws] = compat.running_workers(s)
    facts = compat.worker_facts(ws)
    assert facts == {"address": a.address, "host": "127.0.0.1", "nthreads": 2, "speed": 2.0, "memory_limit_bytes": 10**9}
    managed, unmanaged_old = compat.worker_memory(ws)
    assert managed == 0 and (unmanaged_old is None or unmanaged_old >= 0)
    with dask.annotate(resources={"GPU": 1}):
        future = c.submit(inc, 1, key="gpu-1")
    await future
    assert compat.allowed_workers(s, s.tasks["gpu-1"]) == frozenset({a.address})
    assert compat.bandwidth(s) > 0


def test_pause_fraction_reads_distributed_config():
    with dask.config.set({"distributed.worker.memory.pause": 0.5}):
        assert compat.pause_fraction() == 0.5
    with dask.config.set({"distributed.worker.memory.pause": False}):
        assert compat.pause_fraction() == 0.0


def test_startstops_compute_s():
    assert compat.startstops_compute_s([{"action": "transfer", "start": 0, "stop": 1}, {"action": "compute", "start": 2.0, "stop": 2.5}]) == 0.5
    assert compat.startstops_compute_s(None) is None
