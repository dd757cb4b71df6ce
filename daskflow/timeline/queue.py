"""The run queue: every run the timeline launches waits here until limits allow it to start.

Design note
-----------
Schedule ticks, sensor requests and backfill chunks become rows of
``timeline_queue`` keyed by their pre-generated run id (``INSERT ... ON
CONFLICT DO NOTHING``: enqueuing twice is harmless). A *runner* -- the daemon,
or a ``daskflow backfill`` command in the foreground -- calls
:meth:`QueueRunner.step` every tick:

1. **reap** its own finished launcher processes (a launcher that died before
   its run started is queued again, up to :data:`MAX_LAUNCH_CRASHES` times);
2. **reconcile and admit**, in one ``BEGIN IMMEDIATE`` transaction: queued
   rows whose run already exists are marked started; started rows whose
   launcher is gone are finished (their run ended) or queued again (it never
   started); then :func:`admit` -- pure -- picks queued rows in ``id`` order
   that fit the global limit (``daskflow.runs.max-concurrent``), their pool
   (``daskflow.runs.pools``, by the run's ``pool`` tag; a pool not configured
   has no limit of its own), their origin's limit (a backfill's
   ``--max-concurrent-runs``) and the runner's free launcher slots. A row
   blocked only by its pool or origin does not hold back the rows after it.
3. **launch** the admitted rows in launcher processes.

Because admission holds the write lock, several runners on one catalog never
start more runs than the limits allow between them; because each run id is
the catalog's ``runs`` primary key, a row admitted twice after a crash still
runs once. Backfill rows are admitted only while their backfill is
``running`` (a paused or canceled backfill keeps its rows queued / canceled).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from daskflow import config
from daskflow.timeline.launch import EXIT_LAUNCH_ERROR
from daskflow.timeline.store import Launch, TimelineStore, _alive

__all__ = ["MAX_LAUNCH_CRASHES", "QueueEntry", "QueueRunner", "QueueStatus", "RunLimits", "RunQueue", "admit",
           "entry_from_launch"]

#: life of a queue row: queued -> started -> finished; queued -> canceled
QueueStatus = Literal["queued", "started", "finished", "canceled"]
#: a launcher that dies this many times before starting its run is recorded as failed
MAX_LAUNCH_CRASHES = 3
#: how often a runner asks the catalog to end runs whose heartbeat stopped
ABANDONED_CHECK_INTERVAL_S = 5.0
#: queued rows looked at per admission (the head of the queue)
_ADMISSION_WINDOW = 2000


@dataclasses.dataclass(frozen=True)
class QueueEntry:
    """A row of ``timeline_queue``."""

    run_id: str
    trigger: str
    origin: str
    spec: dict[str, Any]             # pipeline, selection, partitions, tags
    pool: str | None = None
    origin_limit: int | None = None
    status: QueueStatus = "queued"
    id: int = 0
    runner: str | None = None
    host: str | None = None
    launcher_pid: int | None = None
    message: str = ""
    enqueued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None


@dataclasses.dataclass(frozen=True)
class RunLimits:
    """How many queued runs may run at once: globally (None: no limit) and per pool."""

    max_concurrent: int | None = None
    pools: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls) -> RunLimits:
        limit = config.get("runs.max-concurrent")
        pools = config.get("runs.pools") or {}
        return cls(None if limit is None else int(limit), {str(k): int(v) for k, v in dict(pools).items()})


def admit(queued: Sequence[QueueEntry], active: Sequence[QueueEntry], limits: RunLimits,
          capacity: int) -> list[QueueEntry]:
    """The queued entries to start now, in queue order (pure).

    >>> q = [QueueEntry(f"r{i}", "backfill", "b", {}, pool="wh") for i in range(4)]
    >>> [e.run_id for e in admit(q, [], RunLimits(3, {"wh": 2}), capacity=10)]
    ['r0', 'r1']
    """
    running = len(active)
    per_pool: dict[str, int] = {}
    per_origin: dict[tuple[str, str], int] = {}
    for entry in active:
        if entry.pool is not None:
            per_pool[entry.pool] = per_pool.get(entry.pool, 0) + 1
        per_origin[(entry.trigger, entry.origin)] = per_origin.get((entry.trigger, entry.origin), 0) + 1
    chosen: list[QueueEntry] = []
    for entry in queued:
        if len(chosen) >= capacity or (limits.max_concurrent is not None and running >= limits.max_concurrent):
            break
        origin = (entry.trigger, entry.origin)
        pool_limit = limits.pools.get(entry.pool) if entry.pool is not None else None
        if pool_limit is not None and per_pool.get(entry.pool, 0) >= pool_limit:
            continue
        if entry.origin_limit is not None and per_origin.get(origin, 0) >= entry.origin_limit:
            continue
        chosen.append(entry)
        running += 1
        per_origin[origin] = per_origin.get(origin, 0) + 1
        if entry.pool is not None:
            per_pool[entry.pool] = per_pool.get(entry.pool, 0) + 1
    return chosen


def entry_from_launch(launch: Launch) -> QueueEntry:
    """The queue row of a claimed schedule tick or sensor request."""
    tags = dict(launch.tags)
    return QueueEntry(launch.run_id, launch.trigger, launch.origin, pool=tags.get("pool"),
                      spec={"pipeline": launch.pipeline, "selection": launch.selection,
                            "partitions": launch.partitions, "tags": tags})


def _to_entry(row: Any) -> QueueEntry:
    values = {k: row[k] for k in row.keys() if k in _FIELDS}  # noqa: SIM118 - a sqlite3.Row
    values["spec"] = json.loads(values["spec"])
    return QueueEntry(**values)


_FIELDS = {f.name for f in dataclasses.fields(QueueEntry)}


class RunQueue:
    """``timeline_queue`` on a :class:`TimelineStore` (same file, same connection)."""

    def __init__(self, store: TimelineStore):
        self.store = store

    @staticmethod
    def insert(conn, entries: Sequence[QueueEntry], now_s: float) -> int:
        """Enqueue inside the caller's transaction; an existing run id is left alone. Returns rows inserted."""
        before = conn.total_changes
        conn.executemany(
            "INSERT INTO timeline_queue (run_id, trigger, origin, pool, origin_limit, status, spec, enqueued_at) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (run_id) DO NOTHING",
            [(e.run_id, e.trigger, e.origin, e.pool, e.origin_limit, json.dumps(e.spec), now_s) for e in entries])
        return conn.total_changes - before

    def enqueue(self, entries: Sequence[QueueEntry]) -> int:
        if not entries:
            return 0
        with self.store._transaction() as conn:
            return self.insert(conn, entries, time.time())

    def entries(self, status: str | None = None, trigger: str | None = None, origin: str | None = None,
                limit: int | None = None) -> list[QueueEntry]:
        """Queue rows in queue order (filters optional)."""
        conditions = [(c, v) for c, v in (("status", status), ("trigger", trigger), ("origin", origin)) if v]
        sql = "SELECT * FROM timeline_queue WHERE " + (" AND ".join(f"{c} = ?" for c, _ in conditions) or "1")
        sql += " ORDER BY id" + ("" if limit is None else f" LIMIT {int(limit)}")
        return [_to_entry(row) for row in self.store._query(sql, [v for _, v in conditions])]

    def get(self, run_id: str) -> QueueEntry | None:
        rows = self.store._query("SELECT * FROM timeline_queue WHERE run_id = ?", (run_id,))
        return _to_entry(rows[0]) if rows else None

    def set_launcher(self, run_id: str, pid: int | None) -> None:
        with self.store._transaction() as conn:
            conn.execute("UPDATE timeline_queue SET launcher_pid = ? WHERE run_id = ?", (pid, run_id))

    def finish(self, run_id: str, message: str = "") -> None:
        with self.store._transaction() as conn:
            conn.execute("UPDATE timeline_queue SET status = 'finished', message = ?, finished_at = ? "
                         "WHERE run_id = ? AND status = 'started'", (message, time.time(), run_id))

    def requeue(self, run_id: str, message: str = "") -> None:
        with self.store._transaction() as conn:
            conn.execute("UPDATE timeline_queue SET status = 'queued', runner = NULL, host = NULL, "
                         "launcher_pid = NULL, started_at = NULL, message = ? WHERE run_id = ? AND status = 'started'",
                         (message, run_id))

    def cancel_queued(self, run_ids: Sequence[str], message: str = "canceled") -> list[str]:
        """Cancel rows still queued; returns the run ids canceled (a row already started is not)."""
        canceled = []
        with self.store._transaction() as conn:
            for run_id in run_ids:
                if conn.execute("UPDATE timeline_queue SET status = 'canceled', message = ?, finished_at = ? "
                                "WHERE run_id = ? AND status = 'queued'", (message, time.time(), run_id)).rowcount:
                    conn.execute("UPDATE timeline_launches SET status = 'canceled', message = ?, updated_at = ? "
                                 "WHERE run_id = ? AND status = 'claimed'", (message, time.time(), run_id))
                    canceled.append(run_id)
        return canceled

    # -- admission -------------------------------------------------------
    def admit(self, runner: str, host: str, in_flight: set[str], limits: RunLimits, capacity: int,
              now_s: float, only: tuple[str, str] | None = None) -> list[QueueEntry]:
        """Reconcile started rows, then mark and return the rows ``runner`` may launch now.

        ``only=(trigger, origin)``: admit only that origin's rows (a backfill command runs its own chunks).
        """
        with self.store._transaction() as conn:
            # queued rows whose run exists already (started by an earlier launcher, or canceled)
            conn.execute(
                "UPDATE timeline_queue SET status = CASE WHEN (SELECT status FROM runs WHERE runs.run_id = "
                "timeline_queue.run_id) = 'running' THEN 'started' ELSE 'finished' END, started_at = ? "
                "WHERE status = 'queued' AND EXISTS (SELECT 1 FROM runs WHERE runs.run_id = timeline_queue.run_id)",
                (now_s,))
            started = conn.execute(
                "SELECT q.*, r.status AS run_status FROM timeline_queue q LEFT JOIN runs r ON r.run_id = q.run_id "
                "WHERE q.status = 'started' ORDER BY q.id").fetchall()
            active = []
            for row in started:
                if _is_active(row, runner, host, in_flight):
                    active.append(_to_entry(row))
                elif row["run_status"] is None:  # its launcher died before the run started: again
                    conn.execute("UPDATE timeline_queue SET status = 'queued', runner = NULL, host = NULL, "
                                 "launcher_pid = NULL, started_at = NULL WHERE run_id = ?", (row["run_id"],))
                else:
                    message = "" if row["run_status"] != "running" else "its launcher died while the run was running"
                    conn.execute("UPDATE timeline_queue SET status = 'finished', finished_at = ?, message = ? "
                                 "WHERE run_id = ?", (now_s, message, row["run_id"]))
            if capacity <= 0:
                return []
            where, params = "", ()
            if only is not None:
                where, params = " AND q.trigger = ? AND q.origin = ?", tuple(only)
            queued = [_to_entry(row) for row in conn.execute(
                "SELECT q.* FROM timeline_queue q LEFT JOIN timeline_backfills b ON q.trigger = 'backfill' "
                "AND b.backfill_id = q.origin WHERE q.status = 'queued' AND (q.trigger != 'backfill' OR "
                f"b.status = 'running'){where} ORDER BY q.id LIMIT {_ADMISSION_WINDOW}", params).fetchall()]
            chosen = admit(queued, active, limits, capacity)
            # Until the launcher exists, the admitting process stands for it: if it dies before
            # spawning, the row is free again; once spawned, set_launcher() stores the launcher's pid.
            pid = os.getpid()
            conn.executemany("UPDATE timeline_queue SET status = 'started', runner = ?, host = ?, started_at = ?, "
                             "launcher_pid = ? WHERE run_id = ? AND status = 'queued'",
                             [(runner, host, now_s, pid, entry.run_id) for entry in chosen])
            return [dataclasses.replace(e, status="started", runner=runner, host=host, started_at=now_s,
                                        launcher_pid=pid) for e in chosen]


