"""p50 and p90 from any point predictor: a calibrated spread of held-out log residuals per category.

Design note
-----------
Split-conformal prediction in log space. On rows the point predictor did NOT
train on (the held-out runs of training), the residuals
``e = log(actual) - log(predicted)`` are collected per category. Then::

    p50 = predicted * exp(q50_c)        p90 = predicted * exp(q90_c)

with, per category, a location ``m_c`` (median residual: the predictor's
median bias there) and a robust scale ``s_c`` (1.4826 MAD), and::

    q50_c = m_c        q90_c = m_c + z90_c * s_c

where ``z90_c`` is the *conformal* upper quantile of the category's
standardised residuals ``(e - m_c) / s_c`` - the ``ceil((n + 1) * p) / n``
empirical quantile, the finite-sample correction that makes coverage on a
fresh exchangeable row at least ``p``. Every part is shrunk toward its pooled
value with ``k`` pseudo-rows (:attr:`SpreadConfig.prior_rows`, default 10):
``m_c`` toward the pooled median, ``s_c^2`` toward the pooled within-category
scale, ``z90_c`` toward the pooled standardised quantile. Shrinking in
standardised units keeps a tight category tight and a noisy one wide (mixing
raw quantiles of categories with different spreads over-covers the first and
under-covers the second).

A category with no held-out residuals gets the pooled quantiles; with no
residuals at all the spread is :attr:`SpreadConfig.default_log_spread` (a
factor 2 between p50 and p90). The p50 offset corrects a model's median bias
for a category only when asked (``shift_median``): by default p50 is the
point prediction itself - our point predictors are log-space fits, i.e.
medians already, and a bias seen on one held-out run rarely transfers to the
next instance (measured on the traces: it made montage memory 3x worse); the
location still anchors the p90. The p90 is never below the p50.

Why not XGBoost's ``reg:quantileerror``: one more booster per quantile and
target, trained on the very rows whose residuals it would need to be
calibrated on; a conformal spread works on top of every predictor we have
(model, scaling law, mean, online-corrected) and its coverage is checkable
(``coverage``) on the next held-out run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SpreadConfig:
    """Tunables (to be read from ``daskflow.models.spread.*`` by the trainer)."""

    prior_rows: float = 10.0  # k: pseudo-rows of the pooled residual quantiles in each category's
    default_log_spread: float = math.log(2.0)  # p90/p50 when no residuals are known at all
    upper: float = 0.9  # the upper quantile served as "p90"
    min_scale: float = 1e-3  # floor of a category's log-residual scale


@dataclass
class ResidualQuantiles:
    """Log-residual offsets for one category (or pooled)."""

    q50: float
    q90: float
    rows: int


@dataclass
class SpreadModel:
    """Per-category residual quantiles of one target's point predictor."""

    target: str
    pooled: ResidualQuantiles
    categories: dict[str, ResidualQuantiles] = field(default_factory=dict)
    shift_median: bool = False  # p50 = prediction * exp(q50) instead of the prediction itself

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "pooled": asdict(self.pooled), "categories": {c: asdict(q) for c, q in self.categories.items()},
                "shift_median": self.shift_median}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpreadModel:
        return cls(str(data["target"]), ResidualQuantiles(**data["pooled"]),
                   {str(c): ResidualQuantiles(**q) for c, q in (data.get("categories") or {}).items()},
                   bool(data.get("shift_median", False)))

    def offsets(self, category: str) -> ResidualQuantiles:
        return self.categories.get(category, self.pooled)

    def quantiles(self, categories: Sequence[str], predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p50, p90)`` arrays for point predictions ``predicted`` of rows of ``categories``."""
        import pandas as pd

        predicted = np.asarray(predicted, dtype="float64")
        codes, uniques = pd.factorize(np.asarray(list(categories), dtype=object), sort=False)
        table = np.array([[self.offsets(str(c)).q50, self.offsets(str(c)).q90] for c in uniques], dtype="float64").reshape(-1, 2)
        q50 = table[codes, 0] if len(codes) else np.empty(0)
        q90 = table[codes, 1] if len(codes) else np.empty(0)
        p50 = predicted * np.exp(q50) if self.shift_median else predicted.copy()
        return p50, np.maximum(predicted * np.exp(q90), p50)


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The ``ceil((n+1) level) / n`` empirical quantile (the largest residual when that exceeds 1).

    >>> conformal_quantile(np.arange(1.0, 10.0), 0.9)   # n = 9: ceil(10 * 0.9) = 9th smallest
    9.0
    """
    return sorted_conformal_quantile(np.sort(np.asarray(residuals, dtype="float64")), level)


def sorted_conformal_quantile(ordered: Sequence[float], level: float) -> float:
    """:func:`conformal_quantile` of residuals that are already sorted (a ``SortedList``): one index.

    >>> sorted_conformal_quantile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 0.9)
    9.0
    """
    n = len(ordered)
    rank = math.ceil((n + 1) * level)
    return float(ordered[min(rank, n) - 1])


def fit_spread(target: str, categories: Sequence[str], predicted: np.ndarray, actual: np.ndarray,
               config: SpreadConfig | None = None) -> SpreadModel:
    """Calibrate the spread of ``predicted`` against ``actual`` on held-out rows (see the module note)."""
    config = config or SpreadConfig()
    predicted = np.asarray(predicted, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    cats = np.asarray(list(categories), dtype=object)
    ok = np.isfinite(predicted) & np.isfinite(actual) & (predicted > 0) & (actual > 0)
    residuals, cats = np.log(actual[ok]) - np.log(predicted[ok]), cats[ok]
    if not len(residuals):
        return SpreadModel(target, ResidualQuantiles(0.0, config.default_log_spread, 0))
    k = config.prior_rows
    groups = {str(c): np.flatnonzero(cats == c) for c in sorted(set(cats))}
    pooled_centre = float(np.median(residuals))
    # Location and scale per category (scale shrunk toward the pooled within-category scale).
    centred = np.concatenate([residuals[i] - np.median(residuals[i]) for i in groups.values()])
    pooled_scale = max(_mad(centred), config.min_scale)
    location, scale = {}, {}
    for category, index in groups.items():
        n = len(index)
        location[category] = (n * float(np.median(residuals[index])) + k * pooled_centre) / (n + k)
        scale[category] = max(math.sqrt((n * _mad(residuals[index]) ** 2 + k * pooled_scale**2) / (n + k)), config.min_scale)
    # Standardised residuals: their conformal upper quantile, own shrunk toward pooled.
    z = np.empty(len(residuals))
    for category, index in groups.items():
        z[index] = (residuals[index] - location[category]) / scale[category]
    pooled_z = conformal_quantile(z, config.upper)
    centred_z = (residuals - pooled_centre) / pooled_scale
    model = SpreadModel(target, ResidualQuantiles(pooled_centre, pooled_centre + pooled_scale * conformal_quantile(centred_z, config.upper), len(residuals)))
    for category, index in groups.items():
        n = len(index)
        z90 = (n * conformal_quantile(z[index], config.upper) + k * pooled_z) / (n + k)
        model.categories[category] = ResidualQuantiles(location[category], location[category] + z90 * scale[category], n)
    return model


def _mad(values: np.ndarray) -> float:
    if len(values) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def coverage(upper: np.ndarray, actual: np.ndarray) -> float | None:
    """Share of rows whose actual cost is at or below ``upper`` (None without rows)."""
    upper = np.asarray(upper, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    ok = np.isfinite(upper) & np.isfinite(actual) & (actual > 0)
    return float(np.mean(actual[ok] <= upper[ok])) if ok.any() else None
