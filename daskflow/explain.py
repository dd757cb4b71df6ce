"""Explain steering decisions: a task's story and a run's summary.

Design note
-----------
The steering plugin logs every decision as a scheduler event (topic
:data:`~daskflow.contracts.STEERING_TOPIC`, payload
:class:`~daskflow.contracts.DecisionEvent`) and keeps the same dicts in its bounded ``decisions``
deque; the recorder keeps the actual cost of recent tasks (``recent_rows``) and
writes all of them to the history dataset. This module only *reads* those (the reads live in
:mod:`daskflow.explain_fetch`, re-exported here):

* :func:`fetch_decisions` — from the plugin's deque (complete up to its bound)
  through ``run_on_scheduler``, else from ``client.get_events`` (the scheduler
  keeps only the last ``distributed.admin.low-level-log-length`` events).
* :func:`fetch_actuals` — recorder rows for some keys (recent rows on the
  scheduler, else the history dataset).
* :func:`task_story` / :func:`format_story` — "predicted vs actual, where it
  went and the alternatives, why there, why then" for one key.
* :func:`summarize` / :func:`format_summary` — steered / held / fallback
  counts and prediction error for a run.
* :func:`story_for` / :func:`run_summary` — the CLI's questions; without a
  scheduler (or when it has forgotten the task) answered from the audit, the
  history dataset and the catalog (:mod:`daskflow.explain_lookup`).

Plugins are found by name on the scheduler (:func:`daskflow.compat.plugin`,
names from :mod:`daskflow.contracts`); daskflow never imports
``scheduler_plugins``. Errors are the shared median APE
(:func:`daskflow.learning.metrics.median_ape`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from daskflow.contracts import DecisionEvent
from daskflow.explain_fetch import (
    _history,
    _plugin_prediction,
    _recent_rows,
    fetch_actuals,
    fetch_decisions,
    steering_state,
)
from daskflow.formatting import finite_float, format_bytes
from daskflow.learning.metrics import median_ape

__all__ = ["fetch_actuals", "fetch_decisions", "format_story", "format_summary", "run_summary", "steering_state",
           "story_for", "summarize", "task_story"]


# ----------------------------------------------------------------- one task


#: what a hold's reason means, for the explain text (an unknown reason gets a generic line)
_HOLD_WHY = {
    "memory": "no worker had memory headroom for it",
    "speed": "waiting for a faster worker to open",
}


def task_story(key: str, decisions: Iterable[DecisionEvent], actual: Mapping | None = None,
               prediction: Mapping | None = None, no_decision_reason: str | None = None,
               source: str | None = None) -> dict:
    """Everything known about one task's steering, as a plain dict.

    ``prediction``: used when no decision carries one (e.g. :func:`daskflow.explain_lookup.offline_prediction`);
    ``no_decision_reason``: why the task has no decision of its own (:func:`daskflow.explain_lookup.why_no_decision`);
    ``source``: where the decisions were read ("scheduler" or "audit").
    """
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
        "decisions_source": source,
        "prediction_source": "decision" if first.get("predicted_duration_s") is not None else None,
    }
    recorded = None
    if actual and finite_float(actual.get("predicted_duration_s")) is not None:
        recorded = {"predicted_duration_s": actual.get("predicted_duration_s"), "source": "recorder",
                    "predicted_peak_memory_bytes": actual.get("predicted_peak_memory_bytes"),
                    "model_version": _text(actual.get("model_version")), "quality": _text(actual.get("quality"))}
    # what steering acted on first, then what the recorder kept beside the actual cost, then one computed now
    candidates = sorted([p for p in (prediction, recorded) if p], key=lambda p: p.get("source") != "steering")
    for candidate in candidates:
        if story["predicted_duration_s"] is not None:
            break
        story.update(predicted_duration_s=finite_float(candidate.get("predicted_duration_s")),
                     predicted_peak_memory_bytes=finite_float(candidate.get("predicted_peak_memory_bytes")),
                     model_version=story["model_version"] or candidate.get("model_version"),
                     quality=story["quality"] or candidate.get("quality"),
                     prediction_source=candidate.get("source") or "computed-now")
    if not placements and no_decision_reason:
        story["no_decision_reason"] = no_decision_reason
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


def _text(value: Any) -> str | None:
    """A string field of a history row: None for missing / NaN (pandas fills absent strings with NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _bytes(value: Any) -> str:
    return format_bytes(value, missing="unknown")


def _seconds(value: Any) -> str:
    number = finite_float(value)
    return "unknown" if number is None else f"{number:.3f} s"


_QUALITY_WORDS = {"model": "from the model", "prefix-mean": "per-category running mean", "default": "the default",
                  "oracle": "oracle (true cost)"}


def _quality(quality: Any) -> str:
    return _QUALITY_WORDS.get(str(quality), f"source {quality}" if quality else "source not recorded")


def format_story(story: Mapping) -> str:
    """Human text for :func:`task_story`."""
    lines = [f"task {story['key']}" + (f"  (run {story['run_id']})" if story.get("run_id") else "")]
    if story.get("decisions_source") == "audit":
        lines.append("  (no scheduler reachable: decisions from the durable audit in the catalog)")
    reason = story.get("no_decision_reason")
    if not story.get("n_decisions"):
        lines.append("  no steering decision of its own: " + (
            reason or "none recorded for this key (steering off, stock fallback, or evicted from the log)"))
    elif reason and not story.get("placements"):
        lines.append(f"  not placed by steering: {reason}")
    if story.get("predicted_duration_s") is None:
        lines.append("  predicted: nothing (no decision, recorder row or model prediction for this key)")
    else:
        source = {"computed-now": "computed now, not what steering saw",
                  "recorder": "as steering predicted it, recorded with the actual cost"}.get(
            story.get("prediction_source") or "", "as steering saw it")
        lines.append(
            f"  predicted: duration {_seconds(story.get('predicted_duration_s'))}, peak memory "
            f"{_bytes(story.get('predicted_peak_memory_bytes'))}  [{_quality(story.get('quality'))}, "
            f"model {story.get('model_version') or 'none'}; {source}]"
        )
    if "actual_duration_s" in story:
        lines.append(
            f"  actual:    duration {_seconds(story.get('actual_duration_s'))}, peak memory "
            f"{_bytes(story.get('actual_peak_memory_bytes'))} on {story.get('actual_worker') or 'unknown worker'} "
            f"({story.get('outcome') or 'outcome unknown'})"
        )
    if story.get("rank_s") is not None:
        lines.append(
            f"  why then:  critical-path rank {story['rank_s']:.3f} s (its duration + the longest predicted path after it); "
            f"position {story.get('priority_index')} in its graph's dispatch order"
        )
    for hold in story.get("holds", []):
        why = _HOLD_WHY.get(str(hold.get("reason")), "the policy held it back")
        lines.append(f"  held:      {why} ({hold.get('reason')})")
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
    if story.get("stock_worker") and not story.get("placements"):
        lines.append(f"  where:     stock Dask placed it on {story['stock_worker']}")
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
    rows = sorted((dict(r) for r in rows), key=lambda r: finite_float(r.get("stop_s") or r.get("recorded_at")) or 0.0)
    errors = {}
    for target, actual_field, table in (("duration", "duration_s", predicted),
                                        ("memory", "peak_memory_bytes", predicted_memory)):
        pairs = _prediction_pairs(rows, target, actual_field, table)
        both = [(p, b, a) for p, b, a in pairs if b is not None]
        model_ape = median_ape([p for p, _, _ in pairs], [a for _, _, a in pairs])
        model_on_both = median_ape([p for p, _, _ in both], [a for _, _, a in both])
        baseline_ape = median_ape([b for _, b, _ in both], [a for _, _, a in both])
        errors[target] = {
            "pairs": len(pairs), "median_ape": model_ape, "baseline_median_ape": baseline_ape,
            "error_ratio": (model_on_both / baseline_ape) if model_on_both is not None and baseline_ape else None,
        }
    qualities = Counter(str(d.get("quality")) for d in _first_per_key(decisions) if d.get("quality"))
    without_model = sum(1 for r in rows if finite_float(r.get("predicted_duration_s")) is not None
                        and not _text(r.get("model_version")))
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
        "prediction_quality": dict(qualities),
        "predictions_without_model": without_model,
        "tasks_with_actuals": errors["duration"]["pairs"],
        "duration_median_ape": errors["duration"]["median_ape"],
        "memory_median_ape": errors["memory"]["median_ape"],
        "duration_baseline_median_ape": errors["duration"]["baseline_median_ape"],
        "memory_baseline_median_ape": errors["memory"]["baseline_median_ape"],
        "duration_error_ratio": errors["duration"]["error_ratio"],
        "memory_error_ratio": errors["memory"]["error_ratio"],
        "plugin": dict(state) if state else None,
    }


