"""Composite predictor on a synthetic history with known laws: beats the mean, selects per category, gives p90."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from daskflow.learning.composite import CompositeConfig, fit_composite
from daskflow.learning.online import (
    Observation,
    log_ratio,
    prior_observations_from_holdout,
    simulate_online,
)
from daskflow.learning.quantiles import coverage
from daskflow.learning.training import median_ape

pytestmark = pytest.mark.timeout(120)


def runs(n_runs: int, seed: int, shift: float = 1.0) -> pd.DataFrame:
    """'scan' follows size (duration = 1e-6 * size), 'flat' is constant 2 s, 'rare' has 2 tasks per run."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(n_runs):
        for i in range(80):
            category = "scan" if i % 2 else "flat"
            category = "rare" if i in (0, 40) else category
            size = int(10 ** rng.uniform(5, 8))
            duration = (1e-6 * size if category == "scan" else 2.0) * shift * rng.lognormal(0, 0.15)
            rows.append({"run_id": f"s{seed}-r{run}", "recorded_at": run * 1000.0 + i, "key": f"{category}-{run}-{i}",
                         "category": category, "kind": "replay", "input_bytes": size, "outcome": "success",
                         "duration_s": duration, "peak_memory_bytes": (50.0 * size if category == "scan" else 3e7) * rng.lognormal(0, 0.1)})
    return pd.DataFrame(rows)


def test_composite_beats_the_mean_and_selects_per_category():
    train, test = runs(3, seed=0), runs(1, seed=1)
    composite = fit_composite(train, CompositeConfig(rounds=30))
    served = composite.predict(test)
    for target, column in (("duration", "duration_s"), ("peak_memory", "peak_memory_bytes")):
        actual = test[column].to_numpy()
        mean = composite.candidates(test)[target]["mean"]
        assert median_ape(served[target]["p50"], actual) < 0.5 * median_ape(mean, actual)
        assert 0.8 <= coverage(served[target]["p90"], actual) <= 1.0
        assert np.all(served[target]["p90"] >= served[target]["p50"])
    choice = composite.selection["duration"]
    assert choice.chosen("scan") in ("scaling", "model", "blend")
    assert composite.describe()["selection"]["duration"]["target"] == "duration"


def test_online_correction_follows_a_run_shifted_as_a_whole():
    train, test = runs(3, seed=0), runs(1, seed=2, shift=1.8)  # this run is 1.8x slower everywhere
    composite = fit_composite(train, CompositeConfig(rounds=20, use_model=False))
    served = composite.predict(test)["duration"]
    actual = test["duration_s"].to_numpy()
    online = simulate_online(test["category"].tolist(), test["recorded_at"].to_numpy(), served["p50"], actual,
                             priors=composite.online_priors["duration"])
    assert median_ape(online, actual) < 0.6 * median_ape(served["p50"], actual)


def test_prior_strength_is_large_for_scatter_and_small_for_shift():
    rng = np.random.default_rng(0)
    cats = ["shifted"] * 30 + ["scattered"] * 30 + [f"ok{i}" for i in range(5) for _ in range(30)]
    residual = np.concatenate([0.7 + rng.normal(0, 0.1, 30), rng.normal(0, 0.8, 30), rng.normal(0, 0.1, 150)])
    priors = prior_observations_from_holdout(cats, np.ones(210), np.exp(residual))
    assert priors["shifted"] <= 1.5 and priors["scattered"] > 3
    r, _ = log_ratio([Observation(1.0, 2.0, 0.0)], now=1.0, prior_observations=priors["shifted"])
    assert r > 0.3  # one task already moves a shifted category most of the way


def test_the_mean_averages_measured_durations_not_the_noise_floor():
    """Sub-ms tasks are floored to 1 ms for the model, but the served per-category mean is Dask's: of what was measured."""
    rows = pd.DataFrame({"run_id": ["r1"] * 4 + ["r2"] * 4, "recorded_at": np.arange(8.0), "key": [f"k{i}" for i in range(8)],
                         "category": ["tiny"] * 8, "kind": "replay", "input_bytes": 100, "outcome": "success",
                         "duration_s": [2e-4, 2e-4, 2e-4, 5.4e-3] * 2, "peak_memory_bytes": [1e3, 1e3, 1e3, 1e6] * 2})
    composite = fit_composite(rows, CompositeConfig(rounds=5, use_model=False))
    means = composite.means.predict_baseline(rows.head(1))
    assert means.duration_s[0] == pytest.approx(1.5e-3)  # (3 x 0.2 ms + 5.4 ms) / 4, not (3 x 1 ms + 5.4 ms) / 4 = 2.1 ms
    assert means.peak_memory_bytes[0] == pytest.approx((3 * 2**16 + 1e6) / 4)  # peaks below 64 KiB are not resolved: floored
    assert composite.manifest()["baseline"]["category_means"]["tiny"]["duration_s"] == pytest.approx(1.5e-3)
