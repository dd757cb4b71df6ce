"""Run liveness and attempt bookkeeping over the catalog: heartbeats, abandoned runs, superseded files.

Design note
-----------
*Runs always end.* A running run's client updates ``runs.heartbeat_at``
every ``daskflow.runs.heartbeat-interval`` from a background thread
(:mod:`daskflow.heartbeat`). A run still ``running`` whose last heartbeat
(or, never having beaten, its start) is older than
``daskflow.runs.abandon-after`` lost its client: :func:`mark_abandoned_runs`
sets it to ``failure`` with ``reason = "abandoned"`` in one ``UPDATE`` (so
two processes doing it at once mark each run once). It is called by every
command that opens the catalog for writing (``start_run``, ``daskflow gc``)
and by the timeline daemon; ``now`` is an argument.

*One attempt, one file, one row.* When Dask recomputes a task after its
result was recorded (a worker holding it died), the new attempt wrote its
own file; :func:`replace_attempt` points the row at it (path, rows, bytes,
schema, host, worker, attempt) in one transaction and lists the previous
file in ``superseded_files`` for ``daskflow gc``.

Functions over :class:`~daskflow.catalog_db.CatalogDB`, used by the
:class:`~daskflow.catalog.Catalog` facade.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from daskflow.catalog_db import CatalogDB

__all__ = ["ABANDONED", "heartbeat", "list_superseded", "mark_abandoned_runs", "replace_attempt", "superseded_paths"]

#: ``runs.reason`` of a run whose client stopped heartbeating
ABANDONED = "abandoned"


def heartbeat(db: CatalogDB, run_id: str, now: float | None = None) -> bool:
    """Record that ``run_id``'s client is alive; False when the run is no longer running."""
    with db.transaction() as conn:
        return bool(conn.execute(
            "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running'",
            (time.time() if now is None else now, run_id)).rowcount)


def mark_abandoned_runs(db: CatalogDB, now: float, abandon_after_s: float) -> list[str]:
    """Mark running runs without a heartbeat for ``abandon_after_s`` as failed (abandoned); their ids."""
    cutoff = now - abandon_after_s
    with db.transaction() as conn:
        found = [row["run_id"] for row in conn.execute(
            "SELECT run_id FROM runs WHERE status = 'running' AND COALESCE(heartbeat_at, started_at) < ?",
            (cutoff,))]
        if found:
            conn.executemany(
                "UPDATE runs SET status = 'failure', reason = ?, finished_at = ? "
                "WHERE run_id = ? AND status = 'running'", [(ABANDONED, now, run_id) for run_id in found])
            conn.executemany(
                "INSERT INTO run_events (run_id, timestamp, kind, message, payload) VALUES (?, ?, ?, ?, '{}')",
                [(run_id, now, "run-abandoned", f"no heartbeat for more than {abandon_after_s:g} s; "
                  "marked failed (abandoned)") for run_id in found])
    return found


def replace_attempt(db: CatalogDB, materialization_id: int, stored: Mapping[str, Any],
                    duration_s: float | None, now: float | None = None) -> str | None:
    """Point one materialization at a newer attempt's file; returns the superseded path (None: same file)."""
    now = time.time() if now is None else now
    with db.transaction() as conn:
        row = conn.execute("SELECT path, run_id FROM materializations WHERE id = ?",
                           (int(materialization_id),)).fetchone()
        if row is None or row["path"] == stored["path"]:
            return None
        conn.execute(
            "UPDATE materializations SET path = ?, format = ?, rows = ?, bytes = ?, schema = ?, host = ?, "
            "worker = ?, attempt = ?, duration_s = COALESCE(?, duration_s) WHERE id = ?",
            (stored["path"], stored.get("format", "parquet"), _int(stored.get("rows")), _int(stored.get("bytes")),
             stored.get("schema"), stored.get("host"), stored.get("worker"), stored.get("attempt"),
             None if duration_s is None else float(duration_s), int(materialization_id)))
        conn.execute("INSERT OR REPLACE INTO superseded_files (path, materialization_id, run_id, superseded_at) "
                     "VALUES (?, ?, ?, ?)", (row["path"], int(materialization_id), row["run_id"], now))
        conn.execute("DELETE FROM superseded_files WHERE path = ?", (stored["path"],))
    return row["path"]


def list_superseded(db: CatalogDB, materialization_id: int, run_id: str, paths: list[str],
                    now: float | None = None) -> None:
    """List files of discarded executions of one materialization for garbage collection."""
    now = time.time() if now is None else now
    with db.transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO superseded_files (path, materialization_id, run_id, superseded_at) "
                         "VALUES (?, ?, ?, ?)", [(p, int(materialization_id), run_id, now) for p in paths])


def superseded_paths(db: CatalogDB) -> dict[str, int]:
    """Files of replaced attempts still listed for garbage collection: path -> materialization id."""
    return {row["path"]: row["materialization_id"]
            for row in db.query("SELECT path, materialization_id FROM superseded_files ORDER BY path")}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