def _first_per_key(decisions: Iterable[Mapping]) -> list[Mapping]:
    seen: dict[Any, Mapping] = {}
    for d in decisions:
        if d.get("key") is not None and d.get("key") not in seen:
            seen[d.get("key")] = d
    return list(seen.values())


def _prediction_pairs(rows: list[dict], target: str, actual_field: str,
                      predicted: Mapping[Any, float | None]) -> list[tuple[float, float | None, float]]:
    """``(prediction, per-category running mean before this task, actual)`` per finished row with both.

    The running mean is the estimate Dask itself keeps per task prefix; the
    first task of a category has none.
    """
    field = "predicted_duration_s" if target == "duration" else "predicted_peak_memory_bytes"
    means: dict[str, tuple[int, float]] = {}
    pairs = []
    for row in rows:
        actual = finite_float(row.get(actual_field))
        if actual is None:
            continue
        category = str(row.get("category") or row.get("key_prefix") or "")
        count, mean = means.get(category, (0, 0.0))
        p = finite_float(row.get(field))
        p = p if p is not None else predicted.get(row.get("key"))
        if p is not None:
            pairs.append((p, mean if count else None, actual))
        means[category] = (count + 1, mean + (actual - mean) / (count + 1))
    return pairs


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
    if summary.get("prediction_quality"):
        lines.append("  predictions: " + ", ".join(f"{n} {_QUALITY_WORDS.get(q, q)}" for q, n in
                                                    sorted(summary["prediction_quality"].items(), key=lambda kv: -kv[1])))
    if summary.get("predictions_without_model"):
        lines.append(f"  {summary['predictions_without_model']} predictions were made without a model (per-category "
                     "running mean or the default); train one with `daskflow model train`")
    lines.append(f"  prediction error over {summary['tasks_with_actuals']} finished tasks (median APE; ratio to the "
                 "per-category running mean, < 1 is better):")
    for target, label in (("duration", "duration"), ("memory", "peak memory")):
        ratio = summary.get(f"{target}_error_ratio")
        lines.append(f"    {label + ':':12s} {pct(summary.get(f'{target}_median_ape'))}, baseline "
                     f"{pct(summary.get(f'{target}_baseline_median_ape'))}, ratio "
                     f"{'-' if ratio is None else f'{ratio:.2f}'}")
    plugin = summary.get("plugin")
    if plugin:
        lines.append(f"  plugin: mode {plugin.get('mode')}, fallback_count {plugin.get('fallback_count')}, "
                     f"held now {plugin.get('held_now')}, ready now {plugin.get('ready_now')}")
    return "\n".join(lines)


