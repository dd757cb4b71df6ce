"""Reading what steering decided and what tasks cost: from the scheduler's plugins or the history dataset.

Design note
-----------
The functions whose names start with ``_plugin`` / ``_recent`` run *on the
scheduler* (``client.run_on_scheduler``) and find the plugins by name
(:func:`daskflow.compat.plugin`, names from :mod:`daskflow.contracts`);
daskflow never imports ``scheduler_plugins``. :func:`fetch_decisions` falls
back on the scheduler's event log when the steering plugin is gone;
:func:`fetch_actuals` falls back on the history dataset. Reads only: nothing
here changes the scheduler. :mod:`daskflow.explain` turns what is read into a
story or a summary.
"""

from __future__ import annotations

from collections.abc import Mapping

from daskflow import compat
from daskflow.contracts import RECORDER_PLUGIN, STEERING_PLUGIN, STEERING_TOPIC, DecisionEvent

__all__ = ["fetch_actuals", "fetch_decisions", "steering_state"]


def _is_about(decision: Mapping, key: str | None, run_id: str | None) -> bool:
    """Whether a decision concerns ``key`` / ``run_id`` (None: any); graph-wide decisions carry no run id."""
    if key is not None and decision.get("key") != key:
        return False
    return run_id is None or decision.get("run_id") in (run_id, None)


def _plugin_decisions(key: str | None = None, run_id: str | None = None, dask_scheduler=None) -> list[DecisionEvent] | None:
    plugin = compat.plugin(dask_scheduler, STEERING_PLUGIN)
    if plugin is None:
        return None
    return [dict(d) for d in list(getattr(plugin, "decisions", ())) if _is_about(d, key, run_id)]


def _plugin_prediction(key: str, dask_scheduler=None) -> dict | None:
    """The prediction the steering plugin holds for ``key`` (what it ranked and placed by), if any."""
    plugin = compat.plugin(dask_scheduler, STEERING_PLUGIN)
    prediction = (getattr(plugin, "predictions", None) or {}).get(key) if plugin is not None else None
    if prediction is None:
        return None
    return {"predicted_duration_s": getattr(prediction, "duration_s", None),
            "predicted_peak_memory_bytes": getattr(prediction, "peak_memory_bytes", None),
            "quality": getattr(prediction, "quality", None), "model_version": getattr(prediction, "model_version", None),
            "source": "steering"}


def _plugin_state(dask_scheduler=None) -> dict | None:
    plugin = compat.plugin(dask_scheduler, STEERING_PLUGIN)
    if plugin is None:
        return None
    summary = getattr(plugin, "summary", None)
    return summary() if callable(summary) else {"mode": getattr(plugin, "mode", None)}


def _recent_rows(keys: list[str] | None, run_id: str | None, dask_scheduler=None) -> list[dict] | None:
    plugin = compat.plugin(dask_scheduler, RECORDER_PLUGIN)
    if plugin is None:
        return None
    wanted = set(keys) if keys is not None else None
    rows = []
    for row in list(getattr(plugin, "recent_rows", ())):
        if wanted is not None and row.get("key") not in wanted:
            continue
        if run_id is not None and row.get("run_id") != run_id:
            continue
        rows.append(dict(row))
    return rows


def fetch_decisions(client, key: str | None = None, run_id: str | None = None) -> list[DecisionEvent]:
    """Decision dicts for ``key`` / ``run_id`` (all when both are None), oldest first."""
    decisions = client.run_on_scheduler(_plugin_decisions, key, run_id)
    if decisions is None:  # plugin not installed (or removed): fall back on the event log
        events = (msg for _, msg in client.get_events(STEERING_TOPIC))
        decisions = [dict(msg) for msg in events if isinstance(msg, Mapping) and _is_about(msg, key, run_id)]
    return decisions


def fetch_actuals(client, keys: list[str] | None = None, run_id: str | None = None, history_url: str | None = None) -> list[dict]:
    """Recorder rows (actual duration, peak memory, worker) for ``keys`` or ``run_id``."""
    rows = None
    if client is not None:
        rows = client.run_on_scheduler(_recent_rows, keys, run_id)
    if rows:
        return rows
    if history_url is None:
        return rows or []
    try:
        from daskflow.learning.history import read_history

        frame = read_history(history_url)
    except Exception:  # noqa: BLE001 - no history is not an error for explain
        return []
    if frame is None or len(frame) == 0:
        return []
    if keys is not None:
        frame = frame[frame["key"].isin(keys)]
    if run_id is not None:
        frame = frame[frame["run_id"] == run_id]
    return frame.to_dict("records")


def steering_state(client) -> dict | None:
    return client.run_on_scheduler(_plugin_state)


def _history(history_url: str | None):
    from daskflow import config

    try:
        from daskflow.learning.history import read_history

        frame = read_history(config.history_url(history_url))
    except Exception:  # noqa: BLE001 - no history is not an error for explain
        return None
    return frame if frame is not None and len(frame) else None
