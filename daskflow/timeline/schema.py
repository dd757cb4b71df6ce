"""The timeline's tables in the catalog's SQLite file: one idempotent migration.

Design note
-----------
``timeline_launches`` is the exactly-once ledger. Every schedule tick and every
sensor run request becomes one row, claimed by an INSERT under
``UNIQUE (trigger, origin, key)`` — ``key`` is the tick time (ISO 8601, UTC)
of a schedule or the run key of a sensor — *before* anything is launched. The
claimed row carries a pre-generated ``run_id``, which the launched
``materialize`` uses; the catalog's ``runs.run_id`` primary key then tells
whether the run started (and refuses a second start), so a crash between
claim and launch neither skips nor duplicates a run.

The next tables hold cursors (schedule: evaluated up to; sensor: its cursor
string and last tick), one row per sensor evaluation (status and message), and
the daemon lease (a single row: owner, heartbeat).

Later tables (same migration, see :func:`migrate_timeline`):

* ``timeline_queue`` -- every run the timeline wants to launch (schedule
  tick, sensor request, backfill chunk), keyed by its pre-generated run id.
  ``queued`` rows start in ``id`` order when the global limit
  (``daskflow.runs.max-concurrent``), their pool's limit
  (``daskflow.runs.pools``, the run's ``pool`` tag) and their origin's limit
  (a backfill's ``--max-concurrent-runs``) allow; admission is one
  ``BEGIN IMMEDIATE`` transaction, so two processes never over-admit
  (:mod:`daskflow.timeline.queue`).
* ``timeline_backfills`` / ``timeline_backfill_chunks`` -- a backfill and its
  chunks (partitions, attempt, run id); a chunk's state is derived from its
  queue row and its catalog run, never kept twice
  (:mod:`daskflow.timeline.backfill`).
* ``next_tick_at`` on schedules and sensors, written by the daemon, read by
  the runs page.

The catalog's ordered migrations (:mod:`daskflow.catalog_migrations`) call
:func:`migrate_timeline` as one step; it is idempotent (``IF NOT EXISTS``,
columns added only when missing) so a catalog whose tables an earlier
daskflow created by hand is brought to the same shape. Change it only by
adding statements, never by editing them.

All times are unix seconds (REAL), like the catalog's ``runs`` table.
"""

from __future__ import annotations

import sqlite3

__all__ = ["TIMELINE_TABLES", "migrate_timeline"]

TIMELINE_TABLES = ("timeline_launches", "timeline_schedules", "timeline_sensors", "timeline_sensor_ticks",
                   "timeline_daemon", "timeline_queue", "timeline_backfills", "timeline_backfill_chunks")

_DDL = """
CREATE TABLE IF NOT EXISTS timeline_launches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger TEXT NOT NULL,                 -- 'schedule' | 'sensor'
    origin TEXT NOT NULL,                  -- schedule / sensor name
    key TEXT NOT NULL,                     -- schedule: tick time ISO 8601 UTC, sensor: run key
    tick_time REAL NOT NULL,               -- the cron time / the sensor evaluation (unix s)
    status TEXT NOT NULL,                  -- claimed | launched | skipped | failed | canceled
    run_id TEXT UNIQUE,                    -- pre-generated at claim, NULL for skipped ticks
    pipeline TEXT, selection TEXT,
    partitions TEXT,                       -- JSON: a selection string or a list, NULL: none
    tags TEXT NOT NULL DEFAULT '{}',       -- JSON: stored on the run (trigger, origin, run key, ...)
    message TEXT NOT NULL DEFAULT '',
    claimed_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (trigger, origin, key));
CREATE INDEX IF NOT EXISTS timeline_launches_status ON timeline_launches (status, id);
CREATE INDEX IF NOT EXISTS timeline_launches_origin ON timeline_launches (trigger, origin, tick_time);
CREATE TABLE IF NOT EXISTS timeline_schedules (
    name TEXT PRIMARY KEY, evaluated_until REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS timeline_sensors (
    name TEXT PRIMARY KEY, cursor TEXT, last_tick_at REAL, last_status TEXT,
    last_message TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS timeline_sensor_ticks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sensor TEXT NOT NULL, tick_time REAL NOT NULL,
    status TEXT NOT NULL,                  -- requested | skipped | error
    message TEXT NOT NULL DEFAULT '', requests INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS timeline_sensor_ticks_sensor ON timeline_sensor_ticks (sensor, id);
CREATE TABLE IF NOT EXISTS timeline_daemon (
    id INTEGER PRIMARY KEY CHECK (id = 1), token TEXT NOT NULL, pid INTEGER NOT NULL,
    host TEXT NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS timeline_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- admission order
    run_id TEXT NOT NULL UNIQUE,
    trigger TEXT NOT NULL,                 -- 'schedule' | 'sensor' | 'backfill'
    origin TEXT NOT NULL,                  -- schedule / sensor name, backfill id
    pool TEXT,                             -- the run's 'pool' tag (NULL: none)
    origin_limit INTEGER,                  -- at most this many of the origin's runs at once (NULL: no limit)
    status TEXT NOT NULL,                  -- queued | started | finished | canceled
    spec TEXT NOT NULL,                    -- JSON: pipeline, selection, partitions, tags
    runner TEXT, host TEXT, launcher_pid INTEGER,  -- who started it
    message TEXT NOT NULL DEFAULT '',
    enqueued_at REAL NOT NULL, started_at REAL, finished_at REAL);
CREATE INDEX IF NOT EXISTS timeline_queue_status ON timeline_queue (status, id);
CREATE INDEX IF NOT EXISTS timeline_queue_origin ON timeline_queue (trigger, origin, status);
CREATE TABLE IF NOT EXISTS timeline_backfills (
    backfill_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, selection TEXT NOT NULL,
    asset_keys TEXT NOT NULL,              -- JSON list: the partitioned assets each chunk materializes
    partition_selection TEXT NOT NULL, chunk_size INTEGER NOT NULL, max_concurrent_runs INTEGER NOT NULL,
    n_partitions INTEGER NOT NULL, n_chunks INTEGER NOT NULL,
    status TEXT NOT NULL,                  -- running | paused | canceled | done
    tags TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS timeline_backfill_chunks (
    backfill_id TEXT NOT NULL, chunk INTEGER NOT NULL,
    partitions TEXT NOT NULL,              -- JSON list of the partition keys this attempt runs
    n_partitions INTEGER NOT NULL,
    done_before INTEGER NOT NULL DEFAULT 0,  -- partitions an earlier attempt of this chunk materialized
    attempt INTEGER NOT NULL DEFAULT 1, run_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (backfill_id, chunk)) WITHOUT ROWID;
"""

#: columns added after the first release of the tables above: (table, column, declaration)
_COLUMNS = (
    ("timeline_schedules", "next_tick_at", "REAL"),
    ("timeline_sensors", "next_tick_at", "REAL"),
)


def migrate_timeline(conn: sqlite3.Connection) -> None:
    """Create the timeline tables if missing (idempotent; run inside the caller's transaction)."""
    for statement in _DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    for table, column, declaration in _COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