# ----------------------------------------------------------------- the CLI's questions, from any source


def story_for(text: str, run_id: str | None = None, partition: str | None = None, client=None,
              history_url: str | None = None, catalog=None) -> dict:
    """:func:`task_story` for the task named by ``text`` (see :func:`daskflow.explain_lookup.resolve_target`).

    With ``client`` (a reachable scheduler) decisions and actual costs come from the plugins; without
    one, or when the scheduler has forgotten the task, from the durable audit, the history dataset and
    the catalog. A task without a prediction in any record gets one computed now.
    """
    from daskflow.audit import AuditStore
    from daskflow.catalog import Catalog
    from daskflow.explain_lookup import (
        offline_prediction,
        resolve_target,
        unknown_target,
        why_no_decision,
    )

    catalog = catalog if catalog is not None else Catalog()
    target = resolve_target(text, run=run_id, partition=partition, catalog=catalog)
    decisions: list = []
    graph: list = []
    rows: list = []
    state = None
    source = "scheduler" if client is not None else "audit"
    if client is not None:
        decisions = fetch_decisions(client, key=target.key)
        graph = [d for d in fetch_decisions(client, run_id=target.run_id) if d.get("key") is None]
        rows = client.run_on_scheduler(_recent_rows, [target.key], None) or []
        state = steering_state(client)
    if not decisions and catalog.path.exists():
        audit = AuditStore(catalog)
        audited = audit.decisions_for(run_id=target.run_id, key=target.key)
        if audited or client is None:
            decisions, source = audited, "audit"
        if target.run_id and not graph:
            graph = [d for d in audit.decisions_for(run_id=target.run_id) if d.get("key") is None]
    history = _history(history_url)
    if not rows and history is not None:
        rows = history[history["key"] == target.key].to_dict("records")
    actual = dict(rows[-1]) if rows else None
    if actual is None and target.asset and target.run_id and catalog.path.exists():
        for m in catalog.materializations(run_id=target.run_id, asset_key=target.asset):
            if m.partition == target.partition:
                actual = {"duration_s": m.duration_s, "worker": m.worker, "outcome": "success", "run_id": m.run_id,
                          "category": m.asset_key}
    held = client.run_on_scheduler(_plugin_prediction, target.key) if client is not None else None
    if target.run_id is None and target.asset is None and not decisions and actual is None and held is None:
        raise unknown_target(text, catalog)
    story = task_story(target.key, decisions, actual, prediction=held, source=source)
    if story["predicted_duration_s"] is None:
        row = dict(actual or {})
        row.setdefault("key", target.key)
        if not row.get("category"):
            row["category"] = target.asset or target.key.rsplit("-", 1)[0]
        earlier = []
        if history is not None and "category" in history:
            same = history[history["category"] == row["category"]]
            if target.run_id and "run_id" in same:
                same = same[same["run_id"] != target.run_id]
            earlier = same.to_dict("records")
        story = task_story(target.key, decisions, actual, prediction=offline_prediction(row, earlier), source=source)
    if story["quality"] is None and not story["model_version"] and story["predicted_duration_s"] is not None:
        from daskflow.learning.predictor import default_costs

        if abs(story["predicted_duration_s"] - default_costs()[0]) < 1e-9:
            story["quality"] = "default"  # not recorded, but it is exactly the configured default and no model ran
    if not story["placements"]:
        story["no_decision_reason"] = why_no_decision(graph, story["predicted_duration_s"],
                                                      story.get("predicted_peak_memory_bytes"), source, state)
    stock = [d for d in decisions if d.get("action") == "stock"]
    if stock:
        story["stock_worker"] = stock[-1].get("worker")
        if not any(d.get("action") in ("priority", "fallback") for d in graph):  # the plugin never saw its graph
            story["no_decision_reason"] = "placed by stock Dask (no steering decision for its run: steering off or not installed)"
    story.update(asset=target.asset, partition=target.partition, run_id=target.run_id or story.get("run_id"))
    return story


