"""Backfills: a partition range of a pipeline, split into chunk runs, persisted and resumable.

Design note
-----------
Planning (:func:`plan_backfill`) builds the asset graph *once*, resolves the
selection to its partitioned assets (one partitioning; unpartitioned assets
are left out and named), expands the partition selection to keys and splits
them into chunks of ``chunk_size`` (:func:`chunk_partitions`, pure). No
per-partition graph is built: 10,000 partitions plan in well under a second.

:meth:`Backfills.create` stores, in **one** transaction, the backfill row, one
row per chunk (its partitions, attempt 1 and a pre-generated run id
:func:`chunk_run_id`) and one run-queue row per chunk (bulk ``executemany``).
From then on a chunk's state is never stored twice: it is derived
(:func:`chunk_state`, pure) from its queue row and its catalog run, so a crash
anywhere leaves nothing to repair. Exactly-once per chunk attempt comes from
the catalog's ``runs`` primary key, like schedule ticks.

Whoever runs a :class:`~daskflow.timeline.queue.QueueRunner` drives a
``running`` backfill: the ``daskflow backfill`` command in the foreground
(:mod:`daskflow.timeline.backfill_driver`), or the daemon when one runs.
Ctrl-C in the command pauses the backfill (its queued chunks wait); SIGKILL
leaves it running (a daemon, if any, carries on). :meth:`Backfills.resume`
sets it running again and gives each failed chunk one more attempt, with a
new run id and only the partitions its failed attempt did not materialize
(read from the catalog's materializations), so done partitions never re-run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from daskflow.errors import DaskflowError
from daskflow.timeline.queue import QueueEntry, RunQueue
from daskflow.timeline.store import TimelineStore

__all__ = ["BackfillError", "BackfillPlan", "BackfillStatus", "Backfills", "ChunkState", "chunk_partitions",
           "chunk_run_id", "chunk_state", "count_partitions", "plan_backfill"]

#: a backfill as a whole: running (runners launch its chunks), paused (Ctrl-C), canceled, done
BackfillStatus = Literal["running", "paused", "canceled", "done"]
#: a chunk, derived from its queue row and catalog run
ChunkState = Literal["pending", "running", "done", "failed", "canceled"]
_NAMESPACE = uuid.UUID("0c8f6d0e-2a7b-4f51-8f0e-3f8b5d9a1c27")
#: a failed chunk is tried this many times in all (the first run + one retry on resume)
MAX_ATTEMPTS = 2


class BackfillError(DaskflowError):
    """A backfill that cannot be planned, found or resumed (one line naming it and the fix)."""


@dataclasses.dataclass(frozen=True)
class BackfillPlan:
    pipeline: str                    # what launchers load (absolute path or module name)
    selection: str                   # the partitioned assets, comma-joined
    asset_keys: tuple[str, ...]
    partition_selection: str
    partitions: tuple[str, ...]      # every partition key, definition order
    chunks: tuple[tuple[str, ...], ...]
    left_out: tuple[str, ...] = ()   # selected but unpartitioned assets


def chunk_partitions(keys: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """Consecutive chunks of ``size`` keys (the last may be shorter).

    >>> chunk_partitions(["a", "b", "c", "d", "e"], 2)
    [('a', 'b'), ('c', 'd'), ('e',)]
    """
    if int(size) < 1:
        raise BackfillError(f"backfill: --chunk must be at least 1, got {size}")
    keys = list(keys)
    return [tuple(keys[i:i + int(size)]) for i in range(0, len(keys), int(size))]


def chunk_run_id(backfill_id: str, chunk: int, attempt: int) -> str:
    """The run id of one attempt of one chunk (the same attempt always names the same run)."""
    return uuid.uuid5(_NAMESPACE, f"{backfill_id}\0{chunk}\0{attempt}").hex


def chunk_state(n_partitions: int, queue_status: str | None, run_status: str | None) -> ChunkState:
    """A chunk's state from its queue row and catalog run (pure).

    >>> chunk_state(3, "finished", "success"), chunk_state(3, "finished", None), chunk_state(3, "queued", None)
    ('done', 'failed', 'pending')
    """
    if n_partitions == 0 or run_status == "success":
        return "done"
    if run_status == "canceled" or queue_status == "canceled":
        return "canceled"
    if run_status not in (None, "running"):  # failure, abandoned, ...
        return "failed"
    if queue_status == "finished":  # the launcher is gone: never started, or a run still 'running' abandoned
        return "failed"
    if run_status == "running" or queue_status == "started":
        return "running"
    return "pending"


def count_partitions(chunks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Partitions per state over chunk rows (``n_partitions``, ``done_before``, ``state``)."""
    counts = {state: 0 for state in ("done", "failed", "running", "pending", "canceled")}
    for chunk in chunks:
        counts["done"] += int(chunk["done_before"])
        if chunk["n_partitions"]:
            counts[chunk["state"]] += int(chunk["n_partitions"])
    return counts


