"""Choosing, per category, which predictor serves it: by held-out error, never worse than the mean.

Design note
-----------
Several predictors answer every row (the global XGBoost model, the
per-category scaling law, their geometric blend, the per-category mean). On
held-out rows (runs the predictors did not train on) each category with at
least :attr:`SelectionConfig.min_rows` rows is served by the candidate with
the lowest median APE there. Categories with fewer rows are pooled into ONE
group ("small categories") and the group's categories are served by the
candidate with the lowest median APE over all its rows. Categories with no
held-out rows (and categories never seen) are served by the mean: there is
no evidence that anything else is better for them.

Never worse than the mean on held-out rows, by construction, and the mean
unless the evidence says otherwise: the mean (:data:`MEAN`) is always a
candidate and wins ties; a non-mean candidate replaces it in a unit only
when (1) its median APE beats the mean's by a relative margin
(:attr:`SelectionConfig.min_gain`, default 2 %) *and* (2) it is closer to
the truth than the mean on significantly more of the unit's rows than not
(a one-sided sign test, :func:`sign_test_p`, at
:attr:`SelectionConfig.significance`, default 0.07: 4 of 4 rows, 6 of 7,
7 of 8, 8 of 10; at 0.05 the 4-row small group of a one-run cold start -
errors 0.1 against the mean's 40 - stayed on the mean). A median won on a
handful of rows is noise - on the traces such wins (5-10 rows from the one
other instance of an application) were the folds that came out worse than
the mean on the held-out instance.

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
    significance: float = 0.07  # ... and be closer than the mean on more rows than chance explains (one-sided sign test)


@dataclass
class Selection:
    """Which candidate serves each category, for one target."""

    target: str
    choice: dict[str, str] = field(default_factory=dict)  # category -> candidate (categories with their own unit)
    fallback: str = MEAN  # for categories without held-out rows and unseen ones (older manifests: also the small group)
    table: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> {candidate: ape, "rows": n, "chosen": name}
    small: list[str] = field(default_factory=list)  # categories of the small group (a few held-out rows each)
    small_choice: str = MEAN  # ... served by the group's choice

    def chosen(self, category: str) -> str:
        choice = self.choice.get(category)
        if choice is not None:
            return choice
        return self.small_choice if category in self.small else self.fallback

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        return cls(str(data["target"]), dict(data.get("choice") or {}), str(data.get("fallback", MEAN)), dict(data.get("table") or {}),
                   [str(c) for c in data.get("small") or ()], str(data.get("small_choice", MEAN)))


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
        wins = {name: sign_test_p(pred[mask], mean[mask], actual[mask]) for name, pred in filled.items() if name != MEAN}
        best = _best(errors, config.min_gain, wins, config.significance)
        selection.table[str(unit)] = {**{k: v for k, v in errors.items()}, "rows": int(mask.sum()), "chosen": best,
                                      "p_better": {k: round(v, 4) for k, v in wins.items()}}
        if unit == SMALL_GROUP:
            selection.small = sorted({str(c) for c in cats[mask]})
            selection.small_choice = best
        else:
            selection.choice[str(unit)] = best
    return selection


def sign_test_p(candidate: np.ndarray, mean: np.ndarray, actual: np.ndarray) -> float:
    """One-sided sign test: the chance of the candidate being closer than the mean on this many rows if neither were better.

    Rows where both are equally close do not count.

    >>> actual = np.ones(5)
    >>> round(sign_test_p(actual * 1.01, actual * 1.5, actual), 4)   # 5 of 5 closer
    0.0312
    >>> sign_test_p(actual * 1.5, actual * 1.01, actual)
    1.0
    """
    closer = np.abs(np.asarray(candidate, dtype="float64") - actual) - np.abs(np.asarray(mean, dtype="float64") - actual)
    closer = closer[np.isfinite(closer)]
    wins, n = int((closer < 0).sum()), int((closer != 0).sum())
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2.0**n)


def _best(errors: Mapping[str, float | None], min_gain: float, p_better: Mapping[str, float] | None = None,
          significance: float = 1.0) -> str:
    base = errors.get(MEAN)
    if base is None:
        return MEAN
    best, best_error = MEAN, base
    for name in sorted(errors):
        error = errors[name]
        if name == MEAN or error is None or not math.isfinite(error):
            continue
        if (p_better or {}).get(name, 0.0) > significance:  # not better on enough rows: could be noise
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
