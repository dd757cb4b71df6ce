"""Prediction error metrics: the one definition the trainer, the replay harness and ``explain`` share.

Design note
-----------
daskflow reports prediction quality as the *median absolute percentage error*
(median APE) of predicted against actual values, over the pairs whose actual
value is positive and whose prediction is a finite number (an actual of 0
has no percentage error; a missing prediction is not an error of the model).
Training (:mod:`daskflow.learning.training`), the replay metrics
(:mod:`daskflow.replay.metrics`) and ``daskflow explain``
(:mod:`daskflow.explain`) all call :func:`median_ape` (the accuracy benchmark
pools :func:`absolute_percentage_errors`), so the error a model is
selected by is the error a replay and a run summary report.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def absolute_percentage_errors(predicted: Iterable[float | None], actual: Iterable[float | None]) -> np.ndarray:
    """``|predicted - actual| / actual`` for the pairs with ``actual > 0`` and a finite prediction.

    Accepts arrays or sequences (``None`` counts as missing). Pool these over
    several sets before taking one median.

    >>> absolute_percentage_errors([2.0, 1.0, None], [1.0, 0.0, 3.0]).tolist()
    [1.0]
    """
    predicted = np.asarray(predicted if hasattr(predicted, "__array__") else list(predicted), dtype="float64")
    actual = np.asarray(actual if hasattr(actual, "__array__") else list(actual), dtype="float64")
    if predicted.shape != actual.shape:
        raise ValueError(f"{predicted.shape[0]} predictions for {actual.shape[0]} actual values; pass aligned sequences")
    mask = np.isfinite(actual) & (actual > 0) & np.isfinite(predicted)
    return np.abs(predicted[mask] - actual[mask]) / actual[mask]


def median_ape(predicted: Iterable[float | None], actual: Iterable[float | None]) -> float | None:
    """Median of :func:`absolute_percentage_errors`; None when no pair qualifies.

    >>> median_ape([2.0, 1.0, 3.0], [1.0, 1.0, 2.0])
    0.5
    >>> median_ape([1.0, None], [0.0, 2.0]) is None
    True
    """
    errors = absolute_percentage_errors(predicted, actual)
    return float(np.median(errors)) if errors.size else None
