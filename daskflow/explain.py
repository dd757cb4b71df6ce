"""Explain steering decisions: a task's story and a run's summary.

Design note
-----------
The steering plugin logs every decision as a scheduler event (topic
:data:`~daskflow.contracts.STEERING_TOPIC`, payload
:class:`~daskflow.contracts.DecisionEvent`) and keeps the same dicts in its bounded ``decisions``
deque; the recorder keeps the actual cost of recent tasks (``recent_rows``) and
writes all of them to the history dataset. This module only *reads* those:

* :func:`fetch_decisions` — from the plugin's deque (complete up to its bound)
  through ``run_on_scheduler``, else from ``client.get_events`` (the scheduler
  keeps only the last ``distributed.admin.low-level-log-length`` events).
* :func:`fetch_actuals` — recorder rows for some keys (recent rows on the
  scheduler, else the history dataset).
* :func:`task_story` / :func:`format_story` — "predicted vs actual, where it
  went and the alternatives, why there, why then" for one key.
* :func:`summarize` / :func:`format_summary` — steered / held / fallback
  counts and prediction error for a run.

Plugins are found by name on the scheduler (:func:`daskflow.compat.plugin`,
names from :mod:`daskflow.contracts`); daskflow never imports
``scheduler_plugins``. Errors are the shared median APE
(:func:`daskflow.learning.metrics.median_ape`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from daskflow import compat
from daskflow.contracts import (
    RECORDER_PLUGIN,
    STEERING_PLUGIN,
    STEERING_TOPIC,
    DecisionEvent,
)
from daskflow.formatting import finite_float, format_bytes
from daskflow.learning.metrics import median_ape

__all__ = ["fetch_actuals", "fetch_decisions", "format_story", "format_summary", "summarize", "task_story"]


# ----------------------------------------------------------------- fetching (scheduler side helpers)


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


# ----------------------------------------------------------------- one task


def task_story(key: str, decisions: Iterable[DecisionEvent], actual: Mapping | None = None) -> dict:
    """Everything known about one task's steering, as a plain dict."""
    mine = [dict(d) for d in decisions if d.get("key") == key]
    placements = [d for d in mine if d.get("action") in ("place", "release")]
    holds = [d for d in mine if d.get("action") == "hold"]
    shadows = [d for d in mine if d.get("action") == "shadow"]
    first = mine[0] if mine else {}
    last_place = placements[-1] if placements else {}
    story: dict[str, Any] = {
        "key": key,
        "run_id": first.get("run_id") or (actual or {}).get("run_id"),
        "model_version": first.get("model_version"),
        "quality": first.get("quality"),
        "predicted_duration_s": finite_float(first.get("predicted_duration_s")),
        "predicted_peak_memory_bytes": finite_float(first.get("predicted_peak_memory_bytes")),
        "rank_s": finite_float(last_place.get("rank_s", first.get("rank_s"))),
        "priority_index": last_place.get("priority_index", first.get("priority_index")),
        "placements": [
            {k: p.get(k) for k in ("time", "action", "worker", "reason", "predicted_finish_s", "held_s", "alternatives",
                                   "worker_speed", "speed_source")}
            for p in placements
        ],
        "holds": [{k: h.get(k) for k in ("time", "reason", "alternatives")} for h in holds],
        "shadow": [{k: s.get(k) for k in ("worker", "would_place", "reason", "alternatives")} for s in shadows if s.get("would_place")],
        "n_decisions": len(mine),
    }
    if actual:
        story.update(
            actual_duration_s=finite_float(actual.get("duration_s")),
            actual_peak_memory_bytes=finite_float(actual.get("peak_memory_bytes")),
            actual_worker=actual.get("worker"),
            outcome=actual.get("outcome"),
        )
        predicted, real = story["predicted_duration_s"], story.get("actual_duration_s")
        if predicted is not None and real:
            story["duration_error_ratio"] = predicted / real
    return story


def _bytes(value: Any) -> str:
    return format_bytes(value, missing="?")


def _seconds(value: Any) -> str:
    number = finite_float(value)
    return "?" if number is None else f"{number:.3f} s"


