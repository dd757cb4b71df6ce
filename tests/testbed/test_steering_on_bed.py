"""Steering on the multi-host test bed (root only; slow; CI runs as root).

One bed for the module: 2 hosts x 1 worker, 200 Mbit/s links, host h1 at 0.4
speed (declared to the test bed only, never to the plugin), oracle
predictions (true speed-1 costs), persisted speeds off. Assertions are on
recorded decisions and where tasks ran, never on wall-clock speed.
"""

from __future__ import annotations

import os

import pytest
from distributed import wait

from daskflow.contracts import STEERING_PLUGIN, STEERING_TOPIC, task_annotation
from daskflow.daskgraph import TaskSpec, submit_graph
from daskflow.replay.hosted import hosted_task
from daskflow.replay.hosted import testbed_cluster as bed_cluster  # (a "test..." name would be collected as a test)
from daskflow.testbed import netns, processes, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.skipif(REASON is not None, reason=REASON or "")]

SPEEDS = [1.0, 0.4]


@pytest.fixture(scope="module")
def bed_client(tmp_path_factory):
    home = tmp_path_factory.mktemp("daskflow-home")
    config = {"daskflow.home": str(home), "daskflow.steering.persist-speeds": False,
              "distributed.scheduler.work-stealing": False}  # fmt: skip
    with bed_cluster("oracle", hosts=2, workers_per_host=1, link_mbit=200.0, link_latency_ms=0.0,
                         host_speeds=SPEEDS, extra_config=config) as (bed, client):  # fmt: skip
        yield bed, client
    token = bed.token
    assert not [n for n in netns.list_netns() if n.startswith(token)]
    assert not [link for link in netns.list_links() if link.startswith(token)]
    assert not processes.processes_with_token(token)


def spec(key: str, duration_s: float, *, external=None, locations=(), deps=()) -> TaskSpec:
    annotations = task_annotation(run_id="bed-run", kind="replay", category=key.split("-")[0],
                                  input_locations=list(locations), true_duration_s=duration_s,
                                  true_peak_memory_bytes=0)  # fmt: skip
    return TaskSpec(key, hosted_task, (duration_s, 0, 0, f"outputs/{key}.bin", external),
                    dependencies=tuple(deps), annotations=annotations)  # fmt: skip


def worker_of_host(client, bed, name: str) -> str:
    [address] = [a for a in client.scheduler_info(n_workers=-1)["workers"] if bed.host_of_address(a) == name]
    return address


def placements(client) -> dict[str, dict]:
    return {m["key"]: m for _, m in client.get_events(STEERING_TOPIC) if m.get("action") in ("place", "release")}


def test_placement_follows_stored_data(bed_client):
    """An input stored on h1 pulls its reader there; without it the idle tie goes to h0 (the lower address)."""
    bed, client = bed_client
    h1 = bed.hosts[1]
    os.makedirs(os.path.join(h1.storage_dir, "inputs"), exist_ok=True)
    with open(os.path.join(h1.storage_dir, "inputs", "big.bin"), "wb") as f:
        f.truncate(5_000_000)  # 0.2 s over a 200 Mbit/s link
    plain = submit_graph(client, [spec("plain-1", 0.3)])
    wait(list(plain.values()))
    reader = submit_graph(client, [spec("reader-1", 0.3, external=("h1", "inputs/big.bin"),
                                        locations=[{"host": h1.address, "bytes": 5_000_000}])])  # fmt: skip
    stored = reader["reader-1"].result()
    placed = placements(client)
    assert placed["plain-1"]["worker"] == worker_of_host(client, bed, "h0")
    assert placed["reader-1"]["worker"] == worker_of_host(client, bed, "h1")
    assert placed["reader-1"]["reason"] == "locality"
    assert stored.host == "h1"


def test_a_slower_host_gets_less_long_work_without_being_told(bed_client):
    bed, client = bed_client
    warm = submit_graph(client, [spec(f"warm-{i}", 0.08) for i in range(16)])
    wait(list(warm.values()))
    slow, fast = worker_of_host(client, bed, "h1"), worker_of_host(client, bed, "h0")

    def learned(workers, dask_scheduler=None):
        state = dask_scheduler.plugins[STEERING_PLUGIN].state
        return {w: state.speeds.speed(w, w.split("://")[-1].rsplit(":", 1)[0]) for w in workers}

    speeds = client.run_on_scheduler(learned, [slow, fast])
    assert speeds[slow] < 0.7 and speeds[fast] == 1.0
    futures = submit_graph(client, [spec(f"long-{i}", 0.5) for i in range(6)])
    ran_on = dict(zip(futures, client.gather(list(futures.values()))))
    on_slow = [k for k, out in ran_on.items() if out.host == "h1"]
    assert len(on_slow) < len(futures) - len(on_slow)
    placed = placements(client)
    assert all(placed[k]["speed_source"] == "learned" for k in futures)
    assert any(placed[k]["worker_speed"] < 0.7 for k in on_slow) or not on_slow


def test_a_host_slowed_mid_run_is_routed_around(tmp_path):
    """h1 becomes 8x slower 1.5 s into the run (told only to the test bed): after that, long work goes to h0.

    The probes straggle on h1 before any of them finishes there: each reads as h1 slowed (nothing finished
    there on time since it could start), so h1's speed drops before the late tasks are placed, whether the
    probes are restarted on h0 or not."""
    config = {"daskflow.home": str(tmp_path), "daskflow.steering.persist-speeds": False,
              "distributed.scheduler.work-stealing": False}  # fmt: skip
    with bed_cluster("oracle", hosts=2, workers_per_host=1, link_mbit=200.0, link_latency_ms=0.0,
                         slowdown="1@1.5:8", extra_config=config) as (bed, client):  # fmt: skip
        import time

        epoch = bed.restart_clock()
        first = submit_graph(client, [spec(f"early-{i}", 0.15) for i in range(8)])  # ~0.6 s per host: before the switch
        wait(list(first.values()))
        time.sleep(max(0.0, epoch + 1.6 - time.time()))  # past the switch (a bounded wait, not a speed assertion)
        probe = submit_graph(client, [spec(f"probe-{i}", 0.15) for i in range(6)])  # h1 now takes 1.2 s each
        wait(list(probe.values()))
        late = submit_graph(client, [spec(f"late-{i}", 0.6) for i in range(6)])
        ran = [f.result().host for f in late.values()]
        assert ran.count("h1") < ran.count("h0")
        events = [m for _, m in client.get_events(STEERING_TOPIC)]
        h1_worker = worker_of_host(client, bed, "h1")
        late_on_h1 = [m for m in events if m.get("action") in ("place", "release") and str(m["key"]).startswith("late")
                      and m["worker"] == h1_worker]  # fmt: skip
        assert all(m["worker_speed"] < 0.7 for m in late_on_h1)
        token = bed.token
    assert not [n for n in netns.list_netns() if n.startswith(token)]
