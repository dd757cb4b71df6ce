"""Stragglers and slow hosts: pure rules with an injected clock (no cluster, no sleeping)."""

from __future__ import annotations

import pytest

from scheduler_plugins.policy import SpeedEstimates, WorkerInfo
from scheduler_plugins.policy.stragglers import (
    CategorySpread,
    RunningTask,
    find_stragglers,
    restart_decision,
)

pytestmark = pytest.mark.timeout(30)


def running(key="k", *, kind="replay", planned_s=2.0, speed=1.0, start=100.0, category="fit", worker="tcp://slow:1",
            host="slow") -> RunningTask:  # fmt: skip
    return RunningTask(key, worker, host, category, kind, planned_s, speed, start)


def test_a_task_past_k_times_its_plan_is_a_straggler_and_not_before():
    spread = CategorySpread()
    task = running(planned_s=2.0, start=100.0)
    assert find_stragglers([task], now=105.9, spread=spread, straggler_factor=3.0) == []
    [found] = find_stragglers([task], now=106.1, spread=spread, straggler_factor=3.0)
    assert found.overrun == pytest.approx(3.05)


def test_a_category_with_a_wide_spread_is_given_more_room():
    spread = CategorySpread()
    for ratio in [1.0, 4.0, 5.0, 1.0, 4.5, 1.0, 5.0, 1.0, 4.0, 5.0]:  # a bimodal category: p90 of 5x is healthy
        spread.observe("fit", actual_s=ratio, planned_s=1.0)
    task = running(planned_s=1.0, start=0.0)
    assert find_stragglers([task], now=4.0, spread=spread, straggler_factor=3.0) == []
    assert find_stragglers([task], now=5.5, spread=spread, straggler_factor=3.0)


def test_the_plan_on_a_slow_worker_already_counts_its_speed():
    task = running(planned_s=1.0, speed=0.25, start=0.0)  # expected 4 s there
    assert find_stragglers([task], now=10.0, spread=CategorySpread(), straggler_factor=3.0) == []


def test_restart_on_an_idle_fast_worker_when_it_finishes_earlier():
    [straggler] = find_stragglers([running(planned_s=2.0, start=0.0)], now=8.0, spread=CategorySpread(), straggler_factor=3.0)
    fast = WorkerInfo("tcp://fast:1", host="fast", speed=1.0)
    decision = restart_decision(straggler, [fast], bandwidth_bytes_per_s=1e8)
    assert decision.restart and decision.worker == "tcp://fast:1" and decision.reason == "straggler-restart"
    assert decision.remaining_here_s == pytest.approx(6.0) and decision.finish_there_s == pytest.approx(2.0)


def test_no_restart_on_its_own_worker_a_busy_one_or_a_slower_one():
    [straggler] = find_stragglers([running(planned_s=2.0, start=0.0)], now=8.0, spread=CategorySpread(), straggler_factor=3.0)
    same_host = WorkerInfo("tcp://slow:1", host="slow")  # its own worker (it has a free thread)
    busy = WorkerInfo("tcp://busy:1", host="busy", n_processing=1)
    slower = WorkerInfo("tcp://slower:1", host="slower", speed=0.2)
    decision = restart_decision(straggler, [same_host, busy, slower], bandwidth_bytes_per_s=1e8)
    assert not decision.restart and decision.reason == "straggler"


def test_an_asset_is_never_restarted():
    [straggler] = find_stragglers([running(kind="asset", planned_s=2.0, start=0.0)], now=20.0, spread=CategorySpread(),
                                  straggler_factor=3.0)  # fmt: skip
    decision = restart_decision(straggler, [WorkerInfo("tcp://fast:1", host="fast")], bandwidth_bytes_per_s=1e8)
    assert not decision.restart and decision.reason == "straggler-asset"


def test_a_straggler_is_censored_evidence_that_its_host_slowed():
    """A host slowed mid-run: before its slow tasks finish, one straggler observation already lowers its speed."""
    speeds = SpeedEstimates(window=8, pseudo_n=2.0)
    for _ in range(8):
        speeds.observe("tcp://slow:1", "slow", actual_s=1.0, planned_s=1.0)
    [straggler] = find_stragglers([running(planned_s=1.0, start=0.0)], now=4.0, spread=CategorySpread(), straggler_factor=3.0)
    for _ in range(3):  # three of its tasks overran 4x
        speeds.observe("tcp://slow:1", "slow", actual_s=straggler.elapsed_s, planned_s=1.0)
    assert speeds.speed("tcp://slow:1", "slow") < 1.0


