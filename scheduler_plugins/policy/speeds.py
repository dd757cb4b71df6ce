"""Worker speeds: what the plan assumes about how fast each worker (and host) runs.

Design note
-----------
Pure: time and observations are arguments; nothing here reads a clock, a
config or the scheduler (split out of :mod:`.estimates`, which re-exports it).

per worker and per host, a
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
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["SpeedEstimates", "relative_speed", "speed_for"]

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