_RECENT_RUNS = 50


def run_summary(run_id: str | None = None, client=None, history_url: str | None = None, catalog=None) -> dict:
    """:func:`summarize` for one run (a prefix is resolved in the catalog); without a scheduler, from the audit."""
    from daskflow.audit import AuditStore
    from daskflow.catalog import Catalog

    catalog = catalog if catalog is not None else Catalog()
    if run_id and catalog.path.exists():
        matches = [r.run_id for r in catalog.runs(limit=None) if r.run_id.startswith(run_id)]
        run_id = matches[0] if len(matches) == 1 else run_id
    decisions: list = []
    rows: list = []
    state = None
    source = "scheduler" if client is not None else "audit"
    if client is not None:
        decisions = fetch_decisions(client, run_id=run_id)
        rows = client.run_on_scheduler(_recent_rows, None, run_id) or []
        state = steering_state(client)
    history = None
    if not decisions and catalog.path.exists():
        audit = AuditStore(catalog)
        if run_id is None and client is None:  # the newest run with something to say: audit rows or history
            history = _history(history_url)
            recorded = set(history["run_id"]) if history is not None and "run_id" in history else set()
            audited = set(audit.runs())
            run_id = next((r.run_id for r in catalog.runs(limit=_RECENT_RUNS)
                           if r.run_id in audited or r.run_id in recorded), None)
        decisions, source = (audit.decisions_for(run_id=run_id) if run_id else []), "audit"
    if not rows:
        history = history if history is not None else _history(history_url)
        if history is not None:
            rows = (history[history["run_id"] == run_id] if run_id else history).to_dict("records")
    summary = summarize(decisions, rows, state)
    summary.update(run_id=run_id, source=source)
    return summary
