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
* **Worker speeds** (:class:`SpeedEstimates`) — per worker and per host, a
  robust speed factor learned from finished tasks: the median of
  ``log(actual / planned)`` over a recent window, shrunk toward the host's
  (and the host's toward a prior persisted from earlier runs) by a few
  pseudo-observations. When the last few tasks of a worker all moved past
  the dead band in the same direction the worker changed (a host slowed
  mid-run): their median is used at once instead of waiting out the window.
  A straggler read as a *slowed host* (:meth:`SpeedEstimates.observe_slow_host`,
  see :mod:`.stragglers`) puts the host in a slow regime at once, before any
  of its slow tasks finished: at least as slow as the straggler has run so
  far (a censored bound, raised while it runs), then as slow as the median
  of the tasks that finished there since; a finished task closer to the old
  speed than to the new ends the regime (the host recovered, or it was one
  slow task). An operator's declared ``daskflow-speed`` overrides it
  (:func:`speed_for`).
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
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
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
    "SpeedEstimates",
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
    "speed_for",
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


# ------------------------------------------------------------ worker speeds

#: learned speed factors are clamped to [1/20, 20]
MAX_LOG_SPEED = math.log(20.0)
#: a worker (host) differs from its host (prior) only beyond this many standard errors of its median (~3: many workers are tested at once)
NOISE_Z = 3.0
#: the "speed changed" rule: its last few tasks all beyond this many sigmas of the noise
CHANGE_Z = 2.0
#: observations between refreshes of the noise estimate
NOISE_REFRESH = 16


def _shrunk(samples: Sequence[float], prior: float, pseudo_n: float) -> float:
    """Median of ``samples`` shrunk toward ``prior`` as if ``pseudo_n`` samples said ``prior``."""
    if not samples:
        return prior
    n = len(samples)
    return (n * statistics.median(samples) + pseudo_n * prior) / (n + pseudo_n)


@dataclass(slots=True)
class SpeedEstimates:
    """Per worker and per host: recent ``log(actual / planned)`` of finished tasks; speed = exp(-shrunk median).

    ``planned`` is the duration the plan used on a speed-1 worker. A worker's
    estimate shrinks toward its host's, the host's toward ``host_prior``
    (log slowness persisted from earlier runs; 0 = nominal).

    *Noise is not speed*: with a model whose per-task error is large, the
    median of a worker's few recent ratios wanders (tasks of one category
    run back to back, all mispredicted the same way until the in-run
    correction catches up). So a worker differs from its host, and a host
    from its prior, only by more than the noise can explain
    (:data:`NOISE_Z` standard errors of a median over its samples, the
    spread being the pooled within-worker MAD, :meth:`noise_sigma`), and
    the "speed changed" rule asks its recent tasks to be beyond
    :data:`CHANGE_Z` sigmas. Without noise (a replayed oracle, a steady
    worker) both rules are what they were: the median, shrunk, and ``dead_band``.

    >>> speeds = SpeedEstimates(window=8, pseudo_n=2.0)
    >>> used = [speeds.observe("w1", "h1", actual_s=2.0, planned_s=1.0) for _ in range(6)]
    >>> round(speeds.speed("w1", "h1"), 2), speeds.speed("w0", "h0")  # half speed, shrunk a little toward 1
    (0.52, 1.0)
    """

    window: int = 16
    pseudo_n: float = 3.0
    min_planned_s: float = 0.0  # shorter tasks are noise (dispatch overheads): not observed
    dead_band: float = math.log(1.2)  # |log slowness| below this is nominal speed (noise must not reorder ties)
    change_n: int = 3  # this many recent tasks all beyond the band mean the worker changed speed
    by_worker: dict[str, deque[float]] = field(default_factory=dict)
    by_host: dict[str, deque[float]] = field(default_factory=dict)
    host_prior: dict[str, float] = field(default_factory=dict)  # host -> log slowness from earlier runs
    slow_bound: dict[str, float] = field(default_factory=dict)  # host in a slow regime -> censored log slowness bound
    slow_finished: dict[str, deque[float]] = field(default_factory=dict)  # ... -> log ratios finished there since
    n_total: int = 0  # observations so far (the noise estimate is refreshed every NOISE_REFRESH of them)
    sigma_at: int = -1  # n_total when noise_sigma was last computed
    sigma: float = 0.0  # pooled within-worker spread of log ratios (1.4826 x MAD)

    def observe(self, worker: str, host: str, actual_s: float, planned_s: float) -> bool:
        """Add one finished task; False when it was not used (no duration, or too short to say anything)."""
        if not (actual_s > 0 and planned_s > 0) or planned_s < self.min_planned_s:
            return False
        ratio = max(-MAX_LOG_SPEED, min(MAX_LOG_SPEED, math.log(actual_s / planned_s)))
        regime = self.slow_regime(host)
        if regime is not None:
            if ratio < (regime + self.host_log_slowness(host)) / 2:  # nearer the old speed: the regime is over
                self.end_slow_regime(host)
            else:
                self.slow_finished.setdefault(host, deque(maxlen=self.window)).append(ratio)
        self.by_worker.setdefault(worker, deque(maxlen=self.window)).append(ratio)
        self.by_host.setdefault(host, deque(maxlen=self.window * 4)).append(ratio)
        self.n_total += 1
        return True

    def noise_sigma(self) -> float:
        """The pooled within-worker spread of log ratios (1.4826 × median absolute deviation from each worker's median).

        Refreshed every :data:`NOISE_REFRESH` observations (O(workers × window) then; a cached float otherwise).

        >>> speeds = SpeedEstimates()
        >>> for i in range(16):
        ...     _ = speeds.observe("w", "h", actual_s=2.0 if i % 2 else 0.5, planned_s=1.0)
        >>> round(speeds.noise_sigma(), 2)  # log ratios of +-0.69: a noisy model
        1.03
        """
        if self.sigma_at >= 0 and self.n_total - self.sigma_at < NOISE_REFRESH:
            return self.sigma
        deviations = []
        for samples in self.by_worker.values():
            if len(samples) >= 3:
                center = statistics.median(samples)
                deviations.extend(abs(x - center) for x in samples)
        self.sigma = 1.4826 * statistics.median(deviations) if deviations else 0.0
        self.sigma_at = self.n_total
        return self.sigma

    def _band(self, n: int) -> float:
        """How far a median of ``n`` samples may sit from its reference by noise alone (0 without noise)."""
        return NOISE_Z * 1.2533 * self.noise_sigma() / math.sqrt(max(n, 1))  # 1.2533: s.e. of a median

    def observe_slow_host(self, host: str, elapsed_s: float, planned_s: float) -> bool:
        """A straggler read as its host slowed: the host is at least ``elapsed / planned`` slow now (censored).

        Call it on every check while the straggler runs (the bound only
        rises). False when that is not slower than nominal, or the task is
        shorter than ``min_planned_s`` (nothing changed).

        >>> speeds = SpeedEstimates()
        >>> speeds.observe_slow_host("h", elapsed_s=4.0, planned_s=1.0), round(speeds.speed("w", "h"), 3)
        (True, 0.25)
        >>> speeds.observe("w", "h", actual_s=8.0, planned_s=1.0), round(speeds.speed("w", "h"), 3)  # it finished: 8x
        (True, 0.125)
        >>> speeds.observe("w", "h", actual_s=1.0, planned_s=1.0), speeds.slow_regime("h")  # on time again: over
        (True, None)
        """
        if not (elapsed_s > 0 and planned_s > 0) or planned_s < self.min_planned_s:
            return False  # (short tasks are dispatch overhead: they say nothing about a host)
        ratio = max(-MAX_LOG_SPEED, min(MAX_LOG_SPEED, math.log(elapsed_s / planned_s)))
        if ratio < self.dead_band:
            return False
        self.slow_bound[host] = max(self.slow_bound.get(host, ratio), ratio)
        return True

    def slow_regime(self, host: str) -> float | None:
        """The log slowness of a host read as slowed (None: not in a slow regime)."""
        bound = self.slow_bound.get(host)
        if bound is None:
            return None
        finished = self.slow_finished.get(host)
        return max(bound, statistics.median(finished)) if finished else bound

    def end_slow_regime(self, host: str) -> None:
        self.slow_bound.pop(host, None)
        self.slow_finished.pop(host, None)

    def host_log_slowness(self, host: str) -> float:
        prior = self.host_prior.get(host, 0.0)
        samples = list(self.by_host.get(host, ()))
        if samples and abs(statistics.median(samples) - prior) < self._band(len(samples)):
            return prior  # not distinguishable from its prior by more than the noise
        return _shrunk(samples, prior, self.pseudo_n)

    def speed(self, worker: str, host: str) -> float:
        """The worker's learned speed factor (1.0 with nothing learned: 2.0 runs a task in half the time)."""
        samples = list(self.by_worker.get(worker, ()))
        host_value = self.host_log_slowness(host)
        if samples and abs(statistics.median(samples) - host_value) < self._band(len(samples)):
            log_slowness = host_value  # a worker like its host, within the noise
        else:
            log_slowness = _shrunk(samples, host_value, self.pseudo_n)
        recent = samples[-self.change_n:]
        change_band = max(self.dead_band, CHANGE_Z * self.noise_sigma())
        if len(recent) == self.change_n and len(samples) > self.change_n and (
            min(recent) > log_slowness + change_band or max(recent) < log_slowness - change_band
        ):  # the last few all moved the same way, past the band: the worker changed (a host slowed mid-run)
            log_slowness = statistics.median(recent)
        regime = self.slow_regime(host)
        if regime is not None:  # read as slowed from a straggler: at least that slow, before its tasks finish
            log_slowness = max(log_slowness, regime)
        if abs(log_slowness) < self.dead_band:
            return 1.0
        return math.exp(-max(-MAX_LOG_SPEED, min(MAX_LOG_SPEED, log_slowness)))

    def n_observed(self, worker: str) -> int:
        return len(self.by_worker.get(worker, ()))

    def host_speeds(self, min_n: int = 1) -> dict[str, dict[str, float]]:
        """Per host with at least ``min_n`` samples: its learned log slowness and sample count (persisted across runs)."""
        return {host: {"log_slowness": round(self.host_log_slowness(host), 6), "n": len(samples)}
                for host, samples in self.by_host.items() if len(samples) >= max(min_n, 1)}

    def load_priors(self, persisted: Mapping[str, Mapping[str, float]]) -> None:
        """Use persisted per-host log slowness as priors (bad entries are ignored)."""
        for host, entry in persisted.items():
            try:
                value = float(entry["log_slowness"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(value):
                self.host_prior[str(host)] = max(-MAX_LOG_SPEED, min(MAX_LOG_SPEED, value))

    def forget_worker(self, worker: str) -> None:
        self.by_worker.pop(worker, None)


def relative_speed(learned: float, level: float, dead_band: float = math.log(1.2)) -> float:
    """A learned speed relative to the workers' median learned speed ``level`` (1.0 within the dead band).

    The in-run corrector learns each category's durations at the median
    speed, so placement divides those plans by the speed *relative* to it:
    on one host, where every worker first "learns" the model's bias, all
    are nominal; on hosts of different speeds their ratios are kept.

    >>> relative_speed(3.7, 3.7), relative_speed(0.5, 1.0), round(relative_speed(4.0, 2.0), 3), relative_speed(1.1, 1.0)
    (1.0, 0.5, 2.0, 1.0)
    """
    if not (level > 0 and learned > 0):
        return learned
    log_ratio = math.log(learned / level)
    if abs(log_ratio) < dead_band:
        return 1.0
    return math.exp(max(-MAX_LOG_SPEED, min(MAX_LOG_SPEED, log_ratio)))


def speed_for(declared: float | None, learned: float) -> tuple[float, str]:
    """The speed placement uses and where it came from: an operator's declared one wins.

    >>> speed_for(3.0, 0.5), speed_for(None, 0.5)
    ((3.0, 'declared'), (0.5, 'learned'))
    """
    if declared is not None and declared > 0:
        return float(declared), "declared"
    return float(learned), "learned"


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
