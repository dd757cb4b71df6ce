"""Online correction: finished tasks of this run correct the prediction, shrunk by count, with a clock argument."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskflow.learning.online import (
    Observation,
    OnlineConfig,
    OnlineState,
    corrected,
    log_ratio,
)

pytestmark = pytest.mark.timeout(30)


def test_no_observations_keep_the_prediction():
    assert corrected(3.0, [], now=0.0) == 3.0
    assert OnlineState().factor("x", now=0.0) == 1.0


def test_shrinkage_by_count_converges_to_the_observed_ratio():
    config = OnlineConfig(prior_observations=2)
    factors = []
    for n in (1, 2, 5, 50):
        obs = [Observation(1.0, 3.0, float(t)) for t in range(n)]
        factors.append(corrected(1.0, obs, now=float(n), config=config))
    assert factors[0] == pytest.approx(math.exp(math.log(3) / 3))  # one task: a third of the way (in log space)
    assert factors == sorted(factors) and factors[-1] == pytest.approx(3.0, rel=0.05)


def test_ratio_is_per_task_so_size_differences_cancel():
    # the model knows sizes (predictions 1 s and 10 s); reality is 2x for both
    obs = [Observation(1.0, 2.0, 0.0), Observation(10.0, 20.0, 1.0)] * 10
    assert corrected(5.0, obs, now=2.0) == pytest.approx(10.0, rel=0.1)


def test_outlier_is_clipped():
    obs = [Observation(1.0, 1.0, float(t)) for t in range(9)] + [Observation(1.0, 1e9, 9.0)]
    assert corrected(1.0, obs, now=10.0) < 1.5


def test_half_life_follows_a_change_and_since_ignores_old_tasks():
    obs = [Observation(1.0, 1.0, float(t)) for t in range(50)] + [Observation(1.0, 2.0, 50.0 + t) for t in range(5)]
    flat = corrected(1.0, obs, now=55.0)
    recent = corrected(1.0, obs, now=55.0, config=OnlineConfig(half_life_s=2.0))
    since = corrected(1.0, obs, now=55.0, since=50.0)
    assert flat < 1.1 < recent and since == pytest.approx(2 ** (5 / 7))
    _, n_eff = log_ratio(obs, now=55.0, config=OnlineConfig(half_life_s=2.0))
    assert n_eff < 10  # old tasks hardly count


def test_state_batches_per_category_and_run_median():
    state = OnlineState(OnlineConfig(prior_observations=0.0))
    for t in range(4):
        state.observe("slow", 1.0, 4.0, float(t))
        state.observe("ok", 2.0, 2.0, float(t))
    out = state.correct(["slow", "ok", "new"], np.array([1.0, 3.0, 5.0]), now=5.0)
    assert out.tolist() == pytest.approx([4.0, 3.0, 5.0])
    assert state.run_median("slow") == 4.0 and state.run_median("new") is None


def test_bad_values_are_ignored_and_memory_is_bounded():
    state = OnlineState(OnlineConfig(max_observations=3))
    for t in range(10):
        state.observe("c", 1.0, 2.0, float(t))
    state.observe("c", 0.0, float("nan"), 11.0)
    assert len(state.observations["c"]) == 3
    assert state.factor("c", now=12.0) == pytest.approx(2 ** (2 / 4))  # two usable of the last three, k = 2


def test_simulated_online_quantiles_adapt_the_spread_to_the_run():
    from daskflow.learning.online import simulate_online_quantiles
    from daskflow.learning.quantiles import coverage

    rng = np.random.default_rng(0)
    n = 400
    categories = ["c"] * n
    actual = 3.0 * np.exp(rng.normal(0, 0.6, n))  # this run: 3x slower and much noisier than training said
    predicted = np.ones(n)
    prior_upper_log = np.full(n, 0.1)  # training's spread: p90 = 1.1 x p50
    point, upper = simulate_online_quantiles(categories, np.arange(n, dtype=float), predicted, actual, prior_upper_log)
    assert coverage(predicted * np.exp(prior_upper_log), actual) < 0.1
    assert 0.8 <= coverage(upper[50:], actual[50:]) <= 0.97
    assert np.median(point[50:]) == pytest.approx(3.0, rel=0.15)
