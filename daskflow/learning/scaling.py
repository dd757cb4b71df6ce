"""Per-category size scaling: cost as a power law of input size, shrunk toward a pooled slope.

Design note
-----------
Workflow literature (Lotaru, Witt et al.) finds that one task type's runtime
and peak memory follow its input size closely, and that a per-type law learned
from a handful of rows beats both a global regressor and the per-type mean.
We fit, per category ``c`` and target ``y`` (duration, peak memory), the law::

    log y = alpha_c + beta_c * log(1 + size)          (size = input + dependency bytes)

* **Robust fit.** ``beta`` is the Theil-Sen slope (median of pairwise slopes,
  ``scipy.stats.theilslopes``): it tolerates ~29 % outliers, needs no tuning,
  and on a handful of rows is far steadier than least squares. ``alpha`` is
  the median of ``log y - beta * log(1 + size)``.
* **Shrinkage (empirical Bayes).** Category ``c`` serves
  ``w_c * beta_c + (1 - w_c) * beta_pooled`` with ``w_c = tau^2 / (tau^2 + se_c^2)``:
  ``beta_pooled`` is the Theil-Sen slope of all rows after centring each
  category on its own medians (the typical within-category size elasticity),
  ``se_c^2 = sigma_c^2 / (n_c * var(log(1 + size_c)))`` the variance of the
  category's own slope (its noise ``sigma_c^2`` itself shrunk toward the
  pooled noise with :attr:`ScalingConfig.prior_rows` = 8 pseudo-rows, so three
  lucky rows cannot claim zero noise), and ``tau^2`` the variance of true
  slopes around the pooled one, estimated from the categories (method of
  moments) and floored at ``min_slope_sd^2 = 0.1^2`` - the documented prior
  strength. Sixty rows over five decades of size keep their own slope
  (``w ~ 1``); three noisy rows of similar size mostly take the pooled one. A
  category whose sizes do not vary (IQR of ``log(1 + size)`` below
  ``min_log_spread``) cannot identify a slope: it takes the pooled slope (at
  its observed sizes the law gives its median; other sizes scale typically).
  The intercept is always the category's own (its median in log space given
  the slope), i.e. few rows shrink toward the *category median*, not the
  global level - the mean is what we must beat, and categories differ by
  orders of magnitude.
* Predictions are medians (``exp`` of the log prediction): what median APE
  scores. Unseen categories get NaN; the caller falls back (model, mean,
  default).

Everything is plain data (:class:`ScalingModel` is JSON-able for the
manifest) and pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from daskflow.learning.cleaning import CleaningConfig

_FLOORS = CleaningConfig()
#: target name -> (history column, floor). Values below the floor are clipped to it before the log
#: (microsecond tasks / tiny peaks are measurement noise: the floors of ``cleaning``).
TARGET_COLUMNS: dict[str, tuple[str, float]] = {
    "duration": ("duration_s", _FLOORS.duration_floor_s),
    "peak_memory": ("peak_memory_bytes", _FLOORS.memory_floor_bytes),
}


@dataclass(frozen=True)
class ScalingConfig:
    """Tunables of the fit (to be read from ``daskflow.models.scaling.*`` by the trainer)."""

    prior_rows: float = 8.0  # k: pseudo-rows of the pooled noise level in every category's noise estimate
    min_slope_sd: float = 0.1  # floor of the prior sd of slopes around the pooled slope (prior strength)
    min_sigma: float = 0.05  # floor of the pooled log-noise level
    default_sigma: float = 0.5  # log-noise level when no category has an identifiable slope
    min_log_spread: float = 0.1  # below this spread (IQR of log(1+size)) a category's own slope is not fit
    max_pairs_rows: int = 400  # Theil-Sen is O(n^2): larger categories are subsampled (deterministically)
    max_abs_slope: float = 3.0  # physically plausible elasticities; guards against a fit on two points


@dataclass
class CategoryLaw:
    """``log y = intercept + slope * log(1 + size)`` for one category."""

    intercept: float
    slope: float
    own_slope: float | None  # the category's own Theil-Sen slope (None: not identifiable)
    rows: int
    residual_scale: float  # 1.4826 * MAD of log residuals (robust sigma)
    weight: float = 0.0  # share of the own slope in the served slope (0: pooled slope only)


@dataclass
class ScalingModel:
    """A fitted scaling law per category for one target."""

    target: str
    pooled_slope: float
    floor: float
    laws: dict[str, CategoryLaw] = field(default_factory=dict)
    pooled_sigma: float = 0.5  # log-noise around the pooled law
    slope_prior_var: float = 0.01  # tau^2: variance of category slopes around the pooled slope

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "pooled_slope": self.pooled_slope, "floor": self.floor,
                "pooled_sigma": self.pooled_sigma, "slope_prior_var": self.slope_prior_var,
                "laws": {c: asdict(law) for c, law in self.laws.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalingModel:
        return cls(str(data["target"]), float(data["pooled_slope"]), float(data["floor"]),
                   {str(c): CategoryLaw(**law) for c, law in (data.get("laws") or {}).items()},
                   float(data.get("pooled_sigma", 0.5)), float(data.get("slope_prior_var", 0.01)))

    def predict_log(self, categories: Sequence[str], sizes: np.ndarray) -> np.ndarray:
        """Log-space predictions (NaN for categories without a law)."""
        x = np.log1p(np.clip(np.nan_to_num(np.asarray(sizes, dtype="float64"), nan=0.0), 0, None))
        codes, uniques = pd.factorize(np.asarray(list(categories), dtype=object), sort=False)
        nan = CategoryLaw(math.nan, math.nan, None, 0, math.nan)
        laws = [self.laws.get(str(c), nan) for c in uniques]
        intercept = np.array([law.intercept for law in laws], dtype="float64")
        slope = np.array([law.slope for law in laws], dtype="float64")
        if not len(codes):
            return np.full(len(x), np.nan)
        return intercept[codes] + slope[codes] * x

    def predict(self, records: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Median predictions in the target's unit (NaN for unseen categories)."""
        frame = _frame(records)
        return np.exp(self.predict_log(_category_list(frame), input_size_bytes(frame)))


