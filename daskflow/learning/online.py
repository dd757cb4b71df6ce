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
  estimate a third of the way to what it saw, five move it 5/7 of the way;
* log ratios are clipped to ``+-log(max_ratio)`` so one pathological task
  (a straggler on a bad host) cannot multiply the plan by 1000.

This generalises the steering plugin's EWMA calibration (``_calibrate`` in
``scheduler_plugins/steering.py``: first observation counts fully, then EWMA
with weight 0.3) with shrinkage by count and an explicit clock. It applies to
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
              since: float | None = None) -> tuple[float, float]:
    """``(r, n_eff)``: the shrunk log correction and the effective number of observations behind it.

    ``since``: ignore observations that finished before it (a detected change point).

    >>> obs = [Observation(1.0, 2.0, t) for t in range(6)]
    >>> r, n = log_ratio(obs, now=6.0)
    >>> round(math.exp(r), 3), n       # six tasks twice as long: 6/8 of the way to x2
    (1.682, 6.0)
    """
    config = config or OnlineConfig()
    bound = math.log(config.max_ratio)
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
    return n_eff / (n_eff + config.prior_observations) * mean, n_eff


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

    def observe(self, category: str, predicted: float, actual: float, finished_at: float) -> None:
        queue = self.observations.get(category)
        if queue is None:
            queue = self.observations[category] = deque(maxlen=self.config.max_observations)
        queue.append(Observation(float(predicted), float(actual), float(finished_at)))

    def factor(self, category: str, now: float, since: float | None = None) -> float:
        """The multiplicative correction for ``category`` now (1.0 without observations)."""
        r, _ = log_ratio(self.observations.get(category, ()), now, self.config, since)
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