def plan_backfill(pipeline: str, partition_selection: str, selection: str | None = None,
                  chunk_size: int = 1) -> BackfillPlan:
    """Resolve what a backfill runs, without writing anything (raises one-line errors)."""
    from daskflow.graph import build_asset_graph
    from daskflow.loading import load_definitions
    from daskflow.partitions import parse_partition_selection

    target = os.path.abspath(pipeline) if pipeline.endswith(".py") else pipeline
    graph = build_asset_graph(load_definitions(target))
    keys = graph.select(selection)
    partitioned = [key for key in keys if graph.spec(key).partitions is not None]
    left_out = tuple(key for key in keys if graph.spec(key).partitions is None)
    if not partitioned:
        raise BackfillError(f"backfill of {pipeline}: the selection {selection or '*'!r} has no partitioned "
                            "assets; select partitioned ones with --select")
    found = []
    for key in partitioned:
        if graph.spec(key).partitions not in found:
            found.append(graph.spec(key).partitions)
    if len(found) > 1:
        kinds = ", ".join(p.describe() for p in found)
        raise BackfillError(f"backfill of {pipeline}: the selection mixes differently partitioned assets "
                            f"({kinds}); backfill one partitioning at a time with --select")
    partitions = parse_partition_selection(found[0], partition_selection, partitioned[0])
    return BackfillPlan(target, ",".join(partitioned), tuple(partitioned), partition_selection, tuple(partitions),
                        tuple(chunk_partitions(partitions, chunk_size)), left_out)


