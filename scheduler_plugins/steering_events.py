"""What the steering plugin reports: one decision event per decision, and its summary counters.

Design note
-----------
Every decision is a :class:`~daskflow.contracts.DecisionEvent` built here
from the plugin's state (:func:`decision_event`: the prediction of the task
it concerns, as served and as planned) and logged by the plugin on
:data:`~daskflow.contracts.STEERING_TOPIC`. The served prediction is shown as
it came from the predictor: ``predicted_duration_s`` and
``predicted_peak_memory_bytes`` are the p50, ``p90_duration_s`` the
predictor's p90; what the plan made of it is beside it: ``calibration`` is
the in-run correction factor of the p50 duration (when the plan applies
one), ``p90_peak_memory_bytes`` the corrected p90 that memory admission used,
and ``drifted`` says the category's cost changed in this run. Pure: time and
the model version are arguments.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from daskflow.contracts import DecisionEvent
from scheduler_plugins.policy import admission_peak_memory_bytes, is_corrected
from scheduler_plugins.steering_state import SteeringState

__all__ = ["decision_event", "summary_of"]



#: the largest byte count an event carries: events travel as msgpack, whose integers stop at 2**64, and one
#: out-of-range value failed the scheduler's whole batched message (the run lost its scheduler)
MAX_WIRE_BYTES = 2**62


def wire_bytes(value: float) -> int:
    """A byte count for an event: an int in ``[0, MAX_WIRE_BYTES]`` (NaN: 0; larger, infinite: the cap).

    >>> wire_bytes(1.5e9), wire_bytes(float("inf")), wire_bytes(1e30) == MAX_WIRE_BYTES, wire_bytes(float("nan"))
    (1500000000, 4611686018427387904, True, 0)
    """
    value = float(value)
    if value != value or value <= 0:
        return 0
    return int(value) if value < MAX_WIRE_BYTES else MAX_WIRE_BYTES

def decision_event(state: SteeringState, action: str, key: Hashable | None, fields: dict[str, Any],
                   model_version: str | None, now: float) -> DecisionEvent:
    """The event for one decision (``fields`` are consumed: the named ones go to their slots, the rest is added)."""
    prediction = state.predictions.get(key) if key is not None else None
    run_id = fields.pop("run_id", None)
    event: DecisionEvent = {
        "key": None if key is None else str(key),
        "run_id": run_id if run_id is not None or prediction is None else prediction.run_id,
        "action": action,  # type: ignore[typeddict-item]
        "worker": fields.pop("worker", None),
        "predicted_duration_s": None if prediction is None else round(float(prediction.duration_s), 6),
        "predicted_peak_memory_bytes": None if prediction is None else wire_bytes(prediction.peak_memory_bytes),
        "quality": None if prediction is None else prediction.quality,
        "model_version": model_version,
        "alternatives": fields.pop("alternatives", []),
        "reason": fields.pop("reason", None),
        "time": now,
    }
    if prediction is not None:
        event["rank_s"] = round(float(prediction.rank_s), 6)
        event["priority_index"] = prediction.priority_index
        correction = state.correction
        if prediction.p90_duration_s:
            event["p90_duration_s"] = round(float(prediction.p90_duration_s), 6)
        if prediction.peak_memory_bytes:
            event["p90_peak_memory_bytes"] = wire_bytes(admission_peak_memory_bytes(prediction, correction))  # what admission used
        if is_corrected(prediction.quality, prediction.category, correction):
            factor = correction.factor(prediction.category)
            if factor is not None:
                event["calibration"] = round(factor, 4)  # the in-run correction of the served p50 duration
        if prediction.category in correction.drifted:
            event["drifted"] = True
        if prediction.category in correction.memory_drifted:
            event["memory_drifted"] = True
    event.update(fields)  # type: ignore[typeddict-item]
    return event


def summary_of(state: SteeringState, mode: str, model_version: str | None) -> dict[str, Any]:
    """Counts of decisions, fallbacks, prediction error and drift so far."""
    observed = state.counts.get("observed", 0)
    return {
        "mode": mode,
        "model_version": model_version,
        "fallback_count": state.fallback_count,
        "counts": {k: v for k, v in state.counts.items() if k not in ("observed", "abs_error_ms")},
        "observed": observed,
        "mean_abs_error_s": (state.counts.get("abs_error_ms", 0) / 1000 / observed) if observed else None,
        "dispatch_latency_s": state.latency.estimate_s,
        "held_now": len(state.held_since),
        "ready_now": len(state.ready),
        "drifted": sorted(state.correction.drifted),
        "memory_drifted": sorted(state.correction.memory_drifted),
    }
