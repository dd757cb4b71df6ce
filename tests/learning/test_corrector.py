"""OnlineCorrector: the pure API the steering adapter calls per finished task (observe) and per plan (correct)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskflow.learning.corrector import OnlineCorrector
from daskflow.learning.drift import Baseline
from daskflow.learning.predictor import Predictions

pytestmark = pytest.mark.timeout(60)


def test_without_observations_predictions_pass_through():
    corrector = OnlineCorrector()
    assert np.array_equal(corrector.correct(["a", "b"], np.array([1.0, 3.0]), now=0.0), [1.0, 3.0])
    assert corrector.observe("a", predicted=0.0, actual=1.0, now=0.0) is None  # unusable rows are ignored
    assert corrector.observe("a", predicted=1.0, actual=float("nan"), now=0.0) is None


def test_a_category_shifted_as_a_whole_is_corrected_others_not():
    corrector = OnlineCorrector()
    for t in range(10):
        corrector.observe("slow", 1.0, 3.0, now=float(t))
        corrector.observe("fine", 1.0, 1.0, now=float(t))
    corrected = corrector.correct(["slow", "fine", "new"], np.array([2.0, 2.0, 2.0]), now=10.0)
    assert corrected[0] > 2.0 * 2.0 and corrected[1] == pytest.approx(2.0) and corrected[2] == 2.0
    with pytest.raises(ValueError, match="target"):
        corrector.observe("slow", 1.0, 1.0, 0.0, target="runtime")


def test_drift_event_once_and_demoted_category_follows_the_run_since_the_change():
    corrector = OnlineCorrector()
    corrector.drift["duration"].baselines["load"] = Baseline(0.0, 0.1)
    events = [corrector.observe("load", 1.0, 1.0, now=float(t)) for t in range(20)]
    events += [corrector.observe("load", 1.0, 2.0, now=float(t)) for t in range(20, 40)]
    fired = [e for e in events if e]
    assert len(fired) == 1 and fired[0]["category"] == "load" and fired[0]["target"] == "duration"
    assert fired[0]["changed_at"] >= 19.0 and "load" in corrector.drifted()
    # the first 20 tasks (before the change) no longer dilute the estimate
    assert corrector.correct(["load"], np.array([1.0]), now=40.0)[0] == pytest.approx(2.0, rel=0.05)
    assert list(corrector.events) == fired


def test_correct_predictions_scales_both_targets_and_the_p90_adapts_to_the_run():
    corrector = OnlineCorrector()
    rng = np.random.default_rng(0)
    for t in range(40):  # this run scatters far more than the model's spread (x1.1) says
        corrector.observe("a", 1.0, float(np.exp(rng.normal(0, 0.8))), now=float(t))
        corrector.observe("a", 100.0, 200.0, now=float(t), target="peak_memory")
    served = Predictions(np.array([1.0]), np.array([100.0]), np.array(["model"], dtype=object), np.array(["model"], dtype=object),
                         "v1", np.array([1.1]), np.array([110.0]))
    out = corrector.correct_predictions(["a"], served, now=40.0)
    assert out.peak_memory_bytes[0] == pytest.approx(200.0, rel=0.1)
    assert out.p90_peak_memory_bytes[0] >= out.peak_memory_bytes[0]
    assert out.p90_duration_s[0] / out.duration_s[0] > 1.5  # widened from 1.1 toward the run's own spread
    assert out.model_version == "v1" and served.duration_s[0] == 1.0  # the input is not modified


def test_from_predictor_takes_priors_and_baselines_and_reset_forgets(tmp_path):
    from daskflow.learning.predictor import Predictor
    from daskflow.learning.training import train_models
    from tests.learning.test_training import synthetic_history

    train_models(synthetic_history(runs=2, tasks=60), str(tmp_path / "m"), rounds=10)
    predictor = Predictor.load(str(tmp_path / "m"))
    corrector = OnlineCorrector.from_predictor(predictor)
    assert corrector.model_version == predictor.model_version
    assert corrector.online["duration"].priors == predictor.composite.online_priors["duration"]
    assert set(corrector.drift["duration"].baselines) == set(predictor.composite.drift_baselines["duration"])
    corrector.observe("parse", 1.0, 2.0, now=0.0)
    corrector.reset(predictor)
    assert not corrector.online["duration"].observations
    bare = OnlineCorrector.from_predictor(Predictor(url=str(tmp_path / "none")))  # no model: defaults, no error
    assert bare.online["duration"].priors == {} and bare.model_version is None


def test_scalar_correct_one_equals_the_batch_and_follows_new_observations():
    corrector = OnlineCorrector()
    corrector.observe("a", 1.0, 2.0, now=0.0)
    first = corrector.correct_one("a", 3.0, now=1.0)
    assert first == pytest.approx(corrector.correct(["a"], np.array([3.0]), now=1.0)[0])
    corrector.observe("a", 1.0, 2.0, now=1.0)  # the cached factor is refreshed by the next observation
    assert corrector.correct_one("a", 3.0, now=2.0) > first


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 100.0), st.floats(0.01, 100.0)), min_size=1, max_size=120), st.integers(1, 30))
def test_upper_quantile_from_the_sorted_window_equals_a_fresh_sort(tasks, max_residuals):
    """The residual window kept sorted as tasks finish gives exactly the conformal quantile of the window."""
    from dataclasses import replace

    from daskflow.learning.corrector import CorrectorConfig
    from daskflow.learning.quantiles import conformal_quantile

    corrector = OnlineCorrector(replace(CorrectorConfig(), max_residuals=max_residuals))
    for i, (predicted, actual) in enumerate(tasks):
        corrector.observe("c", predicted, actual, float(i))
        n, q = corrector.upper_stats("c")
        window = corrector.residuals["duration"]["c"]
        assert n == len(window) <= max_residuals
        assert q == conformal_quantile(np.asarray(window), corrector.config.upper)


def test_one_far_off_task_cannot_pull_its_category_before_a_drift_alarm():
    """Memory of srasearch's fasterq_dump: one 2 MB peak among ~30 MB ones (log ratio -2.6, baseline sigma 0.15)."""
    from daskflow.learning.online import OnlineState

    class Composite:
        online_priors: dict = {}
        drift_baselines = {"duration": {"dump": Baseline(0.0, 0.15)}, "peak_memory": {}}

    class Served:
        composite = Composite()
        model_version = "v1"
        manifest = None

    corrector = OnlineCorrector.from_predictor(Served())
    assert corrector.online["duration"].bound("dump") == pytest.approx(2.5 * 0.15)
    corrector.observe("dump", 30.0, 30.0 * 0.9, now=0.0)
    corrector.observe("dump", 30.0, 2.2, now=1.0)
    # clipped at 2.5 sigmas: the category moves by ~x0.89, not by x0.51 as with the plain mean of log ratios
    assert corrector.factor("dump", now=2.0) > 0.7
    plain = OnlineState()
    plain.observe("dump", 30.0, 27.0, 0.0)
    plain.observe("dump", 30.0, 2.2, 1.0)
    assert plain.factor("dump", now=2.0) < 0.55
    # after an alarm the run's tasks since the change count in full
    for t in range(2, 30):
        corrector.observe("dump", 30.0, 60.0, now=float(t))
    assert "dump" in corrector.drifted() and corrector.factor("dump", now=30.0) > 1.6  # the far-off task counts in full now