class Backfills:
    """Backfill rows on a :class:`TimelineStore` (same file, same connection)."""

    def __init__(self, store: TimelineStore):
        self.store = store
        self.queue = RunQueue(store)

    # -- create ----------------------------------------------------------
    def create(self, plan: BackfillPlan, max_concurrent_runs: int, tags: Mapping[str, str] | None = None,
               backfill_id: str | None = None) -> str:
        """Persist the backfill, its chunks and their queue rows in one transaction; returns its id."""
        if int(max_concurrent_runs) < 1:
            raise BackfillError(f"backfill: --max-concurrent-runs must be at least 1, got {max_concurrent_runs}")
        backfill_id = backfill_id or f"bf-{uuid.uuid4().hex[:10]}"
        tags = dict(tags or {})
        now_s = time.time()
        chunk_rows, entries = [], []
        for index, partitions in enumerate(plan.chunks):
            run_id = chunk_run_id(backfill_id, index, 1)
            chunk_rows.append((backfill_id, index, json.dumps(partitions), len(partitions), run_id))
            entries.append(self._entry(backfill_id, plan.pipeline, plan.selection, index, 1, run_id, partitions,
                                       tags, max_concurrent_runs))
        with self.store._transaction() as conn:
            conn.execute(
                "INSERT INTO timeline_backfills (backfill_id, pipeline, selection, asset_keys, partition_selection, "
                "chunk_size, max_concurrent_runs, n_partitions, n_chunks, status, tags, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (backfill_id, plan.pipeline, plan.selection, json.dumps(plan.asset_keys), plan.partition_selection,
                 max(len(c) for c in plan.chunks) if plan.chunks else 0, int(max_concurrent_runs),
                 len(plan.partitions), len(plan.chunks), json.dumps(tags), now_s, now_s))
            conn.executemany("INSERT INTO timeline_backfill_chunks (backfill_id, chunk, partitions, n_partitions, "
                             "run_id) VALUES (?, ?, ?, ?, ?)", chunk_rows)
            RunQueue.insert(conn, entries, now_s)
        return backfill_id

    @staticmethod
    def _entry(backfill_id: str, pipeline: str, selection: str, chunk: int, attempt: int, run_id: str,
               partitions: Sequence[str], tags: Mapping[str, str], limit: int) -> QueueEntry:
        run_tags = {**tags, "trigger": "backfill", "backfill": backfill_id, "chunk": str(chunk),
                    "attempt": str(attempt)}
        return QueueEntry(run_id, "backfill", backfill_id, pool=tags.get("pool"), origin_limit=int(limit),
                          spec={"pipeline": pipeline, "selection": selection, "partitions": list(partitions),
                                "tags": run_tags})

    # -- read ------------------------------------------------------------
    def get(self, backfill_id: str) -> dict[str, Any]:
        rows = self.store._query("SELECT * FROM timeline_backfills WHERE backfill_id = ?", (backfill_id,))
        if not rows:
            known = [r["backfill_id"] for r in self.store._query(
                "SELECT backfill_id FROM timeline_backfills ORDER BY created_at DESC LIMIT 5")]
            raise BackfillError(f"no backfill {backfill_id!r} in {str(self.store.path)!r}; known: "
                                f"{', '.join(known) or 'none'} (see `daskflow backfill status`)")
        row = dict(rows[0])
        row["tags"], row["asset_keys"] = json.loads(row["tags"]), json.loads(row["asset_keys"])
        return row

    def ids(self, limit: int = 20) -> list[str]:
        return [r["backfill_id"] for r in self.store._query(
            "SELECT backfill_id FROM timeline_backfills ORDER BY created_at DESC, rowid DESC LIMIT ?", (int(limit),))]

    def chunks(self, backfill_id: str) -> list[dict[str, Any]]:
        """Chunk rows with their derived ``state`` and their run's times."""
        rows = self.store._query(
            "SELECT c.*, q.status AS queue_status, q.message AS message, r.status AS run_status, "
            "r.started_at AS started_at, r.finished_at AS finished_at FROM timeline_backfill_chunks c "
            "LEFT JOIN timeline_queue q ON q.run_id = c.run_id LEFT JOIN runs r ON r.run_id = c.run_id "
            "WHERE c.backfill_id = ? ORDER BY c.chunk", (backfill_id,))
        chunks = []
        for row in rows:
            chunk = dict(row)
            chunk["partitions"] = json.loads(chunk["partitions"])
            chunk["state"] = chunk_state(chunk["n_partitions"], chunk["queue_status"], chunk["run_status"])
            chunks.append(chunk)
        return chunks

    def status(self, backfill_id: str, update: bool = True) -> dict[str, Any]:
        """The backfill row with partition counts per state (``done``, ``failed``, ``running``, ``pending``, ...).

        A running or paused backfill with nothing left to run is reported (and, with ``update``, stored) ``done``.
        """
        row = self.get(backfill_id)
        chunks = self.chunks(backfill_id)
        counts = count_partitions(chunks)
        finished = all(c["state"] in ("done", "failed", "canceled") for c in chunks)
        status = row["status"]
        if finished and status in ("running", "paused"):
            if update:
                self.set_status(backfill_id, "done", only_from=status)
            status = "done"
        return {"backfill_id": backfill_id, "pipeline": row["pipeline"], "selection": row["selection"],
                "partition_selection": row["partition_selection"], "status": status,
                "n_partitions": row["n_partitions"], "n_chunks": row["n_chunks"], "chunk_size": row["chunk_size"],
                "max_concurrent_runs": row["max_concurrent_runs"], "tags": row["tags"],
                "created_at": row["created_at"], "finished": finished, **counts,
                "retryable_chunks": sum(1 for c in chunks if c["state"] == "failed" and c["attempt"] < MAX_ATTEMPTS)}

    # -- change ----------------------------------------------------------
    def set_status(self, backfill_id: str, status: BackfillStatus, only_from: str | None = None) -> bool:
        with self.store._transaction() as conn:
            sql = "UPDATE timeline_backfills SET status = ?, updated_at = ? WHERE backfill_id = ?"
            params: list[Any] = [status, time.time(), backfill_id]
            if only_from is not None:
                sql, params = sql + " AND status = ?", [*params, only_from]
            return conn.execute(sql, params).rowcount == 1

    def resume(self, backfill_id: str) -> int:
        """Set a paused/done backfill running again; retry each failed chunk once. Returns chunks retried."""
        row = self.get(backfill_id)
        if row["status"] == "canceled":
            raise BackfillError(f"backfill {backfill_id!r} was canceled; start a new one with `daskflow backfill`")
        asset_keys = row["asset_keys"]
        retried = 0
        for chunk in self.chunks(backfill_id):
            if chunk["state"] != "failed" or chunk["attempt"] >= MAX_ATTEMPTS:
                continue
            done = self._materialized_partitions(chunk["run_id"], chunk["partitions"], asset_keys)
            remaining = [p for p in chunk["partitions"] if p not in done]
            attempt = chunk["attempt"] + 1
            run_id = chunk_run_id(backfill_id, chunk["chunk"], attempt)
            entry = self._entry(backfill_id, row["pipeline"], row["selection"], chunk["chunk"], attempt, run_id,
                                remaining, row["tags"], row["max_concurrent_runs"])
            with self.store._transaction() as conn:
                updated = conn.execute(
                    "UPDATE timeline_backfill_chunks SET partitions = ?, n_partitions = ?, "
                    "done_before = done_before + ?, attempt = ?, run_id = ? "
                    "WHERE backfill_id = ? AND chunk = ? AND attempt = ?",
                    (json.dumps(remaining), len(remaining), len(done), attempt, run_id, backfill_id,
                     chunk["chunk"], chunk["attempt"])).rowcount
                if updated and remaining:
                    RunQueue.insert(conn, [entry], time.time())
            retried += bool(updated)
        self.set_status(backfill_id, "running")
        return retried

    def _materialized_partitions(self, run_id: str, partitions: Sequence[str], asset_keys: Sequence[str]) -> set[str]:
        """Partitions of ``partitions`` for which ``run_id`` materialized every asset of the backfill."""
        marks = ",".join("?" * len(asset_keys))
        rows = self.store._query(
            f"SELECT partition, COUNT(DISTINCT asset_key) AS n FROM materializations WHERE run_id = ? AND "
            f"asset_key IN ({marks}) GROUP BY partition", (run_id, *asset_keys))
        wanted = set(partitions)
        return {r["partition"] for r in rows if r["n"] == len(asset_keys) and r["partition"] in wanted}

    def cancel(self, backfill_id: str) -> dict[str, list[str]]:
        """Cancel: queued chunks never start; returns ``{"canceled": [...], "running": [...]}`` run ids."""
        self.get(backfill_id)
        self.set_status(backfill_id, "canceled")
        queued = [e.run_id for e in self.queue.entries(status="queued", trigger="backfill", origin=backfill_id)]
        canceled = self.queue.cancel_queued(queued, message=f"backfill {backfill_id} canceled")
        running = [e.run_id for e in self.queue.entries(status="started", trigger="backfill", origin=backfill_id)]
        return {"canceled": canceled, "running": running}
