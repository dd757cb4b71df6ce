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

The other tables hold cursors (schedule: evaluated up to; sensor: its cursor
string and last tick), one row per sensor evaluation (status and message), and
the daemon lease (a single row: owner, heartbeat).

All times are unix seconds (REAL), like the catalog's ``runs`` table.
"""

from __future__ import annotations

import sqlite3

__all__ = ["TIMELINE_TABLES", "migrate_timeline"]

TIMELINE_TABLES = ("timeline_launches", "timeline_schedules", "timeline_sensors", "timeline_sensor_ticks",
                   "timeline_daemon")

_DDL = """
CREATE TABLE IF NOT EXISTS timeline_launches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger TEXT NOT NULL,                 -- 'schedule' | 'sensor'
    origin TEXT NOT NULL,                  -- schedule / sensor name
    key TEXT NOT NULL,                     -- schedule: tick time ISO 8601 UTC, sensor: run key
    tick_time REAL NOT NULL,               -- the cron time / the sensor evaluation (unix s)
    status TEXT NOT NULL,                  -- claimed | launched | skipped | failed
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
"""


def migrate_timeline(conn: sqlite3.Connection) -> None:
    """Create the timeline tables if missing (idempotent; run inside the caller's transaction)."""
    for statement in _DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
