"""p50 and p90 from any point predictor: a calibrated spread of held-out log residuals per category.

Design note
-----------
Split-conformal prediction in log space. On rows the point predictor did NOT
train on (the held-out runs of training), the residuals
``e = log(actual) - log(predicted)`` are collected per category. Then::

    p50 = predicted * exp(q50_c)        p90 = predicted * exp(q90_c)

where ``q_c`` are the category's residual quantiles at the *conformal* level
``ceil((n + 1) * p) / n`` (the finite-sample correction that makes the
coverage on a fresh exchangeable row at least ``p``), shrunk toward the pooled
residual quantiles of all categories with ``k`` pseudo-rows
(:attr:`SpreadConfig.prior_rows`, default 10)::

    q_c = (n * q_own + k * q_pooled) / (n + k)

A category with no held-out residuals gets the pooled quantiles; with no
residuals at all the spread is :attr:`SpreadConfig.default_log_spread` (a
factor 2 between p50 and p90). The p50 offset corrects a model's median bias
for the category; the p90 is never below the p50.

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

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "pooled": asdict(self.pooled), "categories": {c: asdict(q) for c, q in self.categories.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpreadModel:
        return cls(str(data["target"]), ResidualQuantiles(**data["pooled"]),
                   {str(c): ResidualQuantiles(**q) for c, q in (data.get("categories") or {}).items()})

    def offsets(self, category: str) -> ResidualQuantiles:
        return self.categories.get(category, self.pooled)

    def quantiles(self, categories: Sequence[str], predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(p50, p90)`` arrays for point predictions ``predicted`` of rows of ``categories``."""
        predicted = np.asarray(predicted, dtype="float64")
        q50 = np.empty(len(predicted))
        q90 = np.empty(len(predicted))
        cache: dict[str, ResidualQuantiles] = {}
        for i, category in enumerate(categories):
            entry = cache.get(category) or cache.setdefault(category, self.offsets(category))
            q50[i], q90[i] = entry.q50, entry.q90
        return predicted * np.exp(q50), predicted * np.exp(np.maximum(q90, q50))


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The ``ceil((n+1) level) / n`` empirical quantile (the largest residual when that exceeds 1).

    >>> conformal_quantile(np.arange(1.0, 10.0), 0.9)   # n = 9: ceil(10 * 0.9) = 9th smallest
    9.0
    """
    values = np.sort(np.asarray(residuals, dtype="float64"))
    n = len(values)
    rank = math.ceil((n + 1) * level)
    return float(values[min(rank, n) - 1])


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
    pooled = ResidualQuantiles(float(np.median(residuals)), conformal_quantile(residuals, config.upper), len(residuals))
    model = SpreadModel(target, pooled)
    k = config.prior_rows
    for category in sorted(set(cats)):
        own = residuals[cats == category]
        n = len(own)
        q50 = (n * float(np.median(own)) + k * pooled.q50) / (n + k)
        q90 = (n * conformal_quantile(own, config.upper) + k * pooled.q90) / (n + k)
        model.categories[str(category)] = ResidualQuantiles(q50, q90, n)
    return model


def coverage(upper: np.ndarray, actual: np.ndarray) -> float | None:
    """Share of rows whose actual cost is at or below ``upper`` (None without rows)."""
    upper = np.asarray(upper, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    ok = np.isfinite(upper) & np.isfinite(actual) & (actual > 0)
    return float(np.mean(actual[ok] <= upper[ok])) if ok.any() else None
