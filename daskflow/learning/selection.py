"""Choosing, per category, which predictor serves it: by held-out error, never worse than the mean.

Design note
-----------
Several predictors answer every row (the global XGBoost model, the
per-category scaling law, their geometric blend, the per-category mean). On
held-out rows (runs the predictors did not train on) each category with at
least :attr:`SelectionConfig.min_rows` rows is served by the candidate with
the lowest median APE there. Categories with fewer rows are pooled into ONE
group ("small categories") and the group is served by the candidate with the
lowest median APE over all its rows; categories with no held-out rows (and
categories never seen) use the same choice as the small group.

Never worse than the mean, by construction: the mean (:data:`MEAN`) is
always a candidate and wins ties, so within every selection unit - each large
category, and the small-category group - the selected candidate's held-out
median APE is <= the mean's. A non-mean candidate also has to beat the mean
by a relative margin (:attr:`SelectionConfig.min_gain`, default 2 %) to be
chosen, so noise does not flip a category away from the safe choice.

The result (:class:`Selection`) is plain data for the manifest: per target,
category -> candidate name, the fallback choice, and the evaluation table
(per unit and candidate: median APE and rows) for the model page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: the per-category mean: always a candidate, the safe choice
MEAN = "mean"
#: the selection unit holding every category with fewer than ``min_rows`` held-out rows
SMALL_GROUP = "*small*"


@dataclass(frozen=True)
class SelectionConfig:
    """Tunables (to be read from ``daskflow.models.selection.*`` by the trainer)."""

    min_rows: int = 5  # held-out rows a category needs to get its own choice
    min_gain: float = 0.02  # a candidate must beat the mean's median APE by this fraction to replace it


@dataclass
class Selection:
    """Which candidate serves each category, for one target."""

    target: str
    choice: dict[str, str] = field(default_factory=dict)  # category -> candidate
    fallback: str = MEAN  # for small, held-out-less and unseen categories
    table: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> {candidate: ape, "rows": n, "chosen": name}

    def chosen(self, category: str) -> str:
        return self.choice.get(category, self.fallback)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        return cls(str(data["target"]), dict(data.get("choice") or {}), str(data.get("fallback", MEAN)), dict(data.get("table") or {}))


def select_predictors(target: str, categories: Sequence[str], candidates: Mapping[str, np.ndarray], actual: np.ndarray,
                      config: SelectionConfig | None = None) -> Selection:
    """Pick per category the candidate with the lowest held-out median APE (see the module note).

    ``candidates`` maps a name to predictions aligned with ``categories`` / ``actual``; it must
    contain :data:`MEAN`. A candidate's NaN prediction on a row counts as the mean's (that is what
    serving does for it), so a candidate cannot win by abstaining on hard rows.

    >>> cats = ["a"] * 6
    >>> actual = np.array([1.0, 2, 4, 8, 16, 32])
    >>> select_predictors("duration", cats, {"mean": np.full(6, 10.5), "law": actual * 1.1}, actual).chosen("a")
    'law'
    """
    from daskflow.learning.training import median_ape

    config = config or SelectionConfig()
    if MEAN not in candidates:
        raise ValueError(f"select_predictors for {target!r} needs the {MEAN!r} candidate (the baseline it must not lose to)")
    actual = np.asarray(actual, dtype="float64")
    cats = np.asarray(list(categories), dtype=object)
    mean = np.asarray(candidates[MEAN], dtype="float64")
    filled = {name: np.where(np.isfinite(np.asarray(p, dtype="float64")), p, mean) for name, p in candidates.items()}
    valid = np.isfinite(actual) & (actual > 0)
    counts = {c: int(((cats == c) & valid).sum()) for c in set(cats)}
    units: dict[str, np.ndarray] = {c: (cats == c) & valid for c, n in counts.items() if n >= config.min_rows}
    small = valid & ~np.isin(cats, list(units)) if units else valid.copy()
    selection = Selection(target)
    for unit, mask in sorted(units.items()) + [(SMALL_GROUP, small)]:
        if not mask.any():
            continue
        errors = {name: median_ape(pred[mask], actual[mask]) for name, pred in filled.items()}
        best = _best(errors, config.min_gain)
        selection.table[str(unit)] = {**{k: v for k, v in errors.items()}, "rows": int(mask.sum()), "chosen": best}
        if unit == SMALL_GROUP:
            selection.fallback = best
        else:
            selection.choice[str(unit)] = best
    return selection


def _best(errors: Mapping[str, float | None], min_gain: float) -> str:
    base = errors.get(MEAN)
    if base is None:
        return MEAN
    best, best_error = MEAN, base
    for name in sorted(errors):
        error = errors[name]
        if name == MEAN or error is None or not math.isfinite(error):
            continue
        if error < best_error and error <= base * (1.0 - min_gain):
            best, best_error = name, error
    return best


def apply_selection(selection: Selection, categories: Sequence[str], candidates: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(values, source)``: each row's prediction from its category's chosen candidate (the mean where that is NaN)."""
    import pandas as pd

    mean = np.asarray(candidates[MEAN], dtype="float64")
    values = mean.copy()
    source = np.full(len(values), MEAN, dtype=object)
    codes, uniques = pd.factorize(np.asarray(list(categories), dtype=object), sort=False)
    chosen = np.array([selection.chosen(str(c)) for c in uniques], dtype=object)
    for name, candidate in candidates.items():  # vectorised per candidate: batches of 10k rows per graph update
        if name == MEAN or not len(chosen):
            continue
        picked = (chosen[codes] == name) if len(codes) else np.zeros(0, dtype=bool)
        candidate = np.asarray(candidate, dtype="float64")
        use = picked & np.isfinite(candidate)
        values[use] = candidate[use]
        source[use] = name
    return values, source


def geometric_blend(*predictions: np.ndarray) -> np.ndarray:
    """Row-wise geometric mean of the finite, positive predictions (NaN where none is)."""
    stack = np.vstack([np.asarray(p, dtype="float64") for p in predictions])
    logs = np.where(np.isfinite(stack) & (stack > 0), np.log(np.where(stack > 0, stack, 1.0)), np.nan)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(logs).sum(axis=0)
        out = np.exp(np.nansum(logs, axis=0) / np.where(counts > 0, counts, 1))
    return np.where(counts > 0, out, np.nan)