def format_story(story: Mapping) -> str:
    """Human text for :func:`task_story`."""
    lines = [f"task {story['key']}" + (f"  (run {story['run_id']})" if story.get("run_id") else "")]
    if not story.get("n_decisions"):
        lines.append("  no steering decision recorded for this key (steering off, stock fallback, or evicted from the log)")
    lines.append(
        f"  predicted: duration {_seconds(story.get('predicted_duration_s'))}, peak memory "
        f"{_bytes(story.get('predicted_peak_memory_bytes'))}  [model {story.get('model_version') or '-'}, "
        f"source {story.get('quality') or '-'}]"
    )
    if "actual_duration_s" in story:
        lines.append(
            f"  actual:    duration {_seconds(story.get('actual_duration_s'))}, peak memory "
            f"{_bytes(story.get('actual_peak_memory_bytes'))} on {story.get('actual_worker') or '?'} ({story.get('outcome') or '?'})"
        )
    if story.get("rank_s") is not None:
        lines.append(
            f"  why then:  critical-path rank {story['rank_s']:.3f} s (its duration + the longest predicted path after it); "
            f"position {story.get('priority_index')} in its graph's dispatch order"
        )
    for hold in story.get("holds", []):
        lines.append(f"  held:      no worker had memory headroom for it ({hold.get('reason')})")
    for place in story.get("placements", []):
        verb = "released to" if place.get("action") == "release" else "placed on"
        extra = f" after {place['held_s']:.3f} s held" if place.get("held_s") else ""
        lines.append(
            f"  why there: {verb} {place.get('worker')}{extra} because of {place.get('reason')}; predicted finish "
            f"{_seconds(place.get('predicted_finish_s'))}"
            + (f"; worker speed {place['worker_speed']:g} ({place.get('speed_source') or '?'})"
               if place.get("worker_speed") is not None else "")
        )
        for alt in place.get("alternatives") or []:
            marker = "*" if alt.get("worker") == place.get("worker") else " "
            lines.append(
                f"    {marker} {alt.get('worker')}: finish {_seconds(alt.get('score'))} = wait {_seconds(alt.get('wait_s'))}"
                f" + transfer {_seconds(alt.get('transfer_s'))} + compute {_seconds(alt.get('compute_s'))}"
                f"{'' if alt.get('fits_memory', True) else '  (does not fit memory)'}"
            )
    for shadow in story.get("shadow", []):
        lines.append(f"  shadow:    stock Dask used {shadow.get('worker')}; steering would have used {shadow.get('would_place')} ({shadow.get('reason')})")
    return "\n".join(lines)


# ----------------------------------------------------------------- a run


def summarize(decisions: Iterable[DecisionEvent], rows: Iterable[Mapping] = (), state: Mapping | None = None) -> dict:
    """Counts of decisions by action and reason, fallbacks, holds and prediction error."""
    decisions = list(decisions)
    actions = Counter(d.get("action") for d in decisions)
    reasons = Counter(d.get("reason") for d in decisions if d.get("action") in ("place", "release"))
    steered_keys = {d.get("key") for d in decisions if d.get("action") in ("place", "release")}
    fallback_tasks = sum(int(d.get("n_tasks") or 0) for d in decisions if d.get("action") == "fallback")
    predicted = {d.get("key"): finite_float(d.get("predicted_duration_s")) for d in decisions if d.get("key")}
    predicted_memory = {d.get("key"): finite_float(d.get("predicted_peak_memory_bytes")) for d in decisions if d.get("key")}
    duration_pairs, memory_pairs = [], []
    for row in rows:
        key = row.get("key")
        p = finite_float(row.get("predicted_duration_s")) or predicted.get(key)
        a = finite_float(row.get("duration_s"))
        if p is not None and a is not None:
            duration_pairs.append((p, a))
        pm = finite_float(row.get("predicted_peak_memory_bytes")) or predicted_memory.get(key)
        am = finite_float(row.get("peak_memory_bytes"))
        if pm is not None and am is not None:
            memory_pairs.append((pm, am))
    return {
        "decisions": len(decisions),
        "steered_tasks": len(steered_keys - {None}),
        "held": actions.get("hold", 0),
        "released": actions.get("release", 0),
        "fallbacks": actions.get("fallback", 0),
        "fallback_tasks": fallback_tasks,
        "shadow": actions.get("shadow", 0),
        "actions": dict(actions),
        "place_reasons": dict(reasons),
        "model_versions": sorted({str(d.get("model_version")) for d in decisions if d.get("model_version")}),
        "tasks_with_actuals": len(duration_pairs),
        "duration_median_ape": median_ape([p for p, _ in duration_pairs], [a for _, a in duration_pairs]),
        "memory_median_ape": median_ape([p for p, _ in memory_pairs], [a for _, a in memory_pairs]),
        "plugin": dict(state) if state else None,
    }


def format_summary(summary: Mapping, run_id: str | None = None) -> str:
    """Human text for :func:`summarize`."""
    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    lines = [f"steering decisions{' for run ' + run_id if run_id else ''}: {summary['decisions']}"]
    lines.append(
        f"  steered tasks {summary['steered_tasks']}, held {summary['held']} (released {summary['released']}), "
        f"fallbacks {summary['fallbacks']} ({summary['fallback_tasks']} tasks to stock), shadow {summary['shadow']}"
    )
    if summary.get("place_reasons"):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["place_reasons"].items(), key=lambda kv: -kv[1]))
        lines.append(f"  placement reasons: {reasons}")
    lines.append(f"  model versions: {', '.join(summary.get('model_versions') or ['-'])}")
    lines.append(
        f"  prediction error (median APE over {summary['tasks_with_actuals']} finished tasks): duration "
        f"{pct(summary.get('duration_median_ape'))}, peak memory {pct(summary.get('memory_median_ape'))}"
    )
    plugin = summary.get("plugin")
    if plugin:
        lines.append(f"  plugin: mode {plugin.get('mode')}, fallback_count {plugin.get('fallback_count')}, "
                     f"held now {plugin.get('held_now')}, ready now {plugin.get('ready_now')}")
    return "\n".join(lines)
