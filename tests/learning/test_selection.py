"""Per-category selection: by held-out error, with a minimum row count, never worse than the mean."""

from __future__ import annotations

import numpy as np
import pytest

from daskflow.learning.selection import (
    MEAN,
    SMALL_GROUP,
    Selection,
    apply_selection,
    geometric_blend,
    select_predictors,
)
from daskflow.learning.training import median_ape

pytestmark = pytest.mark.timeout(30)


def held_out(seed: int = 0):
    """Category "law" follows size (a scaling law wins), "flat" is constant (the mean wins), "tiny" has 3 rows."""
    rng = np.random.default_rng(seed)
    cats, actual, law, model = [], [], [], []
    for category, n in (("law", 40), ("flat", 40), ("tiny", 3)):
        for _ in range(n):
            size = 10 ** rng.uniform(0, 3)
            truth = size if category == "law" else 5.0
            value = truth * rng.lognormal(0, 0.1)
            cats.append(category)
            actual.append(value)
            law.append(truth if category == "law" else truth * rng.lognormal(0, 0.8))  # a bad law where there is none
            model.append(value * rng.lognormal(0, 0.5))
    cats, actual = np.array(cats, dtype=object), np.array(actual)
    mean = np.array([actual[cats == c].mean() for c in cats])
    return cats, actual, {MEAN: mean, "scaling": np.array(law), "model": np.array(model)}


def test_picks_the_best_candidate_per_category():
    cats, actual, candidates = held_out()
    selection = select_predictors("duration", cats, candidates, actual)
    assert selection.chosen("law") == "scaling"
    assert selection.chosen("flat") == MEAN
    assert "tiny" not in selection.choice and selection.chosen("tiny") == selection.fallback
    assert selection.chosen("never-seen") == selection.fallback
    assert selection.table["law"]["rows"] == 40 and selection.table[SMALL_GROUP]["rows"] == 3


@pytest.mark.parametrize("seed", range(5))
def test_never_worse_than_the_mean_on_held_out_rows(seed):
    cats, actual, candidates = held_out(seed)
    rng = np.random.default_rng(seed)
    candidates["noise"] = actual * rng.lognormal(0, 2.0, len(actual))  # a terrible candidate
    selection = select_predictors("duration", cats, candidates, actual)
    served, _ = apply_selection(selection, list(cats), candidates)
    units = {c: cats == c for c in selection.choice} | {SMALL_GROUP: ~np.isin(cats, list(selection.choice))}
    for unit, mask in units.items():
        assert median_ape(served[mask], actual[mask]) <= median_ape(candidates[MEAN][mask], actual[mask]), unit


def test_ties_and_small_gains_keep_the_mean():
    actual = np.linspace(1, 2, 20)
    cats = ["a"] * 20
    mean = np.full(20, 1.5)
    selection = select_predictors("duration", cats, {MEAN: mean, "same": mean.copy(), "slightly": mean * 0.999}, actual)
    assert selection.chosen("a") == MEAN


def test_nan_predictions_count_as_the_mean_and_are_served_by_it():
    actual = np.ones(10)
    cats = ["a"] * 10
    partial = np.where(np.arange(10) < 5, 1.0, np.nan)  # perfect where it answers, abstains elsewhere
    candidates = {MEAN: np.full(10, 3.0), "partial": partial}
    selection = select_predictors("duration", cats, candidates, actual)
    values, source = apply_selection(selection, cats, candidates)
    assert selection.chosen("a") == "partial"  # median APE 1.0 on the filled rows vs 2.0
    assert list(source[:5]) == ["partial"] * 5 and list(source[5:]) == [MEAN] * 5 and values[5] == 3.0


def test_mean_is_required_and_round_trip():
    with pytest.raises(ValueError, match="mean"):
        select_predictors("duration", ["a"], {"model": np.ones(1)}, np.ones(1))
    cats, actual, candidates = held_out()
    selection = select_predictors("duration", cats, candidates, actual)
    assert Selection.from_dict(selection.to_dict()) == selection


def test_geometric_blend():
    out = geometric_blend(np.array([1.0, 4.0, np.nan, np.nan]), np.array([4.0, np.nan, 9.0, np.nan]))
    assert out[:3].tolist() == pytest.approx([2.0, 4.0, 9.0]) and np.isnan(out[3])


def test_a_median_won_on_a_few_rows_is_not_enough_evidence():
    """6 rows: the candidate's median is far better, but it is closer than the mean on only 4 of them."""
    actual = np.ones(6)
    mean = np.full(6, 1.5)
    lucky = np.array([1.01, 1.02, 1.01, 1.02, 3.0, 3.0])
    selection = select_predictors("duration", ["a"] * 6, {MEAN: mean, "lucky": lucky}, actual)
    assert selection.chosen("a") == MEAN
    assert selection.table["a"]["p_better"]["lucky"] > 0.05
    steady = np.full(6, 1.1)  # closer on every row: 6 of 6 (p = 1/64)
    assert select_predictors("duration", ["a"] * 6, {MEAN: mean, "steady": steady}, actual).chosen("a") == "steady"


def test_categories_without_held_out_rows_are_served_by_the_mean():
    """The small group's choice serves only its own categories; no evidence at all means the mean."""
    rng = np.random.default_rng(0)
    cats = ["s1"] * 3 + ["s2"] * 3 + ["s3"] * 4  # all small (< 5 rows), 10 rows pooled
    actual = rng.uniform(1, 2, 10)
    candidates = {MEAN: actual * 2.0, "model": actual * 1.01}
    selection = select_predictors("duration", cats, candidates, actual)
    assert selection.small == ["s1", "s2", "s3"] and selection.small_choice == "model"
    assert selection.chosen("s2") == "model"
    assert selection.chosen("never-held-out") == MEAN == selection.fallback
    assert Selection.from_dict(selection.to_dict()).chosen("s3") == "model"
