"""Scheduler-side probes used by the replay harness.

Small functions sent with ``Client.run_on_scheduler`` (they take the
scheduler as the ``dask_scheduler`` keyword) and one tiny scheduler plugin,
:class:`ReplayWatch`, that counts workers removed and paused during a run.
They only read scheduler state, except :func:`reset_prefix_estimates`, which
forgets Dask's per-prefix duration averages so that every replay on a reused
cluster starts like a fresh stock Dask. Scheduler internals are reached through
:mod:`daskflow.compat`; plugins are found by their names in
:mod:`daskflow.contracts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daskflow import compat
from daskflow.contracts import REPLAY_WATCH_PLUGIN, STEERING_PLUGIN

WATCH_NAME = REPLAY_WATCH_PLUGIN

try:
    from distributed.diagnostics.plugin import SchedulerPlugin as _SchedulerPlugin
except ImportError:  # pragma: no cover
    _SchedulerPlugin = object  # type: ignore[assignment,misc]


class ReplayWatch(_SchedulerPlugin):  # type: ignore[misc,valid-type]
    """Counts workers removed and workers paused (scheduler plugin, name ``daskflow-replay-watch``)."""

    name = WATCH_NAME

    def __init__(self) -> None:
        self.workers_removed = 0
        self.worker_pauses = 0

    def remove_worker(self, scheduler, worker: str, *, stimulus_id: str | None = None, **kwargs: Any) -> None:
        self.workers_removed += 1

    def log_event(self, topic: str, msg: Any) -> None:
        if isinstance(msg, dict) and msg.get("action") == "worker-status-change" and msg.get("status") == "paused":
            self.worker_pauses += 1


def watch_counts(dask_scheduler=None) -> dict[str, int]:
    watch = compat.plugin(dask_scheduler, WATCH_NAME)
    if watch is None:
        return {"workers_removed": 0, "worker_pauses": 0}
    return {"workers_removed": watch.workers_removed, "worker_pauses": watch.worker_pauses}


def scheduler_state(dask_scheduler=None) -> dict[str, Any]:
    steering = compat.plugin(dask_scheduler, STEERING_PLUGIN)
    return {
        "plugins": compat.plugin_names(dask_scheduler),
        "steering_mode": getattr(steering, "mode", None) if steering is not None else None,
        "model_version": getattr(steering, "model_version", None) if steering is not None else None,
        "fallback_count": getattr(steering, "fallback_count", None) if steering is not None else None,
        "model_url": _model_url_of(steering),
    }


def _model_url_of(steering: Any) -> str | None:
    if steering is None:
        return None
    url = getattr(getattr(steering, "predictor", None), "url", None) or getattr(steering, "model_url", None)
    return str(url) if url else None


def reset_prefix_estimates(prefixes: list[str], dask_scheduler=None) -> int:
    """Forget Dask's per-prefix duration averages so a reused cluster starts fresh."""
    return sum(1 for name in prefixes if compat.reset_prefix_duration(dask_scheduler, name))


def count_live_keys(keys: list[str], dask_scheduler=None) -> int:
    return sum(1 for key in keys if compat.has_task(dask_scheduler, key))


def fetch_predictions(keys: list[str], dask_scheduler=None) -> dict[str, dict[str, Any]] | None:
    """``{key: {duration_s, peak_memory_bytes, quality}}`` from the steering plugin, or None."""
    steering = compat.plugin(dask_scheduler, STEERING_PLUGIN)
    if steering is None:
        return None
    predictions = getattr(steering, "predictions", None) or {}
    found: dict[str, dict[str, Any]] = {}
    for key in keys:
        prediction = predictions.get(key)
        if prediction is None:
            continue
        found[key] = {name: _field(prediction, name) for name in ("duration_s", "peak_memory_bytes", "quality")}
    return found


def _field(obj: Any, name: str) -> Any:
    value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    if hasattr(value, "item"):  # numpy scalar -> plain Python
        value = value.item()
    return value