def test_a_straggling_replay_task_is_restarted_on_the_idle_worker():
    from distributed import wait
    from distributed.utils_test import gen_cluster

    from daskflow.contracts import STEERING_TOPIC
    from daskflow.daskgraph import TaskSpec, submit_graph
    from tests.steering.test_plugin import NO_SPILL, steer
    from tests.steering.test_speeds import sleep_on

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2, config=NO_SPILL, timeout=60)
    async def run(c, s, a, b):
        await steer(s)
        annotations = {"run_id": "r", "kind": "replay", "category": "replay", "true_duration_s": 0.3,
                       "true_peak_memory_bytes": 0}
        # the worker the idle tie goes to (the lower address) is 4x slower, and nobody said so:
        # 1.2 s there, a straggler past 3 x 0.3 s while the other one is idle
        slow, fast = sorted([a.address, b.address])
        futures = submit_graph(c, [TaskSpec("replay-1", sleep_on, (0.3, slow), annotations=annotations)])
        ran_on = await futures["replay-1"]
        events = [m for _, m in await c.get_events(STEERING_TOPIC)]
        assert ran_on == fast, [(m["action"], m.get("reason"), m.get("worker")) for m in events]
        [restart] = [m for m in events if m["action"] == "restart"]
        assert restart["key"] == "replay-1" and restart["reason"] == "straggler-restart"
        assert restart["worker"] == slow and restart["target_worker"] == fast
        await wait(futures["replay-1"])

    run()


def test_a_restart_is_priced_with_the_data_costs_the_placement_will_use():
    """multi6, montage-103 slowdown (oracle): a straggler on the slowed host was restarted "to finish in 0.2 s" on a fast
    idle worker of another host, its inputs priced at Dask's measured bandwidth; the placement, pricing them at the
    learned link rate (3.6 s there), put the copy back on the slowed host and the 1.5 s already run were lost."""
    task = RunningTask("mViewer-102", "tcp://h0:1", "h0", "mViewer", "replay", planned_s=0.25, worker_speed=0.54,
                       could_start_at=0.0, input_bytes=10_000_000)  # fmt: skip
    [straggler] = find_stragglers([task], now=1.53, spread=CategorySpread(), straggler_factor=3.0)
    fast_far = WorkerInfo("tcp://h1:1", host="h1", speed=1.0)  # its inputs are on h0: 3.6 s over the link
    sibling = WorkerInfo("tcp://h0:2", host="h0", speed=0.35)  # the slowed host: its inputs are local
    idle = [fast_far, sibling]
    before = restart_decision(straggler, idle, bandwidth_bytes_per_s=1e9, speed_here=0.35)
    assert before.restart and before.worker == "tcp://h1:1"  # what the old pricing did
    priced = {"tcp://h1:1": 3.6, "tcp://h0:2": 0.04}
    decision = restart_decision(straggler, idle, bandwidth_bytes_per_s=1e9, speed_here=0.35, data_s=priced)
    assert not decision.restart and decision.reason == "straggler"
    assert decision.finish_there_s == pytest.approx(min(0.25 + 3.6, 0.25 / 0.35 + 0.04))
    # the same straggler whose inputs are cheap to move is still restarted on the fast worker
    cheap = restart_decision(straggler, idle, bandwidth_bytes_per_s=1e9, speed_here=0.35,
                             data_s={"tcp://h1:1": 0.05, "tcp://h0:2": 0.04})  # fmt: skip
    assert cheap.restart and cheap.worker == "tcp://h1:1" and cheap.finish_there_s == pytest.approx(0.30)
    # a worker the placement did not price falls back to bytes / bandwidth
    partial = restart_decision(straggler, [fast_far], bandwidth_bytes_per_s=1e9, speed_here=0.35, data_s={})
    assert partial.finish_there_s == pytest.approx(0.25 + 0.01)


def test_reads_the_placement_priced_are_no_overrun():
    """multi6, montage-103 on the test bed: replayed tasks read their inputs over the links inside their own time; a
    0.08 s mBackground reading 0.16 s of remote data was flagged a 3 x straggler and fed to its worker's speed as
    censored evidence (23 such events in one steered run). The priced reads come first, then the compute is judged."""
    spread = CategorySpread()
    reading = RunningTask("mBackground-59", "tcp://h0:1", "h0", "mBackground", "replay", planned_s=0.08,
                          worker_speed=1.0, could_start_at=0.0, data_s=0.16)  # fmt: skip
    assert find_stragglers([reading], now=0.24 + 0.001, spread=spread, straggler_factor=3.0) == []
    bare = RunningTask("b", "tcp://h0:1", "h0", "mBackground", "replay", 0.08, 1.0, could_start_at=0.0)
    assert [s.task.key for s in find_stragglers([bare], now=0.245, spread=spread, straggler_factor=3.0)] == ["b"]
    # past its reads *and* k x its compute it is one, and its elapsed time is the compute part
    [late] = find_stragglers([reading], now=0.16 + 0.3, spread=spread, straggler_factor=3.0)
    assert late.elapsed_s == pytest.approx(0.3) and late.overrun == pytest.approx(0.3 / 0.08)
