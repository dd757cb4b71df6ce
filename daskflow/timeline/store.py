"""Durable timeline state in the catalog's SQLite file: claims, cursors, the daemon lease.

Design note
-----------
Exactly-once is a property of the database, never of memory (schema and the
argument: :mod:`daskflow.timeline.schema`):

1. **claim** — a tick or run request is an INSERT into ``timeline_launches``
   under a unique key, with a fresh ``run_id``, in the *same* transaction that
   advances the schedule's cursor or stores the sensor's cursor. A second claim
   of the same key inserts nothing (:meth:`TimelineStore.claim` returns only
   what it inserted).
2. **launch** — ``materialize(run_id=...)`` of a claimed row; its
   ``catalog.start_run`` inserts ``runs.run_id`` (a primary key), so a run
   starts at most once even if two launchers race.
3. **reconcile** — claimed rows whose run id is in ``runs`` become
   ``launched`` (:meth:`TimelineStore.mark_started`); claimed rows without a run
   after a restart are launched again with the same run id.

The lease is one row: a daemon takes it when it is absent, stale (no heartbeat
for ``timeout_s``) or held by a dead process on this host; every claim checks
the caller's token in its transaction (fencing), so a daemon that lost its
lease cannot claim.

Connections are the catalog's own (:class:`~daskflow.catalog_db.CatalogDB`):
WAL, a busy timeout, short ``BEGIN IMMEDIATE`` transactions, one connection
per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from daskflow.catalog_db import CatalogDB
from daskflow.timeline.errors import DaemonLeaseError
from daskflow.timeline.schema import migrate_timeline

__all__ = ["Launch", "LaunchClaim", "LaunchStatus", "SensorState", "TimelineStore", "Trigger"]

#: what started a run (the ``trigger`` tag on ``runs.tags``; a run without one was started by hand: "manual")
Trigger = Literal["schedule", "sensor", "backfill", "manual"]
#: life of a ``timeline_launches`` row: claimed -> launched | failed | canceled; skipped rows are never launched
LaunchStatus = Literal["claimed", "launched", "skipped", "failed", "canceled"]


@dataclasses.dataclass(frozen=True)
class LaunchClaim:
    """One run to launch exactly once: a schedule tick or a sensor run request."""

    trigger: Trigger
    origin: str             # the schedule / sensor name
    key: str                # tick time (ISO, UTC) or run key
    tick_time: float        # unix seconds
    run_id: str | None      # None: a skipped tick (recorded, never launched)
    pipeline: str | None = None
    selection: str | None = None
    partitions: Any = None  # str | list[str] | None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    status: LaunchStatus = "claimed"  # claims are "claimed" or "skipped"
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Launch(LaunchClaim):
    """A row of ``timeline_launches``."""

    id: int = 0
    claimed_at: float = 0.0
    updated_at: float = 0.0


@dataclasses.dataclass(frozen=True)
class SensorState:
    cursor: str | None
    last_tick_at: float | None
    last_status: str | None
    last_message: str


def _to_launch(row: sqlite3.Row) -> Launch:
    values = dict(row)
    values["tags"] = json.loads(values["tags"] or "{}")
    values["partitions"] = None if values["partitions"] is None else json.loads(values["partitions"])
    return Launch(**values)


class TimelineStore:
    """Timeline tables beside the catalog's, in the same SQLite file.

    >>> import tempfile, os
    >>> store = TimelineStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
    >>> claim = LaunchClaim("sensor", "files", "a.csv", 0.0, "run-1")
    >>> [c.key for c in store.claim([claim])], store.claim([claim])
    (['a.csv'], [])
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        from daskflow.catalog import Catalog

        catalog = Catalog(path)  # same default path; its schema (the runs table) is created first
        catalog.get_run("")
        catalog.close()
        self.path = catalog.path
        self._db = CatalogDB(self.path)  # the catalog's connection mechanics: WAL, busy timeout, per process
        self.busy_timeout_s = self._db.busy_timeout_s
        with self.transaction() as conn:
            migrate_timeline(conn)

    def __repr__(self) -> str:
        return f"TimelineStore({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A short ``BEGIN IMMEDIATE`` write transaction (:meth:`CatalogDB.transaction`)."""
        return self._db.transaction()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._db.query(sql, params)

    # -- lease -----------------------------------------------------------
    def acquire_lease(self, token: str, pid: int, host: str, now_s: float, timeout_s: float) -> None:
        """Take the daemon lease, or raise :class:`DaemonLeaseError` naming the holder."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM timeline_daemon WHERE id = 1").fetchone()
            if row is not None and row["token"] != token:
                fresh = now_s - row["heartbeat_at"] < timeout_s
                dead_here = row["host"] == host and not _alive(row["pid"])
                if fresh and not dead_here:
                    raise DaemonLeaseError(
                        f"another daskflow daemon (pid {row['pid']} on {row['host']}) holds the lease of "
                        f"{str(self.path)!r}, last heartbeat {now_s - row['heartbeat_at']:.0f} s ago; "
                        f"stop it first, or wait {timeout_s:g} s after it died "
                        "(daskflow.timeline.lease-timeout)")
            conn.execute(
                "INSERT INTO timeline_daemon (id, token, pid, host, started_at, heartbeat_at) "
                "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET token = excluded.token, "
                "pid = excluded.pid, host = excluded.host, started_at = excluded.started_at, "
                "heartbeat_at = excluded.heartbeat_at", (token, pid, host, now_s, now_s))

    def heartbeat(self, token: str, now_s: float) -> bool:
        """Refresh the lease; False when another daemon took it (then stop claiming)."""
        with self.transaction() as conn:
            return conn.execute("UPDATE timeline_daemon SET heartbeat_at = ? WHERE id = 1 AND token = ?",
                                (now_s, token)).rowcount == 1

    def release_lease(self, token: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM timeline_daemon WHERE id = 1 AND token = ?", (token,))

    def lease(self) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM timeline_daemon WHERE id = 1")
        return dict(rows[0]) if rows else None

    @staticmethod
    def _fence(conn: sqlite3.Connection, token: str | None) -> None:
        if token is None:
            return
        row = conn.execute("SELECT token FROM timeline_daemon WHERE id = 1").fetchone()
        if row is None or row["token"] != token:
            raise DaemonLeaseError("this daemon lost the catalog lease to another daemon; it stops claiming "
                                   "(restart it once the other one is gone)")

    # -- claims ----------------------------------------------------------
    @staticmethod
    def _insert_claims(conn: sqlite3.Connection, claims: Sequence[LaunchClaim], now_s: float) -> list[LaunchClaim]:
        inserted = []
        for claim in claims:
            cursor = conn.execute(
                "INSERT INTO timeline_launches (trigger, origin, key, tick_time, status, run_id, pipeline, "
                "selection, partitions, tags, message, claimed_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trigger, origin, key) DO NOTHING",
                (claim.trigger, claim.origin, claim.key, claim.tick_time, claim.status, claim.run_id,
                 claim.pipeline, claim.selection,
                 None if claim.partitions is None else json.dumps(claim.partitions),
                 json.dumps(claim.tags), claim.message, now_s, now_s))
            if cursor.rowcount == 1:
                inserted.append(claim)
        return inserted

    def claim(self, claims: Sequence[LaunchClaim], token: str | None = None) -> list[LaunchClaim]:
        """Insert claims whose key is new; returns those inserted (a repeated key is refused)."""
        with self.transaction() as conn:
            self._fence(conn, token)
            return self._insert_claims(conn, claims, time.time())

    def schedule_cursor(self, name: str) -> float | None:
        """Unix time up to which ``name``'s ticks are decided (None: never evaluated)."""
        rows = self.query("SELECT evaluated_until FROM timeline_schedules WHERE name = ?", (name,))
        return rows[0]["evaluated_until"] if rows else None

    def record_schedule_tick(self, name: str, claims: Sequence[LaunchClaim], evaluated_until_s: float,
                             token: str | None = None) -> list[LaunchClaim]:
        """Claim a schedule's ticks and advance its cursor, atomically."""
        with self.transaction() as conn:
            self._fence(conn, token)
            now_s = time.time()
            inserted = self._insert_claims(conn, claims, now_s)
            conn.execute(
                "INSERT INTO timeline_schedules (name, evaluated_until, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET evaluated_until = MAX(evaluated_until, excluded.evaluated_until), "
                "updated_at = excluded.updated_at", (name, evaluated_until_s, now_s))
            return inserted

    def sensor_state(self, name: str) -> SensorState:
        rows = self.query("SELECT * FROM timeline_sensors WHERE name = ?", (name,))
        if not rows:
            return SensorState(None, None, None, "")
        row = rows[0]
        return SensorState(row["cursor"], row["last_tick_at"], row["last_status"], row["last_message"])

    def record_sensor_tick(self, name: str, tick_time_s: float, status: str, message: str,
                           claims: Sequence[LaunchClaim], cursor: str | None,
                           token: str | None = None) -> list[LaunchClaim]:
        """Claim a sensor evaluation's run keys, store its cursor and log the tick, atomically.

        Run keys already claimed (by an earlier evaluation) are refused silently:
        a run key launches at most once, ever. An ``error`` tick keeps the old cursor.
        """
        with self.transaction() as conn:
            self._fence(conn, token)
            inserted = self._insert_claims(conn, claims, time.time())
            conn.execute("INSERT INTO timeline_sensor_ticks (sensor, tick_time, status, message, requests) "
                         "VALUES (?, ?, ?, ?, ?)", (name, tick_time_s, status, message, len(inserted)))
            keep_cursor = status == "error"
            conn.execute(
                "INSERT INTO timeline_sensors (name, cursor, last_tick_at, last_status, last_message) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                f"cursor = {'timeline_sensors.cursor' if keep_cursor else 'excluded.cursor'}, "
                "last_tick_at = excluded.last_tick_at, last_status = excluded.last_status, "
                "last_message = excluded.last_message",
                (name, None if keep_cursor else cursor, tick_time_s, status, message))
            return inserted

    def sensor_ticks(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM timeline_sensor_ticks WHERE sensor = ? ORDER BY id DESC LIMIT ?",
                           (name, int(limit)))
        return [dict(row) for row in rows][::-1]

    def set_next_tick(self, table: Literal["timeline_schedules", "timeline_sensors"], name: str,
                      next_tick_s: float | None) -> None:
        """When a schedule / sensor ticks next (for the runs page; never read for decisions)."""
        with self.transaction() as conn:
            if table == "timeline_schedules":
                conn.execute("INSERT INTO timeline_schedules (name, evaluated_until, updated_at, next_tick_at) "
                             "VALUES (?, 0, ?, ?) ON CONFLICT (name) DO UPDATE SET next_tick_at = excluded.next_tick_at",
                             (name, time.time(), next_tick_s))
            else:
                conn.execute("INSERT INTO timeline_sensors (name, next_tick_at) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET next_tick_at = excluded.next_tick_at", (name, next_tick_s))

    # -- launches --------------------------------------------------------
    def launches(self, trigger: str | None = None, origin: str | None = None,
                 status: str | None = None) -> list[Launch]:
        """Rows of ``timeline_launches`` (filters optional), in claim order."""
        conditions = [(c, v) for c, v in (("trigger", trigger), ("origin", origin), ("status", status)) if v]
        where = " AND ".join(f"{c} = ?" for c, _ in conditions) or "1"
        rows = self.query(f"SELECT * FROM timeline_launches WHERE {where} ORDER BY id", [v for _, v in conditions])
        return [_to_launch(row) for row in rows]

    def mark_started(self) -> int:
        """Claimed rows whose run exists in the catalog's ``runs`` become ``launched``; returns how many."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE timeline_launches SET status = 'launched', updated_at = ? WHERE status = 'claimed' "
                "AND EXISTS (SELECT 1 FROM runs WHERE runs.run_id = timeline_launches.run_id)",
                (time.time(),)).rowcount

    def run_started(self, run_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def mark_failed(self, run_id: str, message: str) -> None:
        """A launch that never started a run (bad selection, import error): recorded, not retried."""
        with self.transaction() as conn:
            conn.execute("UPDATE timeline_launches SET status = 'failed', message = ?, updated_at = ? "
                         "WHERE run_id = ? AND status = 'claimed'", (message, time.time(), run_id))


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return _not_zombie(int(pid))


def _not_zombie(pid: int) -> bool:
    # A SIGKILLed child of a still-running parent (a test) is a zombie until reaped: dead for us.
    try:
        status = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rpartition(")")[2].split()[:1] != ["Z"]
