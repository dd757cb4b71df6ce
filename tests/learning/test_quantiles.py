"""Conformal spread: p90 coverage on fresh held-out rows is 85-95 %, per category and pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from daskflow.learning.quantiles import (
    SpreadConfig,
    SpreadModel,
    conformal_quantile,
    coverage,
    fit_spread,
)
from daskflow.learning.scaling import fit_scaling

pytestmark = pytest.mark.timeout(60)

NOISE = {"tight": 0.05, "loose": 0.6, "skewed": 0.3}


def rows(n_per_category: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for category, sigma in NOISE.items():
        for _ in range(n_per_category):
            size = 10 ** rng.uniform(5, 8)
            noise = rng.lognormal(0, sigma) if category != "skewed" else np.exp(rng.exponential(sigma))  # one-sided tail
            out.append({"category": category, "input_bytes": size, "duration_s": 1e-6 * size * noise})
    return pd.DataFrame(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p90_coverage_on_held_out_runs(seed):
    # calibration of 150 rows per category: the coverage of a conformal bound on n rows varies by ~sqrt(0.09 / n)
    train, calibration, test = rows(80, seed), rows(150, seed + 100), rows(300, seed + 200)
    law = fit_scaling(train, "duration")
    spread = fit_spread("duration", calibration["category"], law.predict(calibration), calibration["duration_s"])
    p50, p90 = spread.quantiles(test["category"].tolist(), law.predict(test))
    actual = test["duration_s"].to_numpy()
    assert 0.85 <= coverage(p90, actual) <= 0.95
    for category in NOISE:  # per category too, not only pooled
        mask = (test["category"] == category).to_numpy()
        assert 0.80 <= coverage(p90[mask], actual[mask]) <= 0.97
    assert 0.4 <= coverage(p50, actual) <= 0.6
    assert np.all(p90 >= p50)
    # the spread follows each category's noise
    assert spread.offsets("loose").q90 > spread.offsets("skewed").q90 > spread.offsets("tight").q90


def test_unknown_category_gets_pooled_and_no_residuals_get_default():
    spread = fit_spread("duration", ["a"] * 20, np.ones(20), np.linspace(0.5, 2.0, 20))
    assert spread.offsets("zzz") is spread.pooled
    empty = fit_spread("duration", [], np.array([]), np.array([]))
    p50, p90 = empty.quantiles(["x"], np.array([1.0]))
    assert p50[0] == 1.0 and p90[0] == pytest.approx(2.0)
    assert SpreadModel.from_dict(spread.to_dict()).offsets("a") == spread.offsets("a")


def test_few_residuals_shrink_toward_pooled():
    rng = np.random.default_rng(0)
    cats = ["big"] * 200 + ["few"] * 2
    actual = np.concatenate([rng.lognormal(0, 0.5, 200), [1.0, 1.0]])
    spread = fit_spread("duration", cats, np.ones(202), actual, SpreadConfig(prior_rows=10))
    few = spread.offsets("few")
    assert few.rows == 2 and spread.pooled.q90 * 0.6 < few.q90 <= spread.pooled.q90 * 1.1  # not the two rows (spread 0)


def test_conformal_quantile_is_conservative():
    assert conformal_quantile(np.arange(1.0, 101.0), 0.9) == 91.0
    assert conformal_quantile(np.array([1.0, 2.0]), 0.9) == 2.0
