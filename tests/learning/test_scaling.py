"""Scaling laws: y = a * size^b per category is recovered; few rows shrink toward the pooled slope."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from daskflow.learning.scaling import (
    ScalingConfig,
    ScalingModel,
    fit_scaling,
    input_size_bytes,
)

pytestmark = pytest.mark.timeout(60)

LAWS = {"parse": (2e-6, 0.8), "sort": (1e-7, 1.3), "index": (5e-3, 0.25)}  # duration_s = a * size^b


def law_history(rows_per_category: int = 60, noise: float = 0.1, seed: int = 0, laws=LAWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for category, (a, b) in laws.items():
        for _ in range(rows_per_category):
            size = 10 ** rng.uniform(4, 9)
            rows.append({"category": category, "input_bytes": size, "dependency_bytes": 0,
                         "duration_s": a * size**b * rng.lognormal(0, noise),
                         "peak_memory_bytes": 300 * size * rng.lognormal(0, noise)})
    return pd.DataFrame(rows)


def test_recovers_known_power_law_per_category():
    model = fit_scaling(law_history(), "duration")
    for category, (a, b) in LAWS.items():
        law = model.laws[category]
        assert law.own_slope == pytest.approx(b, abs=0.05)
        # the served slope is shrunk a little toward the pooled one, the intercept follows
        assert law.slope == pytest.approx(b, abs=0.1)
    test = law_history(seed=1)
    predicted = model.predict(test)
    truth = np.array([LAWS[c][0] * s ** LAWS[c][1] for c, s in zip(test["category"], test["input_bytes"])])
    assert np.median(np.abs(predicted / truth - 1)) < 0.05


def test_peak_memory_law_and_floor():
    model = fit_scaling(law_history(), "peak_memory")
    assert model.laws["parse"].own_slope == pytest.approx(1.0, abs=0.05)
    tiny = pd.DataFrame({"category": ["x"] * 3, "input_bytes": [1, 2, 3], "peak_memory_bytes": [0.0, 10.0, 1000.0]})
    floored = fit_scaling(tiny, "peak_memory")
    assert floored.predict(tiny) == pytest.approx([2.0**16] * 3)  # all below the 64 KiB noise floor


def test_few_rows_shrink_toward_pooled_slope_and_category_level():
    history = law_history(laws={"a": (1e-6, 1.0), "b": (1e-5, 1.0)})
    rng = np.random.default_rng(3)
    sizes = [1e6, 1.1e6]  # two rows, nearly the same size: its own slope is not identifiable
    few = pd.DataFrame({"category": "c", "input_bytes": sizes, "duration_s": [4e-4 * s * rng.lognormal(0, 0.05) for s in sizes]})
    model = fit_scaling(pd.concat([history, few], ignore_index=True), "duration")
    assert model.pooled_slope == pytest.approx(1.0, abs=0.05)
    law = model.laws["c"]
    assert law.rows == 2 and law.own_slope is None and law.slope == pytest.approx(model.pooled_slope)
    # level from its own rows (the mean we must beat), scaling from the pooled slope
    assert model.predict(pd.DataFrame({"category": ["c"], "input_bytes": [1e8]}))[0] == pytest.approx(4e-4 * 1e8, rel=0.15)


def test_shrinkage_weight_follows_the_precision_of_the_own_slope():
    history = law_history(laws={"a": (1e-6, 1.0), "b": (1e-6, 0.9), "c": (1e-6, 1.1)}, noise=0.1)
    rng = np.random.default_rng(5)
    sizes = np.array([1e6, 1.5e6, 2.2e6])  # three noisy rows over a narrow size range, true slope 0.3
    few = pd.DataFrame({"category": "d", "input_bytes": sizes, "duration_s": 1e-2 * sizes**0.3 * rng.lognormal(0, 0.3, 3)})
    model = fit_scaling(pd.concat([history, few], ignore_index=True), "duration")
    many, d = model.laws["a"], model.laws["d"]
    assert many.weight > 0.95 and many.slope == pytest.approx(1.0, abs=0.05)
    assert d.own_slope is not None and d.weight < 0.5  # mostly the pooled slope
    assert d.slope == pytest.approx(d.weight * d.own_slope + (1 - d.weight) * model.pooled_slope)
    # a larger prior sd lets the same rows count more
    loose = fit_scaling(pd.concat([history, few], ignore_index=True), "duration", ScalingConfig(min_slope_sd=2.0)).laws["d"]
    assert loose.weight > d.weight


def test_constant_size_category_is_its_median_and_unseen_is_nan():
    rows = pd.DataFrame({"category": ["k"] * 5, "input_bytes": [100] * 5, "duration_s": [1.0, 2.0, 3.0, 4.0, 50.0]})
    model = fit_scaling(rows, "duration")
    out = model.predict(pd.DataFrame({"category": ["k", "new"], "input_bytes": [100, 100]}))
    assert out[0] == pytest.approx(3.0)
    assert math.isnan(out[1])


def test_outliers_do_not_move_the_slope():
    history = law_history(laws={"a": (1e-6, 1.0)})
    history.loc[:5, "duration_s"] *= 1000  # six stragglers (10 %)
    assert fit_scaling(history, "duration").laws["a"].own_slope == pytest.approx(1.0, abs=0.1)


def test_round_trip_and_weights_exclude_rows():
    history = law_history()
    weights = np.ones(len(history))
    weights[history["category"] == "sort"] = 0
    model = fit_scaling(history, "duration", weights=weights)
    assert "sort" not in model.laws
    again = ScalingModel.from_dict(model.to_dict())
    assert np.allclose(again.predict(history), model.predict(history), equal_nan=True)


def test_input_size_adds_dependency_bytes_and_ignores_missing():
    frame = pd.DataFrame({"input_bytes": [10, None], "dependency_bytes": [5, 7]})
    assert input_size_bytes(frame).tolist() == [15.0, 7.0]
