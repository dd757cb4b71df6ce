"""Prediction quality of a steered replay: model and baseline vs the true scaled costs.

The steering plugin's predictions for the replayed keys are compared with the
trace's scaled true costs (duration, and peak memory where the trace has it)
as the median absolute percentage error. The baseline is Dask's own kind of
estimate, the per-category mean, taken from the model's training history: the
``baseline.category_means`` of the model manifest, or a history dataset.
"""

from __future__ import annotations

import logging
from typing import Any

from daskflow.learning.metrics import median_ape
from daskflow.replay.trace import Trace

logger = logging.getLogger(__name__)

#: The result fields :func:`prediction_errors` fills in.
ERROR_FIELDS = ("duration_median_ape", "baseline_duration_median_ape", "memory_median_ape", "baseline_memory_median_ape")


def baseline_from_manifest(model_url: str | None) -> dict[str, tuple[float, float | None]] | None:
    """Per-category means of the model's training history, as stored in its ``manifest.json``."""
    if not model_url:
        return None
    try:
        import json

        import fsspec.core

        fs, root = fsspec.core.url_to_fs(str(model_url))
        with fs.open(root.rstrip("/") + "/manifest.json", "rb") as f:
            manifest = json.load(f)
        means = manifest["baseline"]["category_means"]
    except Exception:  # noqa: BLE001 - fall back to the history
        return None
    return {
        str(category): (float(entry["duration_s"]), entry.get("peak_memory_bytes"))
        for category, entry in means.items()
        if entry.get("duration_s") is not None
    }


def baseline_from_history(history_url: str | None, exclude_run_ids: set[str]) -> dict[str, tuple[float, float | None]] | None:
    """Per-category mean (duration_s, peak_memory_bytes) from a history dataset, or None."""
    if not history_url:
        return None
    try:
        from daskflow.learning.history import read_history

        frame = read_history(history_url)
    except Exception as exc:  # noqa: BLE001 - the baseline is optional
        logger.warning("daskflow replay: no baseline, reading history %s failed: %s", history_url, exc)
        return None
    if frame is None or len(frame) == 0 or "category" not in frame or "duration_s" not in frame:
        return None
    if "run_id" in frame:
        frame = frame[~frame["run_id"].isin(sorted(exclude_run_ids))]
    if len(frame) == 0:
        return None
    memory_column = "peak_memory_bytes" if "peak_memory_bytes" in frame else None
    means: dict[str, tuple[float, float | None]] = {}
    for category, group in frame.groupby("category"):
        memory = float(group[memory_column].dropna().mean()) if memory_column and group[memory_column].notna().any() else None
        means[str(category)] = (float(group["duration_s"].mean()), memory)
    return means


def prediction_errors(
    trace: Trace,
    keys: list[str],
    categories: list[str],
    memory_scale: float,
    predictions: dict[str, dict[str, Any]],
    baseline: dict[str, tuple[float, float | None]] | None,
) -> dict[str, float | None]:
    from daskflow.learning.predictor import default_costs

    default_duration_s, default_memory = default_costs()
    true_d, pred_d, base_d, true_m, pred_m, base_m = [], [], [], [], [], []
    for key, category, task in zip(keys, categories, trace.tasks):
        prediction = predictions.get(key)
        if prediction is None:
            continue
        mean_d, mean_m = (baseline or {}).get(category, (default_duration_s, default_memory))
        true_d.append(task.runtime_s)
        pred_d.append(float(prediction.get("duration_s") or 0.0))
        base_d.append(mean_d)
        if task.memory_bytes is not None:
            true_m.append(task.memory_bytes * memory_scale)
            pred_m.append(float(prediction.get("peak_memory_bytes") or 0.0))
            base_m.append(mean_m if mean_m is not None else default_memory)
    return {
        "duration_median_ape": median_ape(pred_d, true_d),
        "baseline_duration_median_ape": median_ape(base_d, true_d) if baseline is not None else None,
        "memory_median_ape": median_ape(pred_m, true_m),
        "baseline_memory_median_ape": median_ape(base_m, true_m) if baseline is not None else None,
    }
