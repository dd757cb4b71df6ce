"""Storage that really has a location: the host a write records is the host the scheduler names workers by."""

from __future__ import annotations

import dask
import pyarrow as pa
import pytest
from distributed import wait
from distributed.utils_test import gen_cluster

from daskflow.contracts import STEERING_TOPIC
from daskflow.storage import AssetStore, data_host
from scheduler_plugins.policy import PolicyConfig, TaskInfo, WorkerInfo, choose_worker
from tests.steering.test_plugin import NO_SPILL, steer, timed_sleep

pytestmark = pytest.mark.timeout(60)


def test_placement_follows_the_host_a_write_recorded():
    """Two idle, equal workers: without stored inputs the tie goes to the first; with them, to the data."""
    here = WorkerInfo("tcp://198.18.0.2:4001", host="198.18.0.2")
    there = WorkerInfo("tcp://198.18.0.3:4001", host="198.18.0.3")
    stored_on = data_host(there.address, local_storage=True)
    assert stored_on == there.host
    config = PolicyConfig(storage_bandwidth_bytes_per_s=25e6)
    without = choose_worker(TaskInfo("read", 1.0), [here, there], config)
    with_data = choose_worker(TaskInfo("read", 1.0, input_locations=((stored_on, 50_000_000),)), [here, there], config)
    assert without.worker == here.address
    assert with_data.worker == there.address and with_data.reason == "locality"


def test_a_shared_store_has_no_host_so_it_changes_no_placement():
    here = WorkerInfo("tcp://198.18.0.2:4001", host="198.18.0.2")
    there = WorkerInfo("tcp://198.18.0.3:4001", host="198.18.0.3")
    assert data_host(there.address, local_storage=False) is None
    placement = choose_worker(TaskInfo("read", 1.0), [here, there], PolicyConfig())
    assert placement.worker == here.address and placement.reason == "finish-time"


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.2", 1)], config=NO_SPILL)
async def test_a_task_reading_stored_data_goes_to_the_host_that_wrote_it(c, s, a, b):
    """b (127.0.0.2) writes a table to local disk; a task reading it is placed on b, not on a (the tie-break)."""
    import tempfile

    await steer(s)
    with tempfile.TemporaryDirectory() as base:
        stored = await c.submit(AssetStore(base).write, "x", pa.table({"v": list(range(200_000))}), run_id="r",
                                workers=[b.address], pure=False)
        assert stored.host == s.workers[b.address].host == "127.0.0.2"
        truth = {"kind": "replay", "true_duration_s": 0.3, "true_peak_memory_bytes": 0}
        with dask.annotate(daskflow={**truth, "category": "plain"}):
            plain = c.submit(timed_sleep, 0.3, key="plain-1")
        await wait(plain)
        with dask.annotate(daskflow={**truth, "category": "reader",
                                     "input_locations": [{"host": stored.host, "bytes": stored.bytes}]}):
            reader = c.submit(timed_sleep, 0.3, key="reader-1")
        await wait(reader)
    placed = {m["key"]: m for _, m in await c.get_events(STEERING_TOPIC) if m["action"] == "place"}
    assert placed["plain-1"]["worker"] == a.address, placed["plain-1"]
    assert placed["reader-1"]["worker"] == b.address and placed["reader-1"]["reason"] == "locality"
