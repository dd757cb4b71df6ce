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

*A host's tasks are not a random sample of the run's categories*: locality
and the speed rule itself send whole chains of categories to one host, and
a model errs per category (×2.4 fast on one, ×3 slow on another). So with
two or more hosts a host's level is not the plain median of its ratios but
its effect in a two-way (category + host) fit of the ratios
against the model's *served* (uncorrected) predictions, which stay fixed
while the in-run correction moves (:meth:`SpeedEstimates.host_levels`):
only categories that ran on two or more hosts tell hosts apart. A
half-speed host that ran the categories the model over-predicts read at
speed 1.0 and was given the run's longest task (the slowdown benchmark's
soykb at c2b12ea).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["SpeedEstimates", "relative_speed", "speed_for"]

#: learned speed factors are clamped to [1/20, 20]
MAX_LOG_SPEED = math.log(20.0)
#: a worker (host) differs from its host (prior) only beyond this many standard errors of its median (~3: many workers are tested at once)
NOISE_Z = 3.0
#: ... and a worker from its host (the only way workers of one host differ) beyond this many: strong evidence
#: (checked after every task, on every worker: a 3-sigma band let 1 in ~40 noisy runs split identical workers)
WORKER_Z = 3.5
#: the "speed changed" rule: its last few tasks all beyond this many sigmas of the noise
CHANGE_Z = 2.0
#: observations between refreshes of the noise estimate (at every one while the noise is unknown)
NOISE_REFRESH = 16
#: a worker's own median may differ from its host's only from this many of its tasks on (and the noise known)
MIN_WORKER_N = 1
#: the noise is known (so a worker may differ from its host at all) from this many within-worker pairs on
MIN_NOISE_PAIRS = 3
#: spreads are measured from a worker's last this many tasks (28 pairs: O(1) per observed task)
SIGMA_WINDOW = 8
#: a spread measured from k pairs is taken as up to (1 + this / sqrt(k)) times larger when a worker is judged
SIGMA_UNCERTAINTY = 2.0
#: ... and never below this (log ratio): timer and dispatch jitter
MIN_NOISE_SIGMA = 0.05
#: the spread the "speed changed" rule assumes before it measured one (its band comes from one worker's
#: earlier tasks only; a sibling model's per-task error is about this), and how many pairs that prior counts as
CHANGE_PRIOR_SIGMA = 0.5
PRIOR_NOISE_PAIRS = 10
#: the two-way fit: a host gets its fitted level from this many tasks of categories shared with another host on
FIT_MIN_N = 3
#: ... alternating category / host means at most this many times, or until no host's effect moves by FIT_TOLERANCE
FIT_ROUNDS = 30
FIT_TOLERANCE = 1e-3
#: ... a (host, category) cell's median weighs as this many tasks at most (a host that ran one category all run
#: long must not outweigh every other category it shares)
CELL_WEIGHT_CAP = 8
#: ... recomputed at every observation for the run's first this many, then every FIT_EVERY
FIT_EAGER_N = 64
FIT_EVERY = 8


def _shrunk(samples: Sequence[float], prior: float, pseudo_n: float) -> float:
    """Median of ``samples`` shrunk toward ``prior`` as if ``pseudo_n`` samples said ``prior``."""
    if not samples:
        return prior
    n = len(samples)
    return (n * statistics.median(samples) + pseudo_n * prior) / (n + pseudo_n)


def _distances(samples: Sequence[float]) -> list[float]:
    values = list(samples)
    return [abs(x - y) for i, x in enumerate(values) for y in values[i + 1:]]


def _with_prior(sigma: float, pairs: int, prior: float) -> float:
    """``sigma`` measured from ``pairs`` pairs, pooled with ``prior`` as if it were :data:`PRIOR_NOISE_PAIRS` pairs."""
    return math.sqrt((pairs * sigma**2 + PRIOR_NOISE_PAIRS * prior**2) / (pairs + PRIOR_NOISE_PAIRS))


