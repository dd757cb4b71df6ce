"""Estimates: what the plan assumes about durations, latency, backlogs and time.

Design note
-----------
The rules the plugin applies between graph batches and dispatch rounds, as
pure functions and two small running statistics. Time is always an argument
(``now``, ``sent_at``: seconds on the caller's monotonic clock); nothing here
reads a clock, a config or the scheduler.

* **Calibration** — a model trained on other instances can be off by a
  constant factor for this one; per category the plan multiplies model
  predictions by the in-run correction of finished tasks
  (:func:`planned_duration_s`; the plugin's factors come from
  :class:`~daskflow.learning.corrector.OnlineCorrector` through
  :class:`~scheduler_plugins.policy.correction.CategoryCorrection`;
  :class:`CategoryCalibration` is the former EWMA rule, same shape).
  Baselines follow the predictor's running means until their category
  drifts, and the oracle is the truth.
* **Worker speeds** — in :mod:`.speeds` (:class:`~.speeds.SpeedEstimates`).
* **Dispatch latency** (:class:`DispatchLatency`) — EWMA of "sent to an idle
  thread" → "compute started". It sets the adaptive lookahead
  (:func:`lookahead_s`: keep a worker fed for about two round trips) and the
  hold rule (:func:`hold_thresholds`: place late only tasks long against four
  round trips, or heavy in memory; :func:`places_late`).
* **Backlog** (:func:`worker_backlog_s`, :func:`remaining_s`) — predicted
  remaining work on a worker from when its tasks were sent.
* **Timer** (:func:`next_timed_round_at`, :func:`plan_timer`) — when the next
  busy worker is predicted to open, so a round binds its next task in time.
* **Watchdog** (:func:`watchdog_action`) and worker memory refresh
  (:func:`memory_refresh_due`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from scheduler_plugins.policy.memory import (
    admitted_memory_bytes,  # re-exported: memory admission lives in .memory
)
from scheduler_plugins.policy.model import PolicyConfig, TaskPrediction, WorkerInfo

if TYPE_CHECKING:
    from scheduler_plugins.policy.correction import CategoryCorrection

__all__ = [
    "CategoryCalibration",
    "DispatchLatency",
    "HoldThresholds",
    "admitted_memory_bytes",
    "hold_thresholds",
    "is_baseline",
    "lookahead_s",
    "memory_refresh_due",
    "next_timed_round_at",
    "places_late",
    "plan_timer",
    "planned_duration_s",
    "remaining_s",
    "watchdog_action",
    "worker_backlog_s",
]

#: calibration factors are clamped to [1/100, 100]
MAX_LOG_RATIO = math.log(100.0)
#: qualities that are running means or defaults, not a learned model or the truth
BASELINE_QUALITIES = frozenset({"default", "prefix-mean"})
#: a timed round runs this long after the moment the worker is predicted to open
TIMER_SLACK_S = 0.001


# ---------------------------------------------------------------- calibration


def is_baseline(quality: str) -> bool:
    """Whether a prediction is a running mean / default (planned with the current mean, not calibrated)."""
    return quality in BASELINE_QUALITIES


@dataclass(slots=True)
class CategoryCalibration:
    """Per category: EWMA of ``log(actual / model prediction)`` of finished tasks.

    >>> calibration = CategoryCalibration()
    >>> calibration.observe("fit", actual_s=0.2, predicted_s=2.0, weight=0.3)
    >>> round(calibration.factor("fit"), 6), calibration.factor("load")
    (0.1, None)
    """

    log_ratio: dict[str, float] = field(default_factory=dict)  # category -> EWMA of log(actual / predicted)
    n: dict[str, int] = field(default_factory=dict)  # category -> observations so far

    def observe(self, category: str, actual_s: float, predicted_s: float, weight: float) -> None:
        """Add one finished task; the first observation of a category counts fully (then ``weight``)."""
        if not (predicted_s > 0 and actual_s > 0):
            return
        ratio = max(-MAX_LOG_RATIO, min(MAX_LOG_RATIO, math.log(actual_s / predicted_s)))
        n = self.n.get(category, 0)
        self.n[category] = n + 1
        w = max(weight, 1.0 / (n + 1))
        old = self.log_ratio.get(category, 0.0)
        self.log_ratio[category] = old + w * (ratio - old)

    def factor(self, category: str) -> float | None:
        """``actual / predicted`` for the category so far (None before its first finished task)."""
        log_ratio = self.log_ratio.get(category)
        return None if log_ratio is None else math.exp(log_ratio)


def planned_duration_s(prediction: TaskPrediction, calibration: CategoryCalibration | CategoryCorrection) -> float:
    """The duration the plan uses for a prediction: a model's (or a drifted category's), times its category's correction.

    ``calibration``: the plugin's :class:`~scheduler_plugins.policy.correction.CategoryCorrection`
    (the in-run :class:`~daskflow.learning.corrector.OnlineCorrector`'s factors), or the former
    EWMA :class:`CategoryCalibration` (same ``factor(category)`` shape).

    >>> calibration = CategoryCalibration({"fit": math.log(0.5)}, {"fit": 1})
    >>> planned_duration_s(TaskPrediction(4.0, 0.0, "model", "v1", category="fit"), calibration)
    2.0
    >>> planned_duration_s(TaskPrediction(4.0, 0.0, "oracle", "oracle", category="fit"), calibration)
    4.0
    """
    from scheduler_plugins.policy.correction import is_corrected

    if is_corrected(prediction.quality, prediction.category, calibration):
        factor = calibration.factor(prediction.category)
        if factor is not None:
            return prediction.duration_s * factor
    return prediction.duration_s


# ------------------------------------------------------------ dispatch latency


@dataclass(slots=True)
class DispatchLatency:
    """EWMA of the dispatch latency: "sent to an idle thread" → "compute started" (seconds).

    >>> latency = DispatchLatency()
    >>> latency.observe(sent_at=10.0, started_at=10.05, config=PolicyConfig())
    True
    >>> round(latency.estimate_s, 6)
    0.01
    """

    estimate_s: float = 0.0

    def observe(self, sent_at: float, started_at: float, config: PolicyConfig) -> bool:
        """Add one measurement (both times on the same clock); False when it is not a round trip."""
        latency_s = started_at - sent_at
        if not 0.0 <= latency_s < config.max_latency_s:
            return False
        self.estimate_s += config.latency_weight * (latency_s - self.estimate_s)
        return True


def lookahead_s(config: PolicyConfig, dispatch_latency_s: float) -> float:
    """The round's lookahead: the configured one, grown to keep a worker fed for two round trips, capped.

    >>> lookahead_s(PolicyConfig(lookahead_s=0.05, max_lookahead_s=1.0), 0.2)
    0.4
    >>> lookahead_s(PolicyConfig(lookahead_s=0.05, max_lookahead_s=1.0), 3.0)
    1.0
    """
    grown = max(config.lookahead_s, config.lookahead_latency_factor * dispatch_latency_s)
    return min(grown, config.max_lookahead_s)


# ------------------------------------------------------------------ hold rule


@dataclass(frozen=True, slots=True)
class HoldThresholds:
    """Which tasks the plugin places itself: predicted at least ``min_duration_s`` or peaking at ``min_peak_bytes``."""

    min_duration_s: float
    min_peak_bytes: float


def hold_thresholds(
    config: PolicyConfig, dispatch_latency_s: float, memory_limits_bytes: Iterable[int], pause_fraction: float
) -> HoldThresholds:
    """The hold rule's thresholds for one graph batch.

    Binding a task late costs a scheduler round trip before it starts, which
    stock Dask hides by queueing ready tasks on workers. That pays only for
    tasks long against that round trip (``min_task_duration_s``, or
    ``hold_latency_factor`` measured dispatch latencies) or whose predicted peak
    is a real share (``memory_share``) of the smallest worker's pause
    threshold. Workers without a memory limit (0) or a cluster without pausing
    (``pause_fraction`` 0) never make a task heavy.

    >>> hold_thresholds(PolicyConfig(min_task_duration_s=0.005), 0.01, [4_000_000_000, 0], 0.8)
    HoldThresholds(min_duration_s=0.04, min_peak_bytes=160000000.0)
    """
    min_duration_s = max(config.min_task_duration_s, config.hold_latency_factor * dispatch_latency_s)
    pause = [limit * pause_fraction for limit in memory_limits_bytes if limit] if pause_fraction else []
    min_peak = config.memory_share * min(pause) if pause else math.inf
    return HoldThresholds(min_duration_s, min_peak)


def places_late(planned_s: float, peak_memory_bytes: float, thresholds: HoldThresholds) -> bool:
    """Whether a manageable task is held for late binding (else: stock placement with the new priority).

    >>> places_late(0.001, 0, HoldThresholds(0.005, math.inf)), places_late(0.01, 0, HoldThresholds(0.005, math.inf))
    (False, True)
    """
    return planned_s >= thresholds.min_duration_s or peak_memory_bytes >= thresholds.min_peak_bytes


# -------------------------------------------------------------------- backlog


def remaining_s(predicted_s: float, elapsed_s: float) -> float:
    """Predicted remaining time of a task that has run ``elapsed_s``.

    Before its prediction runs out this is ``predicted - elapsed`` (so the
    worker opens just as the task is predicted to end); an overrunning task is
    assumed to need about half as long again as it has run, so a worker stuck
    on a mispredicted task never looks free.

    >>> remaining_s(1.0, 0.9), remaining_s(1.0, 4.0)
    (0.09999999999999998, 2.0)
    """
    if elapsed_s <= predicted_s:
        return max(predicted_s - elapsed_s, 0.0)
    return elapsed_s / 2.0


def worker_backlog_s(
    entries: Sequence[tuple[float, float]], nthreads: int, last_finish_at: float, now: float
) -> float:
    """Predicted remaining work (speed-1 seconds) of the tasks processing on a worker.

    ``entries`` are ``(sent_at, predicted_s)``. The scheduler does not hear
    when a queued task starts, so the first ``nthreads`` tasks (in sending
    order) count as running since they were sent or since the worker last
    finished a task, whichever is later; the rest count in full.

    >>> worker_backlog_s([(0.0, 1.0), (0.0, 2.0)], nthreads=1, last_finish_at=0.0, now=0.25)
    2.75
    """
    if len(entries) > 1:
        entries = sorted(entries, key=lambda entry: entry[0])
    backlog = 0.0
    for index, (sent_at, predicted_s) in enumerate(entries):
        if index < nthreads:
            backlog += remaining_s(predicted_s, now - max(sent_at, last_finish_at))
        else:
            backlog += predicted_s
    return backlog


# ---------------------------------------------------------------------- timer


def next_timed_round_at(workers: Iterable[WorkerInfo], lookahead: float, now: float) -> float:
    """When the next busy worker is predicted to open (``inf``: none is busy enough to wait for).

    Without a timed round, a worker whose long task ends gets its next task
    only after telling the scheduler (one round trip of idle time); with it the
    next task is already queued there when the running one ends. Workers open
    already are not waited for: when tasks still wait beside them, something
    else holds them (memory, resources), and finished tasks and the watchdog
    bring the next round.

    >>> next_timed_round_at([WorkerInfo("w", n_processing=1, backlog_s=2.0)], lookahead=0.5, now=100.0)
    101.501
    """
    soonest = math.inf
    for worker in workers:
        if worker.n_processing >= worker.nthreads:
            wait = worker.wait_s()
            if wait >= lookahead and wait - lookahead < soonest:
                soonest = wait - lookahead
    if soonest == math.inf:
        return math.inf
    return now + soonest + TIMER_SLACK_S


def plan_timer(workers: Iterable[WorkerInfo], lookahead: float, now: float, scheduled_at: float) -> float | None:
    """The time to (re)schedule the timed round at, or None to keep the current one (``scheduled_at``; inf: none).

    >>> busy = [WorkerInfo("w", n_processing=1, backlog_s=2.0)]
    >>> plan_timer(busy, 0.5, 100.0, scheduled_at=math.inf), plan_timer(busy, 0.5, 100.0, scheduled_at=101.0)
    (101.501, None)
    """
    due = next_timed_round_at(workers, lookahead, now)
    if due == math.inf or scheduled_at <= due:
        return None
    return due


# ------------------------------------------------------------------- watchdog

WatchdogAction = Literal["dispatch", "recover", "idle"]


def watchdog_action(tick: int, n_ready: int, n_managed: int, config: PolicyConfig) -> WatchdogAction:
    """What a watchdog tick does: a dispatch round while tasks wait, else now and then a scan for lost held tasks.

    >>> watchdog_action(3, 1, 5, PolicyConfig()), watchdog_action(10, 0, 5, PolicyConfig()), watchdog_action(3, 0, 5, PolicyConfig())
    ('dispatch', 'recover', 'idle')
    """
    if n_ready:
        return "dispatch"
    if n_managed and tick % max(config.recover_every_ticks, 1) == 0:
        return "recover"
    return "idle"


def memory_refresh_due(last_read_at: float, now: float, config: PolicyConfig) -> bool:
    """Whether worker memory readings are re-read this round (they only change with heartbeats).

    >>> memory_refresh_due(10.0, 10.1, PolicyConfig(memory_refresh_s=0.25)), memory_refresh_due(10.0, 10.3, PolicyConfig(memory_refresh_s=0.25))
    (False, True)
    """
    return now - last_read_at > config.memory_refresh_s
