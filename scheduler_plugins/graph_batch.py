"""What the steering plugin does with one batch of new tasks (``update_graph``).

Design note
-----------
Two steps, both over the scheduler's new (``released``) TaskStates through
:mod:`scheduler_plugins.compat`: ONE batched prediction for the whole batch
(:func:`predict_batch`; XGBoost costs ~1 µs a row in a batch but hundreds for
a single row), and the dispatch order from the pure policy
(:func:`order_batch`: critical-path ranks of the planned durations, user
priorities first). The plugin then sets priorities and applies the hold rule.
"""

from __future__ import annotations

from collections.abc import Hashable, MutableMapping
from typing import Any

from daskflow.daskgraph import annotations_of
from scheduler_plugins import compat
from scheduler_plugins.policy import (
    CategoryCorrection,
    TaskPrediction,
    plan_order,
    planned_duration_s,
)

__all__ = ["order_batch", "predict_batch"]


def predict_batch(
    predictor: Any, new_tasks: list, predictions: MutableMapping[Hashable, TaskPrediction], max_predictions: int,
    model_version: str | None,
) -> bool:
    """Predict ``new_tasks`` in one call and store them in ``predictions``; True when any is more than a default."""
    from daskflow.learning.features import record_from_annotations

    records = []
    plain: dict[str, dict] = {}  # key prefix -> record template of tasks without a daskflow annotation
    for ts in new_tasks:
        deps = compat.dependencies_with_locations(ts)
        annotation = annotations_of(compat.annotations(ts))
        n_dependencies = len(deps)
        dependency_bytes = sum(nbytes for nbytes, _ in deps)
        key = compat.key_of(ts)
        if annotation:
            records.append(record_from_annotations(key, annotation, n_dependencies=n_dependencies,
                                                   dependency_bytes=dependency_bytes, key_prefix=compat.prefix_name(ts)))
            continue
        # A plain Dask task: its record differs from its prefix's only in key and dependencies (cheap per task).
        prefix = compat.prefix_name(ts)
        template = plain.get(prefix)
        if template is None:
            template = plain[prefix] = record_from_annotations(key, annotation, key_prefix=prefix)
        record = dict(template)
        record["key"] = str(key)
        record["n_dependencies"] = n_dependencies
        record["dependency_bytes"] = int(dependency_bytes)
        records.append(record)
    predicted = predictor.predict(records)
    if len(predictions) + len(new_tasks) > max_predictions:
        predictions.clear()  # bounded: drop the old ones rather than grow forever
    durations = _as_list(predicted.duration_s)  # Python floats once, not a numpy scalar per task
    peaks = _as_list(predicted.peak_memory_bytes)
    qualities = _as_list(predicted.quality)
    p90_durations = _as_list(getattr(predicted, "p90_duration_s", None))
    p90_peaks = _as_list(getattr(predicted, "p90_peak_memory_bytes", None))
    memory_qualities = _as_list(getattr(predicted, "memory_quality", None))
    informed = False
    for i, ts in enumerate(new_tasks):
        quality = str(qualities[i])
        informed = informed or quality != "default"
        peak = peaks[i]
        p90_peak = p90_peaks[i] if p90_peaks is not None else 0.0
        predictions[compat.key_of(ts)] = TaskPrediction(
            float(durations[i]), float(peak if peak == peak else 0.0), quality, model_version,  # type: ignore[arg-type]
            run_id=records[i].get("run_id"), category=str(records[i].get("category") or ""),
            p90_duration_s=float(p90_durations[i]) if p90_durations is not None else 0.0,
            p90_peak_memory_bytes=float(p90_peak if p90_peak == p90_peak else 0.0),
            memory_quality=str(memory_qualities[i]) if memory_qualities is not None else "",
        )
    return informed


def _as_list(values: Any) -> list | None:
    """A column of predictions as a plain list (``None`` stays ``None``)."""
    if values is None:
        return None
    tolist = getattr(values, "tolist", None)
    return tolist() if tolist is not None else list(values)


def order_batch(
    new_tasks: list, predictions: MutableMapping[Hashable, TaskPrediction], correction: CategoryCorrection, informed: bool
) -> list:
    """Dispatch order of ``new_tasks``; records each prediction's rank and index."""
    durations = {}
    parents = {}
    user = {}
    tie = {}
    for ts in new_tasks:
        key = compat.key_of(ts)
        durations[key] = planned_duration_s(predictions[key], correction)
        parents[key] = compat.dependency_keys(ts)
        priority = compat.priority(ts) or (0,)
        user[key] = -priority[0]
        tie[key] = priority[1:]
    order, ranks = plan_order(durations, parents, user, tie, informed)
    for index, key in enumerate(order):
        predictions[key] = predictions[key].ordered(ranks[key], index)
    return order