def _upper(sigma: float, pairs: int) -> float:
    """An upper bound of a spread measured from ``pairs`` pairs: few pairs read it small by chance."""
    return sigma * (1.0 + SIGMA_UNCERTAINTY / math.sqrt(max(pairs, 1)))


def host_effects(cells: Sequence[tuple[str, str, float]], rounds: int = FIT_ROUNDS) -> dict[str, float]:
    """Host effects of ``(host, category, log ratio)`` samples: an additive category + host fit of their cell medians.

    Each (host, category) cell is its median (one slow task is no speed),
    then ``median = host + category`` is fitted by weighted least squares
    (weight: the cell's samples, at most :data:`CELL_WEIGHT_CAP`), by
    alternating weighted means. Alternating *medians* (Tukey's polish)
    stalls when hosts ran the categories unevenly: each category's effect is
    set by the host that ran most of it, and the others' few cells are
    outvoted. The effects carry the overall level, so only differences
    between hosts mean anything.

    >>> cells = [("fast", "a", 1.0), ("fast", "b", -1.0), ("slow", "a", 1.7), ("slow", "b", -0.3), ("slow", "b", -0.3)]
    >>> effects = host_effects(cells)  # plain medians: fast 0.0, slow -0.3 (it ran more of the over-predicted b)
    >>> round(effects["slow"] - effects["fast"], 2)
    0.7
    """
    grouped: dict[tuple[str, str], list[float]] = {}
    for host, category, value in cells:
        grouped.setdefault((host, category), []).append(value)
    medians = [(host, category, statistics.median(values), float(min(len(values), CELL_WEIGHT_CAP)))
               for (host, category), values in grouped.items()]
    host_effect = {host: 0.0 for host, *_ in medians}
    category_effect: dict[str, float] = {}
    for _ in range(max(rounds, 1)):
        category_effect = _weighted_means([(c, m - host_effect[h], w) for h, c, m, w in medians])
        before, host_effect = host_effect, _weighted_means([(h, m - category_effect[c], w) for h, c, m, w in medians])
        if max(abs(host_effect[h] - before[h]) for h in host_effect) < FIT_TOLERANCE:
            break
    return host_effect


def _on_two_hosts(cells: Sequence[tuple]) -> list[tuple]:
    """The ``(host, category, ...)`` cells of categories seen on two or more of their hosts."""
    hosts_of: dict[str, set[str]] = {}
    for host, category, *_ in cells:
        hosts_of.setdefault(category, set()).add(host)
    return [cell for cell in cells if len(hosts_of[cell[1]]) >= 2]


