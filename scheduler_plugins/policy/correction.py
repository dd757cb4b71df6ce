"""In-run correction: the durations and peak memory the plan uses, from what this run's tasks cost so far.

Design note
-----------
The plugin keeps an :class:`~daskflow.learning.corrector.OnlineCorrector`
(learning within a run: per category the shrunk mean ``log(actual /
predicted)`` of finished tasks, a drift monitor, the run's residual spread).
After every finished task it copies what that corrector now says about the
task's category into a :class:`CategoryCorrection` - plain data the policy
reads without knowing about the learner:

* ``duration`` / ``peak_memory``: category -> multiplicative factor of the
  served p50;
* ``memory_upper``: category -> ``(n, q)``: the run's ``n`` residuals of
  corrected peak-memory predictions and their upper (p90) quantile ``q``
  (log scale). The p90 used for memory **admission** is the corrected p50
  times ``exp(max((n q + k prior) / (n + k), 0))`` with ``prior = log(p90 /
  p50)`` of the model (its calibrated spread) and ``k =
  spread_prior_rows`` - the rule of
  :meth:`~daskflow.learning.corrector.OnlineCorrector.upper`;
* ``drifted`` / ``memory_drifted``: categories whose duration / peak memory
  changed during the run (a drift alarm): from then on that target is planned
  with the correction whatever the source of its prediction (a model, a mean,
  a default).

Which predictions are corrected (:func:`is_corrected`): model predictions
always; baselines (running means, defaults) only once their category drifted
(until then the plan follows the predictor's running means, which already
learn from this run); the oracle never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scheduler_plugins.policy.model import TaskPrediction

__all__ = ["CategoryCorrection", "admission_peak_memory_bytes", "is_corrected", "planned_peak_memory_bytes"]

#: correction factors are clamped to [1/100, 100] (as the former calibration)
MAX_FACTOR = 100.0


@dataclass(slots=True)
class CategoryCorrection:
    """Per category: the in-run correction of predictions (a snapshot the plugin refreshes per finished task).

    >>> correction = CategoryCorrection(duration={"fit": 2.0})
    >>> correction.factor("fit"), correction.factor("load"), correction.factor("fit", "peak_memory")
    (2.0, None, None)
    """

    duration: dict[str, float] = field(default_factory=dict)  # category -> factor of the served p50 duration
    peak_memory: dict[str, float] = field(default_factory=dict)  # category -> factor of the served p50 peak memory
    memory_upper: dict[str, tuple[int, float]] = field(default_factory=dict)  # category -> (n residuals, log p90 of them)
    drifted: set[str] = field(default_factory=set)  # categories whose duration drifted in this run (demoted)
    memory_drifted: set[str] = field(default_factory=set)  # categories whose peak memory drifted in this run
    spread_prior_rows: float = 10.0  # pseudo-rows of the model's own spread in the p90

    def factor(self, category: str, target: str = "duration") -> float | None:
        """The factor for a category's ``duration`` or ``peak_memory`` (None before its first finished task)."""
        value = (self.duration if target == "duration" else self.peak_memory).get(category)
        return None if value is None else max(1.0 / MAX_FACTOR, min(MAX_FACTOR, value))

    def clear(self) -> None:
        """A new model is served: nothing learned about the old one applies."""
        self.duration.clear()
        self.peak_memory.clear()
        self.memory_upper.clear()
        self.drifted.clear()
        self.memory_drifted.clear()


def is_saturated(correction: CategoryCorrection, category: str) -> bool:
    """Whether a category's duration correction sits at its clamp (the model is off by over ×MAX_FACTOR there).

    The plan cannot trust such a model for that category at all (a sibling
    model served epigenomics' ``map`` at 10⁶ s against ~5 s run): the
    plugin plans it at the category's running mean instead.

    >>> is_saturated(CategoryCorrection(duration={"map": 1e-6, "fit": 0.5}), "map"), is_saturated(CategoryCorrection(duration={"fit": 0.5}), "fit")
    (True, False)
    """
    value = correction.duration.get(category)
    return value is not None and not (1.0 / MAX_FACTOR < value < MAX_FACTOR)


def is_corrected(quality: str, category: str, correction: object, target: str = "duration") -> bool:
    """Whether the plan multiplies a prediction of this quality by its category's ``target`` correction."""
    if quality == "model":
        return True
    drifted = getattr(correction, "drifted" if target == "duration" else "memory_drifted", ())
    return quality != "oracle" and category in drifted


def planned_peak_memory_bytes(prediction: TaskPrediction, correction: CategoryCorrection) -> float:
    """The corrected p50 peak memory of a task (what explain shows next to the p90).

    >>> correction = CategoryCorrection(peak_memory={"fit": 0.5})
    >>> planned_peak_memory_bytes(TaskPrediction(1.0, 4e8, "model", "v1", category="fit"), correction)
    200000000.0
    """
    peak = float(prediction.peak_memory_bytes or 0.0)
    quality = prediction.memory_quality or prediction.quality
    if peak > 0 and is_corrected(quality, prediction.category, correction, "peak_memory"):
        factor = correction.factor(prediction.category, "peak_memory")
        if factor is not None:
            return peak * factor
    return peak


def admission_peak_memory_bytes(prediction: TaskPrediction, correction: CategoryCorrection) -> float:
    """The p90 peak memory placement admits a task with: corrected p50 x the run's (shrunk) spread.

    >>> prediction = TaskPrediction(1.0, 1e8, "model", "v1", category="fit", p90_peak_memory_bytes=2e8)
    >>> round(admission_peak_memory_bytes(prediction, CategoryCorrection()))   # no finished task yet: the model's p90
    200000000
    >>> round(admission_peak_memory_bytes(prediction, CategoryCorrection(memory_upper={"fit": (30, 0.0)})) / 1e6)
    119
    """
    p50 = planned_peak_memory_bytes(prediction, correction)
    if p50 <= 0:
        return p50
    raw = float(prediction.peak_memory_bytes or 0.0)
    ratio = float(prediction.p90_peak_memory_bytes) / raw if raw > 0 and prediction.p90_peak_memory_bytes > 0 else 1.0
    prior = math.log(ratio) if ratio > 0 and math.isfinite(ratio) else 0.0
    n, q = correction.memory_upper.get(prediction.category, (0, 0.0))
    k = correction.spread_prior_rows
    return p50 * math.exp(max((n * q + k * prior) / (n + k), 0.0)) if n + k > 0 else p50