def _is_active(row: Any, runner: str, host: str, in_flight: set[str]) -> bool:
    """Whether a started row still holds a slot: its launcher lives (or, elsewhere, its run runs).

    A launcher without a pid (a pool that reports none) counts as gone for every other runner.
    """
    if row["runner"] == runner:
        return row["run_id"] in in_flight
    if row["host"] == host and row["launcher_pid"] is not None:
        return _alive(row["launcher_pid"])
    return row["run_status"] == "running"


class QueueRunner:
    """Reaps, admits and launches queue rows with one launcher pool (see the module note)."""

    def __init__(self, store: TimelineStore, pool: Any, limits: RunLimits | None = None,
                 runner: str | None = None, only: tuple[str, str] | None = None):
        self.store, self.pool, self.only = store, pool, only
        self.queue = RunQueue(store)
        self.limits = limits or RunLimits.from_config()
        self.runner = runner or uuid.uuid4().hex
        self.host = socket.gethostname()
        self.crashes: dict[str, int] = {}  # run_id -> launcher deaths before its run started
        self.launched = 0
        self._abandoned_checked_s = float("-inf")
        self._catalog: Any = None

    def step(self, now_s: float | None = None) -> list[tuple[str, str]]:
        """Reap, admit, launch. Returns ``(run_id, message)`` of launches that failed for good."""
        now_s = time.time() if now_s is None else now_s
        self._mark_abandoned(time.time())  # heartbeats are wall-clock times, whatever clock the runner ticks by
        failed = []
        for run_id, code, line in self.pool.reap():
            if self.store.run_started(run_id):
                self.queue.finish(run_id, line)
                continue
            if code == EXIT_LAUNCH_ERROR:
                message = line or "the launcher failed before starting the run"
            else:
                crashes = self.crashes[run_id] = self.crashes.get(run_id, 0) + 1
                if crashes < MAX_LAUNCH_CRASHES:
                    self.queue.requeue(run_id, f"launcher exited with {code} before starting the run")
                    continue
                message = f"the launcher died {crashes} times (exit {code}) before starting the run: {line}"
            self.queue.finish(run_id, message)
            failed.append((run_id, message))
        capacity = self.pool.free_slots()
        for entry in self.queue.admit(self.runner, self.host, set(self.pool.in_flight), self.limits,
                                      capacity, now_s, self.only):
            self.pool.start(_as_launch(entry))
            self.queue.set_launcher(entry.run_id, getattr(self.pool.in_flight.get(entry.run_id), "pid", None))
            self.launched += 1
        return failed


    def _mark_abandoned(self, now_s: float) -> None:
        """Runs whose heartbeat stopped (a killed launcher) end as abandoned, where the catalog can tell."""
        if now_s - self._abandoned_checked_s < ABANDONED_CHECK_INTERVAL_S:
            return
        self._abandoned_checked_s = now_s
        from daskflow.catalog import Catalog

        if hasattr(Catalog, "mark_abandoned_runs"):  # catalogs with run heartbeats only
            if self._catalog is None:
                self._catalog = Catalog(self.store.path)
            self._catalog.mark_abandoned_runs(now_s)


def _as_launch(entry: QueueEntry) -> Launch:
    spec = entry.spec
    return Launch(entry.trigger, entry.origin, entry.run_id, 0.0, entry.run_id, spec.get("pipeline"),
                  spec.get("selection"), spec.get("partitions"), dict(spec.get("tags") or {}))

