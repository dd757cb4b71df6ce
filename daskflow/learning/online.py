"""Online correction from the tasks of a category already finished in THIS run (Lotaru-style).

Design note
-----------
A model trained on other runs is often off for this run by a factor common to
a whole category (other input data, other hardware, a code change). After a
few tasks of the category have finished, that factor is known. Given the
``(predicted, actual, finished_at)`` of those tasks, the corrected estimate
for the not-yet-run tasks of the category is::

    estimate = prediction * exp(r)
    r = n_eff / (n_eff + k) * weighted_mean(clip(log(actual / predicted)))

* weights decay with age, ``0.5 ** ((now - finished_at) / half_life_s)``, so a
  run whose cost changes mid-way follows the change (``half_life_s = inf``
  means a plain mean: the default, a run is usually stationary);
  ``n_eff = (sum w)^2 / sum w^2`` is the effective number of observations;
* ``k`` (:attr:`OnlineConfig.prior_observations`, default 2) is the weight of
  the prior "the model is right" (``r = 0``): one finished task moves the
  estimate a third of the way to what it saw, five move it 5/7 of the way.
  The empirical-Bayes value is ``k_c = sigma_c^2 / tau^2`` - per-task noise of
  the category's log ratios over the variance of run-level factors - which
  :func:`prior_observations_from_holdout` estimates from held-out residuals;
  :attr:`OnlineState.priors` takes it per category. A category whose tasks
  scatter a lot around a model that is right on average then needs many tasks
  to move (measured on srasearch: k = 2 made it worse), one that is shifted
  as a whole moves after two or three;
* log ratios are clipped to ``+-log(max_ratio)`` so one pathological task
  (a straggler on a bad host) cannot multiply the plan by 1000.

This generalises the EWMA calibration the steering plugin once had (its
former ``_calibrate``: first observation counts fully, then EWMA with weight
0.3, now replaced by :class:`~daskflow.learning.corrector.OnlineCorrector`)
with shrinkage by count and an explicit clock. It applies to
any prediction source - a model, a scaling law or a mean - since it only
looks at the ratio of what was predicted to what happened; for a category
demoted by :mod:`~daskflow.learning.drift`, :meth:`OnlineState.correct` is
called with ``since`` = the change point so only post-change tasks count.

Pure: time is an argument, state is one declared dataclass.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OnlineConfig:
    """Tunables (to be read from ``daskflow.steering.online.*`` by the plugin)."""

    prior_observations: float = 2.0  # k: weight of "the prediction is right" in observations
    half_life_s: float = math.inf  # age at which a finished task counts half; inf: all count equally
    max_ratio: float = 20.0  # |log(actual/predicted)| is clipped to log(max_ratio)
    max_observations: int = 256  # per category, the most recent are kept


@dataclass(frozen=True)
class Observation:
    """One finished task: what was predicted for it, what it cost, when it finished (seconds, any clock)."""

    predicted: float
    actual: float
    finished_at: float


def log_ratio(observations: Iterable[Observation], now: float, config: OnlineConfig | None = None,
              since: float | None = None, prior_observations: float | None = None,
              bound: float | None = None) -> tuple[float, float]:
    """``(r, n_eff)``: the shrunk log correction and the effective number of observations behind it.

    ``since``: ignore observations that finished before it (a detected change point). ``bound``: a tighter
    clip of each log ratio than ``log(max_ratio)`` (the category's own, :attr:`OnlineState.bounds`).

    >>> obs = [Observation(1.0, 2.0, t) for t in range(6)]
    >>> r, n = log_ratio(obs, now=6.0)
    >>> round(math.exp(r), 3), n       # six tasks twice as long: 6/8 of the way to x2
    (1.682, 6.0)
    """
    config = config or OnlineConfig()
    bound = math.log(config.max_ratio) if bound is None else min(bound, math.log(config.max_ratio))
    ratios, weights = [], []
    for obs in observations:
        if since is not None and obs.finished_at < since:
            continue
        if not (obs.predicted > 0 and obs.actual > 0 and math.isfinite(obs.predicted) and math.isfinite(obs.actual)):
            continue
        ratios.append(max(-bound, min(bound, math.log(obs.actual / obs.predicted))))
        age = max(0.0, now - obs.finished_at)
        weights.append(0.5 ** (age / config.half_life_s) if math.isfinite(config.half_life_s) else 1.0)
    if not ratios:
        return 0.0, 0.0
    w = np.asarray(weights)
    mean = float(np.dot(w, ratios) / w.sum())
    n_eff = float(w.sum() ** 2 / np.dot(w, w))
    k = config.prior_observations if prior_observations is None else prior_observations
    return n_eff / (n_eff + k) * mean, n_eff


def corrected(prediction: float, observations: Iterable[Observation], now: float,
              config: OnlineConfig | None = None, since: float | None = None) -> float:
    """``prediction`` corrected by the finished tasks of its category (see the module note)."""
    r, _ = log_ratio(observations, now, config, since)
    return prediction * math.exp(r)


@dataclass
class OnlineState:
    """Per-category observations of one run (the plugin keeps one; reset per run or never - both are fine)."""

    config: OnlineConfig = field(default_factory=OnlineConfig)
    observations: dict[str, deque[Observation]] = field(default_factory=dict)  # category -> newest last
    priors: dict[str, float] = field(default_factory=dict)  # category -> k (else config.prior_observations)
    # category ("" for the rest) -> the clip of one task's log ratio before a change point: a few of the
    # category's baseline sigmas, so one task far off (a 2 MB peak among 30 MB ones) cannot pull the whole
    # category's correction by x0.1; after a drift alarm (``since``) only ``max_ratio`` applies
    bounds: dict[str, float] = field(default_factory=dict)

    # category -> [its deque, sum of clipped log ratios, count of valid observations, len(deque) at the last update]:
    # with equal weights (no half-life) and no change point, log_ratio is sum / count, kept as tasks finish
    # instead of recomputed over up to max_observations per call (~200 us per finished task on the event loop)
    _sums: dict[str, list] = field(default_factory=dict, repr=False, compare=False)

    def observe(self, category: str, predicted: float, actual: float, finished_at: float) -> None:
        queue = self.observations.get(category)
        if queue is None:
            queue = self.observations[category] = deque(maxlen=self.config.max_observations)
        entry = self._sums.get(category)
        if entry is None or entry[0] is not queue or entry[3] != len(queue):  # new, or changed behind our back
            entry = self._sums[category] = [queue, 0.0, 0, 0]
            for obs in queue:
                self._add(entry, obs, +1, category)
        if queue.maxlen is not None and len(queue) == queue.maxlen:
            self._add(entry, queue[0], -1, category)  # evicted by the append below
        observation = Observation(float(predicted), float(actual), float(finished_at))
        queue.append(observation)
        self._add(entry, observation, +1, category)
        entry[3] = len(queue)

    def bound(self, category: str) -> float:
        """The clip of one log ratio of ``category`` before a change point."""
        own = self.bounds.get(category, self.bounds.get(""))
        bound = math.log(self.config.max_ratio)
        return bound if own is None else min(bound, own)

    def _add(self, entry: list, obs: Observation, sign: int, category: str) -> None:
        if not (obs.predicted > 0 and obs.actual > 0 and math.isfinite(obs.predicted) and math.isfinite(obs.actual)):
            return
        bound = self.bound(category)
        entry[1] += sign * max(-bound, min(bound, math.log(obs.actual / obs.predicted)))
        entry[2] += sign

    def factor(self, category: str, now: float, since: float | None = None) -> float:
        """The multiplicative correction for ``category`` now (1.0 without observations)."""
        prior = self.priors.get(category, self.priors.get(""))
        queue = self.observations.get(category, ())
        entry = self._sums.get(category)
        if (since is None and not math.isfinite(self.config.half_life_s) and entry is not None
                and entry[0] is queue and entry[3] == len(queue)):
            n = entry[2]
            if n <= 0:
                return 1.0
            k = self.config.prior_observations if prior is None else prior
            return math.exp(n / (n + k) * (entry[1] / n))
        r, _ = log_ratio(queue, now, self.config, since, prior, self.bound(category) if since is None else None)
        return math.exp(r)

    def correct(self, categories: Sequence[str], predictions: np.ndarray, now: float,
                since: dict[str, float] | None = None) -> np.ndarray:
        """Batched: every prediction times its category's factor (``since``: per-category change points)."""
        since = since or {}
        factors = {c: self.factor(c, now, since.get(c)) for c in set(categories)}
        return np.asarray(predictions, dtype="float64") * np.fromiter((factors[c] for c in categories), dtype="float64", count=len(categories))

    def run_median(self, category: str, since: float | None = None) -> float | None:
        """Median actual cost of the category in this run (the estimate for a category nothing predicts well)."""
        values = [o.actual for o in self.observations.get(category, ()) if since is None or o.finished_at >= since]
        return float(np.median(values)) if values else None


def prior_observations_from_holdout(categories: Sequence[str], predicted: np.ndarray, actual: np.ndarray,
                                    min_rows: int = 3, min_tau: float = 0.05, min_k: float = 1.0, max_k: float = 50.0,
                                    noise_prior_rows: float = 8.0) -> dict[str, float]:
    """Per category ``k_c = sigma_c^2 / tau^2`` from held-out rows of ONE or more runs the predictor did not see.

    ``sigma_c``: robust spread of the category's log residuals; ``tau^2``: variance of the categories'
    median residuals beyond what their noise explains (method of moments, at least ``min_tau^2``) - how
    far a whole category is typically off in a new run. ``sigma_c^2`` is shrunk toward the pooled
    within-category noise with ``noise_prior_rows`` pseudo-rows (three tight rows do not prove a
    category precise), and ``k`` is kept in ``[min_k, max_k]`` (one task never counts fully).
    Categories with fewer than ``min_rows`` rows get the pooled median ``k`` under the key ``""``.
    """
    predicted = np.asarray(predicted, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    cats = np.asarray(list(categories), dtype=object)
    ok = np.isfinite(predicted) & np.isfinite(actual) & (predicted > 0) & (actual > 0)
    residuals, cats = np.log(actual[ok] / predicted[ok]), cats[ok]
    stats = {}
    for category in set(cats):
        own = residuals[cats == category]
        if len(own) >= min_rows:
            centre = float(np.median(own))
            sigma = float(1.4826 * np.median(np.abs(own - centre)))
            stats[str(category)] = (centre, sigma, len(own))
    if not stats:
        return {}
    pooled2 = float(np.median([s * s for _, s, _ in stats.values()]))
    noise2 = {c: (n * s * s + noise_prior_rows * pooled2) / (n + noise_prior_rows) for c, (_, s, n) in stats.items()}
    excess = np.mean([m * m - (math.pi / 2) * noise2[c] / n for c, (m, _, n) in stats.items()])  # var of a median ~ pi/2 sigma^2/n
    tau2 = max(float(excess), min_tau**2)
    out = {c: min(max(noise2[c] / tau2, min_k), max_k) for c in stats}
    out[""] = float(np.median(list(out.values())))
    return out


def simulate_online(categories: Sequence[str], finished_at: np.ndarray, predicted: np.ndarray, actual: np.ndarray,
                    config: OnlineConfig | None = None, priors: dict[str, float] | None = None) -> np.ndarray:
    """Replay a run in finishing order: each row's prediction corrected by the rows of its category that finished before it.

    What the online correction would have served; used to decide on held-out runs whether it helps.
    """
    state = OnlineState(config or OnlineConfig(), priors=dict(priors or {}))
    predicted = np.asarray(predicted, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    order = np.argsort(np.asarray(finished_at, dtype="float64"), kind="stable")
    out = predicted.copy()
    for i in order:
        category = categories[i]
        out[i] = predicted[i] * state.factor(category, now=float(finished_at[i]))
        if np.isfinite(actual[i]) and actual[i] > 0 and np.isfinite(predicted[i]) and predicted[i] > 0:
            state.observe(category, predicted[i], actual[i], float(finished_at[i]))
    return out


def simulate_online_quantiles(categories: Sequence[str], finished_at: np.ndarray, predicted: np.ndarray, actual: np.ndarray,
                              upper_log: np.ndarray, config: OnlineConfig | None = None, priors: dict[str, float] | None = None,
                              level: float = 0.9, spread_prior_rows: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`simulate_online`, plus an adaptive upper quantile: ``(point, upper)``.

    ``upper_log`` is each row's prior ``log(p90 / p50)`` (the calibrated spread of training). As tasks of
    a category finish, the residuals of the *corrected* predictions, ``log(actual / corrected)``, give the
    run's own spread: its conformal ``level`` quantile, shrunk toward the prior with ``spread_prior_rows``
    pseudo-rows. A run that differs from training (other instance, other hardware) then gets an honest
    p90 within a few tasks instead of the training spread.
    """
    from daskflow.learning.quantiles import conformal_quantile

    state = OnlineState(config or OnlineConfig(), priors=dict(priors or {}))
    predicted = np.asarray(predicted, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    upper_log = np.asarray(upper_log, dtype="float64")
    residuals: dict[str, list[float]] = {}
    point, upper = predicted.copy(), predicted.copy()
    for i in np.argsort(np.asarray(finished_at, dtype="float64"), kind="stable"):
        category = categories[i]
        point[i] = predicted[i] * state.factor(category, now=float(finished_at[i]))
        own = residuals.get(category, ())
        n = len(own)
        prior = upper_log[i] if np.isfinite(upper_log[i]) else 0.0
        q = (n * conformal_quantile(np.asarray(own), level) + spread_prior_rows * prior) / (n + spread_prior_rows) if n else prior
        upper[i] = point[i] * math.exp(max(q, 0.0))
        if np.isfinite(actual[i]) and actual[i] > 0 and np.isfinite(predicted[i]) and predicted[i] > 0:
            state.observe(category, predicted[i], actual[i], float(finished_at[i]))
            if point[i] > 0:
                residuals.setdefault(category, []).append(math.log(actual[i] / point[i]))
    return point, upper