def _weighted_means(values: Sequence[tuple[str, float, float]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for name, value, weight in values:
        total = sums.setdefault(name, [0.0, 0.0])
        total[0] += weight * value
        total[1] += weight
    return {name: total / weight for name, (total, weight) in sums.items()}


def _pairwise_sigma(samples: Sequence[float]) -> float:
    """1.0483 × the median distance between two samples (Shamos): a spread close to unbiased from 2 samples on."""
    distances = _distances(samples)
    return 1.0483 * statistics.median(distances) if distances else 0.0


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
    spread being the pooled within-worker pairwise spread, :meth:`noise_sigma`), and
    the "speed changed" rule asks its recent tasks to be beyond
    :data:`CHANGE_Z` sigmas. Without noise (a replayed oracle, a steady
    worker) both rules are what they were: the median, shrunk, and ``dead_band``.

    *Few tasks are no evidence*: two identical worker processes on one host
    must not read as different speeds from a handful of noisy tasks (a speed
    hold on one host). So a worker differs from its host only when the noise
    is known (at least :data:`MIN_NOISE_PAIRS` within-worker pairs,
    :meth:`noise_known`) and its median is :data:`WORKER_Z` standard errors
    from what its host's tasks measured, the spread taken at an upper bound
    (:meth:`worker_sigma`: few pairs read it small by chance; a worker's own
    scatter counts too). Until then every worker of a host has the *same*
    speed, the host's (its measured median shrunk toward its value). Hosts
    still differ from their priors (and so from each other) from their
    first tasks, shrunk: what a genuinely slow host needs. The "speed
    changed" rule compares a worker's last tasks with its own earlier ones
    (a bias its host shares is no change), at the spread of those.

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
    slow_since: dict[str, float] = field(default_factory=dict)  # ... -> when it was read as slowed (the caller's clock)
    n_total: int = 0  # observations so far (the noise estimate is refreshed every NOISE_REFRESH of them)
    sigma_at: int = -1  # n_total when noise_sigma was last computed
    sigma: float = 0.0  # pooled within-worker spread of log ratios (Shamos: 1.0483 x median pairwise distance)
    sigma_pairs: int = 0  # within-worker pairs that estimate was computed from (< MIN_NOISE_PAIRS: noise unknown)
    own_sigma: dict[str, tuple[float, int]] = field(default_factory=dict)  # worker -> (spread of its last tasks, pairs)
    host_median: dict[str, float] = field(default_factory=dict)  # host -> median of by_host (cached until it observes)
    shift: float = 0.0  # what every host shares (the model's bias), see host_log_slowness
    change_sigma: dict[str, float] = field(default_factory=dict)  # worker -> ... of its tasks before the last change_n, prior-pooled
    by_host_cells: dict[str, deque[tuple[str, float, float]]] = field(default_factory=dict)  # host -> (category, log actual/served, log ratio)
    levels: dict[str, float] = field(default_factory=dict)  # host -> its fitted level (host_levels), as of levels_at
    levels_at: int = -1

    def observe(self, worker: str, host: str, actual_s: float, planned_s: float,
                started_at: float | None = None, category: str | None = None,
                served_s: float | None = None) -> bool:  # fmt: skip
        """Add one finished task; False when it was not used (no duration, too short, or off by ×20 or more).

        ``category`` and ``served_s`` (the model's uncorrected prediction for
        the task, fixed while the in-run correction moves ``planned_s``) feed
        the two-way fit of host levels (:meth:`host_levels`).

        ``started_at`` (the clock :meth:`observe_slow_host` was given): a task
        that started before its host was read as slowed ran partly at the old
        speed, so it says nothing about the slow regime - it neither ends it
        (a slowed host's long-running tasks finishing "almost on time" read as
        a recovery and sent the run's longest task there) nor sets its level.

        >>> SpeedEstimates().observe("w", "h", actual_s=5.0, planned_s=1e6)  # the plan's error, not a speed
        False
        >>> speeds = SpeedEstimates()
        >>> speeds.observe_slow_host("h", elapsed_s=4.0, planned_s=1.0, now=10.0)
        True
        >>> speeds.observe("w", "h", actual_s=1.2, planned_s=1.0, started_at=8.0), speeds.slow_regime("h") is not None
        (True, True)
        >>> speeds.observe("w", "h", actual_s=1.2, planned_s=1.0, started_at=10.5), speeds.slow_regime("h")  # on time, all of it slowed: over
        (True, None)
        """
        if not (actual_s > 0 and planned_s > 0) or planned_s < self.min_planned_s:
            return False
        ratio = math.log(actual_s / planned_s)
        if abs(ratio) >= MAX_LOG_SPEED:  # off by over x20: the plan is wrong (a model off by 10^5), not the worker
            return False
        regime = self.slow_regime(host)
        since = self.slow_since.get(host)
        if regime is not None and not (started_at is not None and since is not None and started_at < since):
            if ratio < (regime + self.host_log_slowness(host)) / 2:  # nearer the old speed: the regime is over
                self.end_slow_regime(host)
            else:
                self.slow_finished.setdefault(host, deque(maxlen=self.window)).append(ratio)
        samples = self.by_worker.setdefault(worker, deque(maxlen=self.window))
        samples.append(ratio)
        # O(SIGMA_WINDOW²) per observed task (those planned >= min_planned_s only; nothing per round)
        values = list(samples)
        own = values[-SIGMA_WINDOW:]
        self.own_sigma[worker] = (_pairwise_sigma(own), len(own) * (len(own) - 1) // 2)
        before = values[:-self.change_n][-SIGMA_WINDOW:]
        self.change_sigma[worker] = _with_prior(_pairwise_sigma(before), len(before) * (len(before) - 1) // 2,
                                                  CHANGE_PRIOR_SIGMA)
        self.by_host.setdefault(host, deque(maxlen=self.window * 4)).append(ratio)
        if category is not None and served_s is not None and served_s > 0:
            served = max(-4 * MAX_LOG_SPEED, min(4 * MAX_LOG_SPEED, math.log(actual_s / served_s)))
            self.by_host_cells.setdefault(host, deque(maxlen=self.window * 4)).append((str(category), served, ratio))
        self.n_total += 1
        self.host_median.pop(host, None)
        return True

    def noise_sigma(self) -> float:
        """The pooled within-worker spread of log ratios: 1.0483 × the median distance of two ratios of one worker.

        That pairwise (Shamos) estimator is close to unbiased from 2 samples
        per worker on, where a MAD about each worker's own median reads the
        spread of 3 samples about half as large. Refreshed after 1, 2, 4, 8,
        then every :data:`NOISE_REFRESH` observations (O(workers × window²)
        then; a cached float otherwise).

        >>> speeds = SpeedEstimates()
        >>> for i in range(16):
        ...     _ = speeds.observe("w", "h", actual_s=2.0 if i % 2 else 0.5, planned_s=1.0)
        >>> round(speeds.noise_sigma(), 2)  # log ratios of +-0.69: a noisy model
        1.45
        """
        at = self.sigma_at
        if at == self.n_total or (at >= 0 and self.n_total - at < min(NOISE_REFRESH, max(at, 1))
                                  and self.sigma_pairs >= MIN_NOISE_PAIRS):
            return self.sigma  # (while the noise is unknown, refreshed at every observation: a few samples then)
        distances = []
        for samples in self.by_worker.values():
            distances.extend(_distances(list(samples)[-SIGMA_WINDOW:]))
        self.sigma = 1.0483 * statistics.median(distances) if distances else 0.0
        self.sigma_pairs = len(distances)
        self._refresh_shifts()  # O(hosts × window) on the same schedule
        self.sigma_at = self.n_total
        return self.sigma

    def worker_sigma(self, worker: str) -> float:
        """The spread a worker's own median is judged by: an upper bound of the pooled one, or of the worker's own.

        Measured from a few pairs a spread reads small by chance (two
        workers' first tasks), so each is taken at :func:`_upper`; a worker's
        own counts from 3 tasks on (its scattered ratios must not pass as a
        speed), and neither below :data:`MIN_NOISE_SIGMA`.
        """
        pooled = _upper(self.noise_sigma(), self.sigma_pairs)
        own_sigma, own_pairs = self.own_sigma.get(worker, (0.0, 0))
        own = _upper(own_sigma, own_pairs) if own_pairs >= 3 else 0.0  # (from 3 tasks on: 1 pair says little)
        return max(pooled, own, MIN_NOISE_SIGMA)

    def noise_known(self) -> bool:
        """Whether enough tasks finished on the same workers to tell noise from speed (:data:`MIN_NOISE_PAIRS`)."""
        self.noise_sigma()
        return self.sigma_pairs >= MIN_NOISE_PAIRS

    def _band(self, n: int) -> float:
        """How far a median of ``n`` samples may sit from its reference by noise alone (0 without noise)."""
        return NOISE_Z * 1.2533 * self.noise_sigma() / math.sqrt(max(n, 1))  # 1.2533: s.e. of a median

    def differs_from_host(self, worker: str, host: str) -> bool:
        """Whether the worker's own tasks say it runs at another speed than its host, beyond the noise.

        >>> speeds = SpeedEstimates()
        >>> for i in range(8):  # w0 twice as slow as w1 and w2, 8 tasks each
        ...     for worker in ("w0", "w1", "w2"):
        ...         _ = speeds.observe(worker, "h", actual_s=(2.0 if worker == "w0" else 1.0) + i / 100, planned_s=1.0)
        >>> speeds.differs_from_host("w0", "h"), speeds.differs_from_host("w1", "h"), SpeedEstimates().differs_from_host("w0", "h")
        (True, False, False)
        """
        samples = self.by_worker.get(worker, ())
        if len(samples) < MIN_WORKER_N or not self.noise_known():
            return False
        # against what the host's tasks measured, not its (perhaps prior-snapped) value: a bias every
        # worker of the host shares (the model's) is no difference between them
        measured = self._host_median(host)
        reference = measured if measured is not None else self.host_log_slowness(host)
        band = WORKER_Z * 1.2533 * self.worker_sigma(worker) / math.sqrt(len(samples))
        return abs(statistics.median(samples) - reference) >= band

    def observe_slow_host(self, host: str, elapsed_s: float, planned_s: float, now: float | None = None) -> bool:
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
        if host not in self.slow_bound and now is not None:
            self.slow_since[host] = float(now)  # the regime begins: tasks started before it are mixed evidence
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
        self.slow_since.pop(host, None)

    def host_log_slowness(self, host: str) -> float:
        """The host's log slowness: its recent median, shrunk toward its reference, or the reference within the noise.

        The reference is the host's prior *plus the shift all hosts share*
        (:meth:`_refresh_shifts`: the median of their recent ratios less the
        median of their priors): a model bias every host shares is no speed. Snapping a host with few tasks to its bare prior while
        the others learned the bias made the few-task host read ×3.7 *fast*
        relative to them (the slowdown benchmark's bwa run: 92 holds for it).
        With one host observed the shift is 0 (what it was).
        """
        self.noise_sigma()  # (refreshes the shifts on the same schedule)
        reference = self.host_prior.get(host, 0.0) + self.shift
        median = self._host_level(host)
        if median is None:
            return reference
        n = len(self.by_host[host])
        if abs(median - reference) < self._band(n):
            return reference  # not distinguishable from its reference by more than the noise
        return (n * median + self.pseudo_n * reference) / (n + self.pseudo_n)  # (_shrunk, the median cached)

    def host_levels(self) -> dict[str, float]:
        """Hosts' levels from a two-way (category + host) fit of their recent tasks (:func:`host_effects`, the module note).

        Only categories that ran on two or more hosts take part, and only
        hosts with :data:`FIT_MIN_N` of their tasks (a host whose every
        category ran there alone keeps its plain median). The fit runs
        on the ratios against the *served* predictions; its effects are
        then put back on the level of the ratios against the plans (the
        median over the cells used is the same), so the noise band, the
        priors and the shared shift read them as they read a median. Empty
        with fewer than two such hosts. Recomputed at every observation for
        the first :data:`FIT_EAGER_N`, then every :data:`FIT_EVERY`
        (O(hosts × window × rounds)).

        >>> speeds = SpeedEstimates()
        >>> for i in range(4):  # the model over-predicts "b" x4; the slow host ran mostly b, at half speed
        ...     _ = speeds.observe("f", "fast", actual_s=1.0, planned_s=1.0, category="a", served_s=1.0)
        ...     _ = speeds.observe("s", "slow", actual_s=2.0, planned_s=1.0, category="a", served_s=1.0)
        ...     for _ in range(3):
        ...         _ = speeds.observe("s", "slow", actual_s=0.5, planned_s=1.0, category="b", served_s=1.0)
        ...     _ = speeds.observe("f", "fast", actual_s=0.25, planned_s=1.0, category="b", served_s=1.0)
        >>> [round(speeds._host_median(h), 2) for h in ("fast", "slow")]  # plain medians: the same speed
        [-0.69, -0.69]
        >>> levels = speeds.host_levels(); round(levels["slow"] - levels["fast"], 2)  # fitted: half the speed
        0.69
        """
        at = self.levels_at
        if at >= 0 and (at == self.n_total or (self.n_total > FIT_EAGER_N and self.n_total - at < FIT_EVERY)):
            return self.levels
        self.levels_at = self.n_total
        cells = [(h, c, served, ratio) for h, kept in self.by_host_cells.items() for c, served, ratio in kept]
        shared = _on_two_hosts(cells)
        counts = Counter(h for h, *_ in shared)
        used = _on_two_hosts([cell for cell in shared if counts[cell[0]] >= FIT_MIN_N])  # (a dropped host unlinks some)
        if len({cell[0] for cell in used}) < 2:
            self.levels = {}
            return self.levels
        effects = host_effects([(h, c, served) for h, c, served, _ in used])
        level = statistics.median(ratio for *_, ratio in used) - statistics.median(effects[h] for h, *_ in used)
        self.levels = {h: effect + level for h, effect in effects.items()}
        return self.levels

    def _host_level(self, host: str) -> float | None:
        """What the host's tasks measured: its fitted level (:meth:`host_levels`), else its plain median."""
        level = self.host_levels().get(host)
        return level if level is not None else self._host_median(host)

    def _host_median(self, host: str) -> float | None:
        """The median of the host's recent ratios, cached until the host's next observation (None: none yet)."""
        median = self.host_median.get(host)
        if median is None:
            samples = self.by_host.get(host)
            if not samples:
                return None
            median = self.host_median[host] = statistics.median(samples)
        return median

    def _refresh_shifts(self) -> None:
        """The shift all hosts share: the median log ratio of every host's recent tasks less the median of their priors.

        Only with two or more hosts observed (one host alone: its own data, no shared bias to tell from it).
        """
        observed = {host: samples for host, samples in self.by_host.items() if samples}
        self.shift = 0.0
        if len(observed) >= 2:
            pooled = [x for samples in observed.values() for x in samples]
            self.shift = statistics.median(pooled) - statistics.median(self.host_prior.get(h, 0.0) for h in observed)

    def speed(self, worker: str, host: str) -> float:
        """The worker's learned speed factor (1.0 with nothing learned: 2.0 runs a task in half the time)."""
        samples = list(self.by_worker.get(worker, ()))
        host_value = self.host_log_slowness(host)
        if self.differs_from_host(worker, host):
            log_slowness = _shrunk(samples, host_value, self.pseudo_n)
        else:  # a worker like its host, within the noise (or too few tasks to say): what its host measured
            # (the same for every worker of the host: identical workers never differ by their own noise)
            median, n = self._host_level(host), len(self.by_host.get(host, ()))
            log_slowness = host_value if median is None else (n * median + self.pseudo_n * host_value) / (n + self.pseudo_n)
        recent = samples[-self.change_n:]
        if len(samples) >= 2 * self.change_n:
            # the last few all moved the same way, past the band, from the estimate and from the worker's own
            # earlier tasks (a bias its host shares is no change): the worker changed (a host slowed mid-run);
            # the band from the spread of those earlier tasks (the change itself would widen the window's)
            change_band = max(self.dead_band, CHANGE_Z * self.change_sigma.get(worker, CHANGE_PRIOR_SIGMA))
            before = statistics.median(samples[:-self.change_n])
            if (min(recent) > max(log_slowness, before) + change_band
                    or max(recent) < min(log_slowness, before) - change_band):
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

    def forget_served(self) -> None:
        """A new model is served: the two-way fit's ratios against the old one's predictions mean nothing now."""
        self.by_host_cells.clear()
        self.levels.clear()
        self.levels_at = -1

    def forget_worker(self, worker: str) -> None:
        self.by_worker.pop(worker, None)
        self.own_sigma.pop(worker, None)
        self.change_sigma.pop(worker, None)


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


