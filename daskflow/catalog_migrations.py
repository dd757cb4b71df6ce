"""Ordered schema migrations of the SQLite catalog.

Design note
-----------
The schema version lives in ``PRAGMA user_version``. :data:`MIGRATIONS` is an
ordered list: ``MIGRATIONS[n]`` takes a catalog from version ``n`` to
``n + 1`` (so the newest version is ``len(MIGRATIONS)``). At open,
:func:`migrate` applies every step the file lacks, each in its own
``BEGIN IMMEDIATE`` transaction together with its ``user_version`` bump: a
crash or an error leaves the file at the last completed version, never half
way. Several processes may open an old file at once; each step re-reads the
version under the write lock, so it runs exactly once.

A later issue that needs a table appends one small function here
(``def _v1_to_v2(conn): conn.execute("CREATE TABLE ...")``) and a test that
opens the committed version-1 fixture (``tests/fixtures/catalog_v1.sqlite``).
Never edit a migration that has shipped: a catalog made with it exists.

A catalog made by a newer daskflow (version above :data:`SCHEMA_VERSION`) is
refused with a clear error instead of being modified.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from daskflow.errors import CatalogError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

#: version 0 -> 1: runs, run events, materializations, lineage, check results
_V1_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT, selection TEXT,
    partitions TEXT,                                   -- JSON list, NULL: all/none
    status TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,  -- unix seconds
    tags TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS run_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, timestamp REAL NOT NULL,
    kind TEXT NOT NULL, asset_key TEXT, partition TEXT, message TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS run_events_run ON run_events (run_id, id);
CREATE TABLE IF NOT EXISTS materializations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, asset_key TEXT NOT NULL,
    partition TEXT,                                    -- NULL: unpartitioned
    path TEXT NOT NULL, format TEXT NOT NULL, rows INTEGER, bytes INTEGER, schema TEXT,
    host TEXT, worker TEXT, code_version TEXT, data_version TEXT NOT NULL, duration_s REAL,
    created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS materializations_latest ON materializations (asset_key, partition, id);
CREATE INDEX IF NOT EXISTS materializations_run ON materializations (run_id);
CREATE TABLE IF NOT EXISTS lineage (
    materialization_id INTEGER NOT NULL REFERENCES materializations (id),
    upstream_id INTEGER NOT NULL REFERENCES materializations (id),
    PRIMARY KEY (materialization_id, upstream_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lineage_upstream ON lineage (upstream_id, materialization_id);
CREATE TABLE IF NOT EXISTS check_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, asset_key TEXT NOT NULL,
    partition TEXT, check_name TEXT NOT NULL, passed INTEGER NOT NULL, blocking INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT '', metadata TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS check_results_run ON check_results (run_id, id);
CREATE INDEX IF NOT EXISTS check_results_asset ON check_results (asset_key, partition, id);
"""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    # Not conn.executescript: it COMMITs first, which would end the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    """The first schema: runs, run_events, materializations, lineage, check_results."""
    _execute_script(conn, _V1_SQL)


#: version 1 -> 2: reliability (checks gate data, one attempt one file, runs always end, resume)
_V2_SQL = """
ALTER TABLE materializations ADD COLUMN check_status TEXT NOT NULL DEFAULT 'none';
ALTER TABLE materializations ADD COLUMN failed_check TEXT;
ALTER TABLE materializations ADD COLUMN attempt TEXT;
CREATE INDEX IF NOT EXISTS materializations_path ON materializations (path);
ALTER TABLE check_results ADD COLUMN materialization_id INTEGER;
ALTER TABLE runs ADD COLUMN heartbeat_at REAL;
ALTER TABLE runs ADD COLUMN reason TEXT;
ALTER TABLE runs ADD COLUMN resumed_from TEXT;
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS superseded_files (
    path TEXT PRIMARY KEY, materialization_id INTEGER NOT NULL, run_id TEXT NOT NULL,
    superseded_at REAL NOT NULL);
UPDATE materializations SET check_status = 'failed', failed_check = (
    SELECT c.check_name FROM check_results c WHERE c.run_id = materializations.run_id
    AND c.asset_key = materializations.asset_key AND c.partition IS materializations.partition
    AND c.blocking = 1 AND c.passed = 0 ORDER BY c.id LIMIT 1)
WHERE EXISTS (
    SELECT 1 FROM check_results c WHERE c.run_id = materializations.run_id
    AND c.asset_key = materializations.asset_key AND c.partition IS materializations.partition
    AND c.blocking = 1 AND c.passed = 0)
"""


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Reliability columns and the superseded-attempt table.

    * ``materializations.check_status`` (``none`` | ``pending`` | ``passed`` |
      ``failed``) and ``failed_check``: a materialization whose blocking check
      failed (or never finished) is not usable. Version-1 rows get ``failed``
      where a failed blocking check result of the same run and asset-partition
      exists (version 1 did not link check results to materializations).
    * ``materializations.attempt``: the attempt token in the file name.
    * ``check_results.materialization_id``: the materialization checked.
    * ``runs.heartbeat_at`` / ``reason`` / ``resumed_from``: liveness, why a
      run ended as it did (``abandoned``), and the run it resumed.
    * ``superseded_files``: files of attempts Dask replaced (for ``daskflow gc``).
    """
    _execute_script(conn, _V2_SQL)


def _timeline_tables(conn: sqlite3.Connection) -> None:
    """The timeline: launches ledger, cursors, daemon lease, run queue, backfills (idempotent, see
    :mod:`daskflow.timeline.schema`)."""
    # lazy: the timeline package imports the catalog
    from daskflow.timeline.schema import migrate_timeline

    migrate_timeline(conn)


#: ``MIGRATIONS[n]`` migrates version ``n`` to ``n + 1``; append only
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v0_to_v1,
    _v1_to_v2,
    _timeline_tables,
]

#: the version this daskflow writes: ``len(MIGRATIONS)``
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, where: str,
    migrations: list[Callable[[sqlite3.Connection], None]] | None = None,
) -> int:
    """Bring the catalog on ``conn`` to the newest version; returns it.

    ``conn`` must be in autocommit mode (``isolation_level=None``); ``where``
    names the file in errors. ``migrations`` defaults to :data:`MIGRATIONS`
    (read at call time, so a test may extend the list).
    """
    steps = MIGRATIONS if migrations is None else migrations
    latest = len(steps)
    version = schema_version(conn)
    if version > latest:
        raise CatalogError(
            f"the catalog {where!r} has schema version {version}, newer than this "
            f"daskflow understands ({latest}); upgrade daskflow or use another "
            "daskflow.catalog.path"
        )
    while version < latest:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)  # another process may have just done this step
            if version < latest:
                steps[version](conn)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return version
