"""One prediction-error metric: training, replay metrics and explain share it."""

import doctest

import numpy as np
import pytest

from daskflow.learning import metrics
from daskflow.learning.metrics import absolute_percentage_errors, median_ape


def test_docstring_examples_run():
    assert doctest.testmod(metrics).failed == 0


def test_training_replay_and_explain_use_the_same_median_ape():
    from daskflow import explain
    from daskflow.learning import training
    from daskflow.replay import harness
    from daskflow.replay import metrics as replay_metrics

    assert training.median_ape is median_ape
    assert replay_metrics.median_ape is median_ape and harness.median_ape is median_ape
    assert explain.median_ape is median_ape


def test_missing_predictions_and_zero_truths_are_skipped():
    assert median_ape([1.0, None, 3.0, float("nan")], [1.0, 2.0, 2.0, 1.0]) == pytest.approx(0.25)
    assert median_ape(np.array([1.0, 3.0, 2.0]), np.array([1.0, 2.0, 0.0])) == pytest.approx(0.25)
    assert median_ape([], []) is None
    assert absolute_percentage_errors([1.0], [0.0]).size == 0


def test_misaligned_inputs_fail_loudly():
    with pytest.raises(ValueError, match="2 predictions for 1 actual"):
        median_ape([1.0, 2.0], [1.0])