def input_size_bytes(frame: pd.DataFrame) -> np.ndarray:
    """The size a task scales with: declared input bytes plus bytes of its dependencies (missing -> 0)."""
    total = np.zeros(len(frame))
    for column in ("input_bytes", "dependency_bytes"):
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            total += np.clip(np.nan_to_num(values, nan=0.0), 0, None)
    return total


def fit_scaling(history: pd.DataFrame, target: str = "duration", config: ScalingConfig | None = None,
                weights: np.ndarray | None = None) -> ScalingModel:
    """Fit the per-category law of ``target`` ("duration" or "peak_memory") on history rows.

    Rows with a missing target, or ``weights == 0`` (excluded by ``cleaning``), are ignored.

    >>> rows = pd.DataFrame({"category": ["a"] * 4, "input_bytes": [1e3, 1e4, 1e5, 1e6],
    ...                      "duration_s": [1.0, 10.0, 100.0, 1000.0]})
    >>> round(fit_scaling(rows).laws["a"].own_slope, 2)
    1.0
    """
    config = config or ScalingConfig()
    column, floor = TARGET_COLUMNS[target]
    frame = _frame(history)
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan) if column in frame else np.full(len(frame), np.nan)
    keep = np.isfinite(values)
    if weights is not None:
        keep &= np.asarray(weights, dtype="float64") > 0
    y = np.log(np.clip(values[keep], floor, None))
    x = np.log1p(input_size_bytes(frame)[keep])
    categories = np.asarray(_category_list(frame), dtype=object)[keep]
    model = ScalingModel(target, 0.0, floor)
    if not len(y):
        return model
    groups = {c: np.flatnonzero(categories == c) for c in sorted(set(categories))}

    # Pooled within-category slope: centre every identifiable category on its medians.
    cx, cy = [], []
    for index in groups.values():
        if _spread(x[index]) >= config.min_log_spread and len(index) >= 3:
            cx.append(x[index] - np.median(x[index]))
            cy.append(y[index] - np.median(y[index]))
    pooled = _theil_sen(np.concatenate(cx), np.concatenate(cy), config) if cx else 0.0
    model.pooled_slope = float(np.clip(pooled, -config.max_abs_slope, config.max_abs_slope))
    pooled_sigma = _mad_sigma(np.concatenate(cy) - model.pooled_slope * np.concatenate(cx)) if cx else config.default_sigma
    model.pooled_sigma = max(pooled_sigma, config.min_sigma)

    # First pass: each category's own slope and the variance of that estimate.
    k = config.prior_rows
    own: dict[str, tuple[float, float] | None] = {}
    for category, index in groups.items():
        xs, ys, n = x[index], y[index], len(index)
        if n >= 2 and _spread(xs) >= config.min_log_spread:
            slope = float(np.clip(_theil_sen(xs, ys, config), -config.max_abs_slope, config.max_abs_slope))
            sigma2 = (n * _mad_sigma(ys - slope * xs) ** 2 + k * model.pooled_sigma**2) / (n + k)  # noise, shrunk
            own[category] = (slope, sigma2 / (n * max(float(np.var(xs)), 1e-12)))
        else:
            own[category] = None
    # Prior variance of slopes around the pooled one (method of moments, floored).
    fitted = [v for v in own.values() if v is not None]
    excess = float(np.mean([(s - model.pooled_slope) ** 2 - se2 for s, se2 in fitted])) if fitted else 0.0
    model.slope_prior_var = max(excess, config.min_slope_sd**2)

    for category, index in groups.items():
        xs, ys, n = x[index], y[index], len(index)
        entry = own[category]
        if entry is None:  # no identifiable slope (one size, or a tiny spread): the pooled one
            own_slope, weight = None, 0.0
        else:
            own_slope, weight = entry[0], model.slope_prior_var / (model.slope_prior_var + entry[1])
        slope = model.pooled_slope if own_slope is None else weight * own_slope + (1 - weight) * model.pooled_slope
        intercept = float(np.median(ys - slope * xs))  # the category's own level: its median given the slope
        scale = _mad_sigma(ys - (intercept + slope * xs)) if n >= 2 else math.nan
        model.laws[str(category)] = CategoryLaw(intercept, float(slope), own_slope, int(n), scale, float(weight))
    return model


def _mad_sigma(residuals: np.ndarray) -> float:
    if len(residuals) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(residuals - np.median(residuals))))


def _theil_sen(x: np.ndarray, y: np.ndarray, config: ScalingConfig) -> float:
    from scipy.stats import theilslopes

    if len(x) > config.max_pairs_rows:  # deterministic thinning: every m-th row in size order
        order = np.argsort(x, kind="stable")
        pick = order[np.linspace(0, len(x) - 1, config.max_pairs_rows).astype(int)]
        x, y = x[pick], y[pick]
    if np.ptp(x) == 0:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # its confidence interval on a few points; we use the slope only
        return float(theilslopes(y, x)[0])


def _spread(x: np.ndarray) -> float:
    if len(x) < 2:
        return 0.0
    q75, q25 = np.percentile(x, [75, 25])
    return float(max(q75 - q25, 0.5 * np.ptp(x) if len(x) < 4 else 0.0))


def _frame(records: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))


def _category_list(frame: pd.DataFrame) -> list[str]:
    if "category" not in frame:
        return [""] * len(frame)
    return ["" if c is None or (isinstance(c, float) and math.isnan(c)) else str(c) for c in frame["category"].tolist()]
