"""Pure tests of the steering estimates: calibration, latency, lookahead, hold rule, backlog, timer, pins, watchdog.

No cluster, no sleeping: times are made-up numbers passed as ``now``.
"""

from __future__ import annotations

import math

import pytest

from daskflow.critical_path import GraphCycleError
from scheduler_plugins.policy import (
    CategoryCalibration,
    DispatchLatency,
    Placement,
    PolicyConfig,
    TaskPrediction,
    WorkerInfo,
    critical_path_ranks,
    hold_thresholds,
    is_baseline,
    lookahead_s,
    memory_refresh_due,
    next_timed_round_at,
    pin_is_loose,
    places_late,
    plan_order,
    plan_timer,
    planned_duration_s,
    watchdog_action,
    worker_backlog_s,
)

pytestmark = pytest.mark.timeout(30)
GB = 2**30


# ----------------------------------------------------------------- calibration


def test_calibration_first_task_counts_fully_then_ewma():
    calibration = CategoryCalibration()
    assert calibration.factor("fit") is None
    calibration.observe("fit", actual_s=1.0, predicted_s=10.0, weight=0.3)
    assert calibration.factor("fit") == pytest.approx(0.1)
    calibration.observe("fit", actual_s=10.0, predicted_s=10.0, weight=0.3)  # second: weight max(0.3, 1/2)
    assert calibration.factor("fit") == pytest.approx(math.exp(0.5 * math.log(0.1)))
    calibration.observe("fit", actual_s=10.0, predicted_s=10.0, weight=0.3)  # third: weight max(0.3, 1/3)
    assert calibration.factor("fit") == pytest.approx(math.exp((2 / 3) * 0.5 * math.log(0.1)))
    for _ in range(3):  # from the fourth on: the configured weight
        calibration.observe("fit", actual_s=10.0, predicted_s=10.0, weight=0.3)
    assert calibration.factor("fit") == pytest.approx(math.exp(0.7**3 * (2 / 3) * 0.5 * math.log(0.1)))


def test_calibration_is_clamped_and_ignores_zero_times():
    calibration = CategoryCalibration()
    calibration.observe("x", actual_s=1e6, predicted_s=1e-3, weight=0.3)
    assert calibration.factor("x") == pytest.approx(100.0)
    calibration.observe("y", actual_s=0.0, predicted_s=1.0, weight=0.3)
    calibration.observe("y", actual_s=1.0, predicted_s=0.0, weight=0.3)
    assert calibration.factor("y") is None


def test_only_model_predictions_are_calibrated():
    calibration = CategoryCalibration()
    calibration.observe("fit", actual_s=1.0, predicted_s=2.0, weight=0.3)
    for quality, expected in (("model", 2.0), ("oracle", 4.0), ("prefix-mean", 4.0), ("default", 4.0)):
        assert planned_duration_s(TaskPrediction(4.0, 0.0, quality, None, category="fit"), calibration) == expected
    assert is_baseline("prefix-mean") and is_baseline("default")
    assert not is_baseline("model") and not is_baseline("oracle")


# ------------------------------------------------------- latency and lookahead


def test_dispatch_latency_ewma_rejects_negative_and_queued_measurements():
    config = PolicyConfig(latency_weight=0.2, max_latency_s=5.0)
    latency = DispatchLatency()
    assert latency.observe(sent_at=100.0, started_at=100.1, config=config)
    assert latency.estimate_s == pytest.approx(0.02)
    assert latency.observe(sent_at=100.0, started_at=100.1, config=config)
    assert latency.estimate_s == pytest.approx(0.02 + 0.2 * 0.08)
    before = latency.estimate_s
    assert not latency.observe(sent_at=100.0, started_at=99.0, config=config)  # clocks disagree
    assert not latency.observe(sent_at=100.0, started_at=106.0, config=config)  # queued behind another task
    assert latency.estimate_s == before


def test_lookahead_grows_with_latency_up_to_the_cap():
    config = PolicyConfig(lookahead_s=0.05, max_lookahead_s=0.5, lookahead_latency_factor=2.0)
    assert lookahead_s(config, 0.0) == 0.05
    assert lookahead_s(config, 0.1) == pytest.approx(0.2)
    assert lookahead_s(config, 1.0) == 0.5
    assert config.lookahead_s == 0.05  # the frozen config is never overwritten
    with pytest.raises(AttributeError):
        config.lookahead_s = 1.0  # type: ignore[misc]


# ------------------------------------------------------------------ hold rule


def test_hold_rule_long_tasks_and_heavy_tasks_are_placed_late():
    config = PolicyConfig(min_task_duration_s=0.005, memory_share=0.05, hold_latency_factor=4.0)
    thresholds = hold_thresholds(config, dispatch_latency_s=0.0, memory_limits_bytes=[4 * GB, 2 * GB], pause_fraction=0.8)
    assert thresholds.min_duration_s == 0.005
    assert thresholds.min_peak_bytes == pytest.approx(0.05 * 0.8 * 2 * GB)  # the smallest worker decides
    assert not places_late(0.001, 0, thresholds)
    assert places_late(0.005, 0, thresholds)
    assert places_late(0.001, 0.1 * GB, thresholds)  # short but heavy


def test_hold_rule_tracks_the_dispatch_latency():
    config = PolicyConfig(min_task_duration_s=0.005, hold_latency_factor=4.0)
    thresholds = hold_thresholds(config, dispatch_latency_s=0.02, memory_limits_bytes=[], pause_fraction=0.8)
    assert thresholds.min_duration_s == pytest.approx(0.08)
    assert not places_late(0.05, 0, thresholds)  # long against 5 ms, short against four 20 ms round trips


