"""What the timeline is doing, in one JSON-ready dict: recent runs, the queue, schedules, sensors, backfills.

Design note
-----------
Read-only and bounded: the newest ``limit`` runs (with their trigger and
materialization counts in one grouped query), at most ``limit`` queued runs,
every schedule and sensor the daemon has recorded (last and next tick) and
the newest ``max_backfills`` backfills with their partition counts. The Dask
dashboard's runs page (``scheduler_plugins/dashboard/runs_page.py``) serves
it as ``/daskflow/api/runs``; ``now`` is an argument so tests fix it.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

__all__ = ["runs_overview"]


def _trigger(tags: dict[str, Any]) -> tuple[str, str | None]:
    trigger = str(tags.get("trigger") or "manual")
    origin = tags.get(trigger) if trigger in ("schedule", "sensor", "backfill") else None
    return trigger, origin


def runs_overview(catalog_path: str | pathlib.Path, limit: int = 50, max_backfills: int = 10,
                  now_s: float | None = None) -> dict[str, Any]:
    """The payload of ``/daskflow/api/runs`` (see the module note); an absent catalog gives empty lists."""
    now_s = time.time() if now_s is None else now_s
    path = pathlib.Path(catalog_path)
    empty: dict[str, Any] = {"catalog": str(path), "generated_at": now_s, "runs": [], "queued": [], "schedules": [],
                             "sensors": [], "backfills": [], "counts": {}, "note": ""}
    if not path.exists():
        return {**empty, "note": f"no catalog at {path} yet: run a pipeline, the daemon or a backfill"}
    from daskflow.catalog import Catalog
    from daskflow.timeline.backfill import Backfills
    from daskflow.timeline.store import TimelineStore

    catalog = Catalog(path)
    store = TimelineStore(path)
    try:
        runs = catalog.runs(limit=int(limit))
        counts: dict[str, int] = {}
        if runs:
            marks = ",".join("?" * len(runs))
            counts = {row["run_id"]: row["n"] for row in store._query(
                f"SELECT run_id, COUNT(*) AS n FROM materializations WHERE run_id IN ({marks}) GROUP BY run_id",
                [r.run_id for r in runs])}
        run_rows = []
        for run in runs:
            trigger, origin = _trigger(run.tags)
            end = run.finished_at if run.finished_at is not None else (now_s if run.status == "running" else None)
            run_rows.append({"run_id": run.run_id, "pipeline": run.pipeline, "selection": run.selection,
                             "status": run.status, "trigger": trigger, "origin": origin,
                             "partitions": len(run.partitions) if run.partitions else 0,
                             "started_at": run.started_at, "finished_at": run.finished_at,
                             "duration_s": None if end is None else max(0.0, end - run.started_at),
                             "materializations": counts.get(run.run_id, 0)})
        queued = [{"run_id": row["run_id"], "trigger": row["trigger"], "origin": row["origin"], "pool": row["pool"],
                   "enqueued_at": row["enqueued_at"], "waiting_s": max(0.0, now_s - row["enqueued_at"])}
                  for row in store._query(  # a row whose run exists already is not waiting (reconciled later)
                      "SELECT * FROM timeline_queue q WHERE status = 'queued' AND NOT EXISTS (SELECT 1 FROM runs r "
                      "WHERE r.run_id = q.run_id) ORDER BY id LIMIT ?", (int(limit),))]
        schedules = [dict(row) for row in store._query(
            "SELECT s.name, s.next_tick_at, s.evaluated_until, (SELECT MAX(tick_time) FROM timeline_launches l "
            "WHERE l.trigger = 'schedule' AND l.origin = s.name) AS last_tick_at, (SELECT status FROM "
            "timeline_launches l WHERE l.trigger = 'schedule' AND l.origin = s.name ORDER BY tick_time DESC "
            "LIMIT 1) AS last_status FROM timeline_schedules s ORDER BY s.name")]
        sensors = [dict(row) for row in store._query(
            "SELECT name, last_tick_at, next_tick_at, last_status, last_message, cursor FROM timeline_sensors "
            "ORDER BY name")]
        backfills = Backfills(store)
        backfill_rows = [backfills.status(i, update=False) for i in backfills.ids(int(max_backfills))]
        by_status: dict[str, int] = {}
        for row in run_rows:
            by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        by_status["queued"] = len(queued)
        return {**empty, "runs": run_rows, "queued": queued, "schedules": schedules, "sensors": sensors,
                "backfills": backfill_rows, "counts": by_status,
                "note": "" if run_rows or queued or schedules or sensors or backfill_rows else "no runs yet"}
    finally:
        catalog.close()
        store.close()
