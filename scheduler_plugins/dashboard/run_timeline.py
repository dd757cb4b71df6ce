"""A run's timeline: one lane per worker, a bar per task, the prediction behind it. Pure data.

Design note
-----------
Built from the recorder's recent rows (bounded: ``daskflow.recorder.recent-rows``)
of one run: each finished task has its worker, its compute start/stop
(``start_s``/``stop_s``, wall-clock seconds) and, when steering predicted
it, ``predicted_duration_s``. :func:`run_timeline` lays them out for the
page: times relative to the run's first start, the predicted bar drawn from
the same start, the steering decisions that placed or held a task (from the
plugin's bounded log) as markers, *stragglers* (actual at least
:data:`STRAGGLER_FACTOR` times the prediction and :data:`STRAGGLER_MIN_S`
longer) flagged, and the *critical path*: from the task that finished last,
back through the input that finished last, as far as the run's lineage
(``parents``: task key -> input task keys, from the catalog) reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from daskflow.formatting import finite_float

__all__ = ["STRAGGLER_FACTOR", "STRAGGLER_MIN_S", "critical_path", "run_ids_of", "run_timeline"]

STRAGGLER_FACTOR = 2.0
STRAGGLER_MIN_S = 0.05
_MARKED_ACTIONS = ("place", "release", "hold")


def run_ids_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Run ids of the rows, the run with the newest row first."""
    newest: dict[str, float] = {}
    for row in rows:
        run_id = row.get("run_id")
        if run_id and isinstance(run_id, str):
            stamp = finite_float(row.get("stop_s")) or finite_float(row.get("recorded_at")) or 0.0
            newest[run_id] = max(newest.get(run_id, 0.0), stamp)
    return sorted(newest, key=lambda r: -newest[r])


def critical_path(stops: Mapping[str, float], parents: Mapping[str, Iterable[str]]) -> list[str]:
    """Keys from the last-finishing task back through the latest-finishing input, last first.

    >>> critical_path({"a": 1.0, "b": 2.0, "c": 5.0, "d": 3.0}, {"c": ["a", "b"], "d": ["a"]})
    ['c', 'b']
    """
    if not stops:
        return []
    key = max(stops, key=lambda k: stops[k])
    path, seen = [key], {key}
    while True:
        inputs = [p for p in parents.get(key, ()) if p in stops and p not in seen]
        if not inputs:
            return path
        key = max(inputs, key=lambda k: stops[k])
        path.append(key)
        seen.add(key)


def run_timeline(rows: Iterable[Mapping[str, Any]], decisions: Iterable[Mapping[str, Any]], run_id: str | None,
                 parents: Mapping[str, Iterable[str]] | None = None, max_tasks: int = 2000) -> dict[str, Any]:
    """``{"run_id", "workers", "tasks": [...], "decisions": [...], "critical_path": [...], "note"}``.

    >>> t = run_timeline([{"key": "a", "run_id": "r", "worker": "w1", "start_s": 10.0, "stop_s": 11.0,
    ...                    "duration_s": 1.0, "predicted_duration_s": 0.2, "category": "a"}], [], "r")
    >>> t["tasks"][0]["start"], t["tasks"][0]["predicted_stop"], t["tasks"][0]["straggler"]
    (0.0, 0.2, True)
    """
    mine = [r for r in rows if r.get("run_id") == run_id and finite_float(r.get("start_s")) is not None
            and finite_float(r.get("stop_s")) is not None][-int(max_tasks):]
    if not mine:
        return {"run_id": run_id, "workers": [], "tasks": [], "decisions": [], "critical_path": [],
                "note": "no finished tasks of this run in the recorder's recent rows" if run_id else
                "no run recorded yet: run a pipeline against this cluster"}
    origin = min(float(r["start_s"]) for r in mine)
    stops = {str(r["key"]): float(r["stop_s"]) - origin for r in mine}
    path = critical_path(stops, parents or {})
    on_path = set(path)
    tasks = []
    for r in mine:
        start, stop = float(r["start_s"]) - origin, float(r["stop_s"]) - origin
        predicted = finite_float(r.get("predicted_duration_s"))
        actual = stop - start
        tasks.append({
            "key": str(r["key"]), "worker": str(r.get("worker") or "?"), "category": str(r.get("category") or ""),
            "start": start, "stop": stop, "duration_s": actual, "predicted_duration_s": predicted,
            "predicted_stop": None if predicted is None else start + predicted,
            "straggler": predicted is not None and actual >= STRAGGLER_FACTOR * predicted
            and actual - predicted >= STRAGGLER_MIN_S,
            "critical": str(r["key"]) in on_path,
        })
    keys = set(stops)
    marks = []
    for d in decisions:
        stamp = finite_float(d.get("time"))
        if d.get("key") in keys and d.get("action") in _MARKED_ACTIONS and stamp is not None:
            marks.append({"key": str(d["key"]), "time": stamp - origin, "worker": str(d.get("worker") or ""),
                          "action": str(d["action"]), "reason": str(d.get("reason") or "")})
    note = "" if parents else "critical path: no lineage for this run in the catalog (only the last task is marked)"
    return {"run_id": run_id, "workers": sorted({t["worker"] for t in tasks}), "tasks": tasks, "decisions": marks,
            "critical_path": path, "note": note}