def test_hold_rule_without_limits_or_pausing_never_holds_for_memory():
    config = PolicyConfig()
    for limits, pause in (([0, 0], 0.8), ([4 * GB], 0.0), ([], 0.8)):
        thresholds = hold_thresholds(config, 0.0, limits, pause)
        assert thresholds.min_peak_bytes == math.inf
        assert not places_late(0.0, 100 * GB, thresholds)


# -------------------------------------------------------------------- backlog


def test_backlog_counts_running_tasks_from_send_or_last_finish():
    # one thread; first task sent at t=0 (predicted 1 s), second queued (2 s); now t=0.25
    assert worker_backlog_s([(0.0, 1.0), (0.0, 2.0)], nthreads=1, last_finish_at=0.0, now=0.25) == pytest.approx(2.75)
    # the worker finished something at t=0.2: the running one started then, not at send time
    assert worker_backlog_s([(0.0, 1.0)], nthreads=1, last_finish_at=0.2, now=0.25) == pytest.approx(0.95)
    # two threads: both earliest-sent tasks run; order of the entries does not matter
    assert worker_backlog_s([(0.5, 2.0), (0.0, 1.0), (0.1, 1.0)], nthreads=2, last_finish_at=0.0, now=0.5) == pytest.approx(
        0.5 + 0.6 + 2.0
    )
    # an overrunning task keeps the worker busy (half as long again as it ran)
    assert worker_backlog_s([(0.0, 1.0)], nthreads=1, last_finish_at=0.0, now=4.0) == pytest.approx(2.0)
    assert worker_backlog_s([], nthreads=1, last_finish_at=0.0, now=1.0) == 0.0


# ---------------------------------------------------------------------- timer


def test_timer_is_due_when_the_next_busy_worker_opens():
    workers = [
        WorkerInfo("slow", n_processing=1, backlog_s=3.0),
        WorkerInfo("soon", n_processing=1, backlog_s=1.0),
        WorkerInfo("open", n_processing=0),  # open already: not waited for
        WorkerInfo("fast", n_processing=1, backlog_s=1.0, speed=2.0),  # opens in 0.5 s
    ]
    assert next_timed_round_at(workers, lookahead=0.2, now=50.0) == pytest.approx(50.0 + 0.3 + 0.001)


def test_timer_ignores_workers_already_within_the_lookahead_and_keeps_an_earlier_round():
    assert next_timed_round_at([WorkerInfo("w", n_processing=1, backlog_s=0.1)], lookahead=0.2, now=0.0) == math.inf
    busy = [WorkerInfo("w", n_processing=1, backlog_s=2.0)]
    assert plan_timer(busy, 0.5, now=10.0, scheduled_at=math.inf) == pytest.approx(11.501)
    assert plan_timer(busy, 0.5, now=10.0, scheduled_at=11.0) is None  # an earlier round is already due
    assert plan_timer(busy, 0.5, now=10.0, scheduled_at=12.0) == pytest.approx(11.501)  # bring it forward
    assert plan_timer([], 0.5, now=10.0, scheduled_at=math.inf) is None


# ----------------------------------------------------------- pins, watchdog


def test_memory_decisions_pin_strictly_all_others_loosely():
    for reason, loose in (("finish-time", True), ("locality", True), ("speed", True),
                          ("memory", False), ("memory-overcommit", False)):
        assert pin_is_loose(Placement("k", "place", "w", reason)) is loose


def test_watchdog_dispatches_while_tasks_wait_and_scans_for_lost_ones_every_tenth_tick():
    config = PolicyConfig(recover_every_ticks=10)
    assert watchdog_action(1, n_ready=2, n_managed=5, config=config) == "dispatch"
    assert [watchdog_action(t, 0, 5, config) for t in (9, 10, 11, 20)] == ["idle", "recover", "idle", "recover"]
    assert watchdog_action(10, 0, 0, config) == "idle"


def test_memory_readings_refresh_with_heartbeats_only():
    config = PolicyConfig(memory_refresh_s=0.25)
    assert not memory_refresh_due(1.0, 1.2, config)
    assert memory_refresh_due(1.0, 1.3, config)


# ------------------------------------------------------------------ ordering


def test_uninformed_order_is_the_schedulers_own():
    durations = {"a": 1.0, "b": 9.0, "c": 5.0}
    user = dict.fromkeys(durations, 0)
    tie = {"a": (0,), "b": (1,), "c": (2,)}
    order, ranks = plan_order(durations, {}, user, tie, informed=False)
    assert order == ["a", "b", "c"] and ranks["b"] == 9.0
    assert plan_order(durations, {}, user, tie, informed=True)[0] == ["b", "c", "a"]


def test_a_cycle_raises_a_clear_error_naming_a_task():
    """The one critical_path_ranks has one behaviour on cycles, for the plugin and the simulator alike."""
    with pytest.raises(GraphCycleError, match="cycle through task 'b'"):
        critical_path_ranks({"a": 1.0, "b": 1.0, "c": 1.0}, {"b": ["c"], "c": ["b"], "a": []})
    with pytest.raises(ValueError, match="cycle"):
        critical_path_ranks([1.0, 1.0], [[1], [0]])


def test_the_policy_package_is_pure():
    """No distributed import, no clock, no I/O in scheduler_plugins.policy (time comes in as ``now``)."""
    import ast
    import pathlib

    import scheduler_plugins.policy as policy

    forbidden_modules = {"distributed", "time", "os", "socket", "dask", "tornado", "asyncio", "logging"}
    for path in pathlib.Path(policy.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id != "open", f"{path.name} opens a file"
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden_modules, f"{path.name} imports {name}"
