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


def test_no_restart_on_the_same_host_a_busy_worker_or_a_slower_one():
    [straggler] = find_stragglers([running(planned_s=2.0, start=0.0)], now=8.0, spread=CategorySpread(), straggler_factor=3.0)
    same_host = WorkerInfo("tcp://slow:2", host="slow")
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
