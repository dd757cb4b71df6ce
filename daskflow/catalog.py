"""The catalog: runs, events, materializations, lineage and checks in SQLite.

Design note
-----------
One SQLite file (stdlib ``sqlite3``), default ``<home>/catalog.sqlite``, shared
by every run and process that uses the same home. Concurrency comes from
SQLite itself: WAL journaling (readers never block the one writer), a busy
timeout (writers wait for each other instead of failing with "database is
locked"), and short ``BEGIN IMMEDIATE`` transactions (take the write lock up
front, so two writers cannot deadlock upgrading a read lock). A connection is
opened lazily per process (after ``fork`` a fresh one is made) and shared by
threads behind a lock.

Materialization rows are the record of truth for "what data exists": the
caller writes the data file first (atomically, see :mod:`daskflow.storage`)
and only then calls :meth:`Catalog.record_materialization`, which stores the
row *and* its lineage edges in one transaction. So a row never points at a
missing or partial file, and a crash leaves at worst an unreferenced file.

Data versions make "is this asset up to date?" a pure function:
``data_version = H(code_version, sorted(upstream data versions))`` (see
:func:`compute_data_version`). An asset is stale when it was never
materialized, its code version changed, or the data version its inputs would
produce now differs from the one recorded.

The schema version lives in ``PRAGMA user_version``; opening a catalog made by
a newer daskflow fails with a clear error instead of corrupting it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import sqlite3
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Mapping

from daskflow import config
from daskflow.errors import CatalogError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from daskflow.storage import StoredObject

__all__ = [
    "SCHEMA_VERSION", "Catalog", "CheckResult", "LineageNode", "Materialization", "RunEvent",
    "RunRecord", "compute_data_version", "data_locations_schema",
]

SCHEMA_VERSION = 1

_SCHEMA_SQL = """
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

_JSON_COLUMNS = frozenset({"partitions", "tags", "payload", "metadata"})

# Connections inherited through fork() are parked here instead of closed: closing
# them in the child could checkpoint/unlink the WAL under the parent's feet.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


from daskflow.catalog_records import (  # noqa: F401 - re-exported
    CheckResult,
    LineageNode,
    Materialization,
    RunEvent,
    RunRecord,
    compute_data_version,
    data_locations_schema,
)


def _stored_fields(stored: "StoredObject | Mapping[str, Any]") -> dict[str, Any]:
    if isinstance(stored, Mapping):
        fields = dict(stored)
    elif dataclasses.is_dataclass(stored):
        fields = dataclasses.asdict(stored)
    else:
        raise CatalogError(
            f"record_materialization got stored={type(stored).__name__}; expected a "
            "daskflow.storage.StoredObject or a mapping with path, format, rows, bytes, ..."
        )
    if not fields.get("path"):
        raise CatalogError(
            f"record_materialization: stored={fields!r} has no 'path'; write the data with "
            "AssetStore.write first and pass its StoredObject"
        )
    return fields


class Catalog:
    """The SQLite catalog of runs, events, materializations, lineage and checks.

    ``path`` defaults to config ``daskflow.catalog.path``, else
    ``<home>/catalog.sqlite``. The catalog pickles as its path, so it can be
    passed to other processes; each process opens its own connection.

    >>> import tempfile, os
    >>> catalog = Catalog(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
    >>> run = catalog.start_run(pipeline="etl")
    >>> m = catalog.record_materialization(run.run_id, "orders",
    ...     {"path": "/data/orders/r.parquet", "format": "parquet", "rows": 3, "bytes": 100},
    ...     code_version="v1")
    >>> catalog.latest_materialization("orders").rows
    3
    >>> catalog.finish_run(run.run_id, "success").status
    'success'
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        if path is None:
            path = config.get("catalog.path") or (config.home() / "catalog.sqlite")
        self.path = pathlib.Path(path).expanduser().absolute()
        self.busy_timeout_s = _busy_timeout_s()
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- connection ------------------------------------------------------
    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _conn(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        if self._connection is not None:  # inherited through fork
            _INHERITED_CONNECTIONS.append(self._connection)
        self._connection = self._open()
        self._pid = os.getpid()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; the connection
            # is shared by this process's threads behind self._lock.
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as exc:
            raise CatalogError(
                f"cannot open the catalog {str(self.path)!r}: {exc}; check the path "
                "(config daskflow.catalog.path / DASKFLOW_HOME) is a writable local file"
            ) from exc
        conn.row_factory = sqlite3.Row
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                self._initialise(conn)
                return conn
            except sqlite3.DatabaseError as exc:
                # Switching a brand-new file to WAL may report "locked" without
                # waiting for the busy handler when processes race to create it.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                conn.close()
                raise CatalogError(
                    f"cannot open the catalog {str(self.path)!r}: {exc}; if it is not a daskflow "
                    "catalog (or is corrupt), move it away or set daskflow.catalog.path"
                ) from exc
            except BaseException:
                conn.close()
                raise

    def _initialise(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CatalogError(
                f"the catalog {str(self.path)!r} cannot use WAL journaling (got {mode!r}), which "
                "concurrent runs need; put daskflow.catalog.path on a local disk"
            )
        # NORMAL in WAL mode: durable across application crashes, one fsync per
        # checkpoint instead of per commit (cheap per-asset bookkeeping).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"the catalog {str(self.path)!r} has schema version {version}, newer than this "
                f"daskflow understands ({SCHEMA_VERSION}); upgrade daskflow or use another "
                "daskflow.catalog.path"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:  # another process may have just done it
                for statement in _SCHEMA_SQL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction holding the write lock from the start."""
        with self._lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise CatalogError(
                    f"the catalog {str(self.path)!r} stayed locked for more than "
                    f"{self.busy_timeout_s:g} s ({exc}); another process holds a long write "
                    "transaction — raise daskflow.catalog.busy-timeout or retry"
                ) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise CatalogError(f"catalog {str(self.path)!r}: write failed: {exc}") from exc
                raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn().execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                raise CatalogError(f"catalog {str(self.path)!r}: query failed: {exc}") from exc

    def _select(
        self, cls: type, table: str, order: str, limit: int | None = None, **equal: Any
    ) -> list[Any]:
        """Records of ``cls`` from ``table`` whose columns equal the non-None ``equal`` values."""
        conditions = [(column, value) for column, value in equal.items() if value is not None]
        where = " AND ".join(f"{column} = ?" for column, _ in conditions) or "1"
        params = [value for _, value in conditions]
        sql = f"SELECT * FROM {table} WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, int(limit)]
        return [_to_record(cls, row) for row in self._query(sql, params)]

    # -- runs ------------------------------------------------------------
    def start_run(
        self, run_id: str | None = None, pipeline: str | None = None, selection: str | None = None,
        partitions: Iterable[str] | None = None, tags: Mapping[str, Any] | None = None,
        status: str = "running",
    ) -> RunRecord:
        """Insert a run (``run_id`` defaults to a fresh uuid hex) and return it."""
        record = RunRecord(
            run_id=run_id or uuid.uuid4().hex, pipeline=pipeline, selection=selection,
            partitions=None if partitions is None else [str(p) for p in partitions],
            status=status, started_at=time.time(), finished_at=None, tags=dict(tags or {}),
        )
        try:
            with self._transaction() as conn:
                _insert(conn, "runs", dataclasses.asdict(record))
        except sqlite3.IntegrityError as exc:
            raise CatalogError(
                f"run {record.run_id!r} already exists in {str(self.path)!r}; use a new run_id"
            ) from exc
        return record

    def finish_run(self, run_id: str, status: str) -> RunRecord:
        """Set a run's final ``status`` (e.g. "success", "failure") and finish time."""
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, time.time(), run_id),
            ).rowcount
        run = self.get_run(run_id)
        if not updated or run is None:
            raise CatalogError(f"run {run_id!r} is not in the catalog; call start_run first")
        return run

    def get_run(self, run_id: str) -> RunRecord | None:
        runs = self._select(RunRecord, "runs", "run_id", run_id=run_id)
        return runs[0] if runs else None

    def runs(
        self, limit: int | None = 50, pipeline: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first."""
        return self._select(
            RunRecord, "runs", "started_at DESC, rowid DESC", limit, pipeline=pipeline, status=status
        )

    # -- events ----------------------------------------------------------
    def log_event(
        self, run_id: str, kind: str, message: str = "", asset_key: str | None = None,
        partition: str | None = None, payload: Mapping[str, Any] | None = None,
        timestamp: float | None = None,
    ) -> int:
        """Append one event to a run's log; returns its id."""
        event = dict(run_id=run_id, kind=kind, message=message, asset_key=asset_key,
                     partition=partition, payload=payload, timestamp=timestamp)
        return self.log_events([event])[0]

    def log_events(self, events: Iterable[Mapping[str, Any]]) -> list[int]:
        """Append several events (dicts of :meth:`log_event`'s arguments) in one transaction."""
        rows = [
            {
                "run_id": event["run_id"],
                "timestamp": event.get("timestamp") or time.time(),
                "kind": event["kind"],
                "asset_key": event.get("asset_key"),
                "partition": event.get("partition"),
                "message": event.get("message") or "",
                "payload": dict(event.get("payload") or {}),
            }
            for event in events
        ]
        with self._transaction() as conn:
            return [_insert(conn, "run_events", row) for row in rows]

    def events(self, run_id: str, kind: str | None = None) -> list[RunEvent]:
        """A run's events in the order they were logged."""
        return self._select(RunEvent, "run_events", "id", run_id=run_id, kind=kind)

    # -- materializations ------------------------------------------------
    def record_materialization(
        self, run_id: str, asset_key: str, stored: "StoredObject | Mapping[str, Any]",
        partition: str | None = None, code_version: str | None = None,
        data_version: str | None = None, duration_s: float | None = None,
        upstream_ids: Iterable[int] = (),
    ) -> int:
        """Record a durable stored value and its lineage; returns the new id.

        Call only after :meth:`AssetStore.write` returned. The row and its
        lineage edges (to the materializations in ``upstream_ids`` it read)
        are written in one transaction. ``data_version`` defaults to
        :func:`compute_data_version` of ``code_version`` and the upstream
        materializations' data versions; without a code version the run id
        stands in for it, so such an asset is new data on every run.
        """
        fields = _stored_fields(stored)
        upstream = sorted({int(i) for i in upstream_ids})
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT id, data_version FROM materializations WHERE id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(upstream),),
            ).fetchall()
            missing = sorted(set(upstream) - {row["id"] for row in found})
            if missing:
                raise CatalogError(
                    f"asset {asset_key!r}: upstream materialization ids {missing} are not in the "
                    f"catalog {str(self.path)!r}; pass ids returned by record_materialization / "
                    "latest_materialization"
                )
            if data_version is None:
                effective_code = code_version if code_version is not None else f"run:{run_id}"
                data_version = compute_data_version(effective_code, [r["data_version"] for r in found])
            materialization_id = _insert(conn, "materializations", {
                "run_id": run_id, "asset_key": asset_key, "partition": partition,
                "path": fields["path"], "format": fields.get("format", "parquet"),
                "rows": _optional(int, fields.get("rows")), "bytes": _optional(int, fields.get("bytes")),
                "schema": fields.get("schema"), "host": fields.get("host"),
                "worker": fields.get("worker"), "code_version": code_version,
                "data_version": data_version, "duration_s": _optional(float, duration_s),
                "created_at": time.time(),
            })
            conn.executemany(
                "INSERT INTO lineage (materialization_id, upstream_id) VALUES (?, ?)",
                [(materialization_id, upstream_id) for upstream_id in upstream],
            )
        return materialization_id

    def get_materialization(self, materialization_id: int) -> Materialization | None:
        found = self._select(Materialization, "materializations", "id", id=int(materialization_id))
        return found[0] if found else None

    def materializations(
        self, run_id: str | None = None, asset_key: str | None = None, limit: int | None = None
    ) -> list[Materialization]:
        """Materializations filtered by run and/or asset, oldest first."""
        return self._select(
            Materialization, "materializations", "id", limit, run_id=run_id, asset_key=asset_key
        )

    def latest_materialization(
        self, asset_key: str, partition: str | None = None, *, any_partition: bool = False
    ) -> Materialization | None:
        """The newest materialization of one asset-partition (None: never).

        ``partition=None`` means the unpartitioned value; ``any_partition=True``
        returns the newest of any partition.
        """
        partition_filter = "" if any_partition else " AND partition IS ?"
        params = (asset_key,) if any_partition else (asset_key, partition)
        rows = self._query(
            f"SELECT * FROM materializations WHERE asset_key = ?{partition_filter} "
            "ORDER BY id DESC LIMIT 1",
            params,
        )
        return _to_record(Materialization, rows[0]) if rows else None

    def latest_materializations(
        self, asset_keys: Iterable[str] | None = None
    ) -> dict[tuple[str, str | None], Materialization]:
        """The newest materialization per (asset_key, partition)."""
        return {
            (row["asset_key"], row["partition"]): _to_record(Materialization, row)
            for row in self._latest_rows(asset_keys)
        }

    def _latest_rows(self, asset_keys: Iterable[str] | None) -> list[sqlite3.Row]:
        if asset_keys is None:
            where, params = "", ()
        else:
            where = "WHERE asset_key IN (SELECT value FROM json_each(?))"
            params = (json.dumps(sorted({str(k) for k in asset_keys})),)
        return self._query(
            "SELECT * FROM materializations WHERE id IN "
            f"(SELECT MAX(id) FROM materializations {where} GROUP BY asset_key, partition) "
            "ORDER BY asset_key, partition",
            params,
        )

    def data_locations(self, asset_keys: Iterable[str] | None = None) -> "pa.Table":
        """Where the current data of each asset-partition lives, as a ``pyarrow.Table``.

        One row per (asset_key, partition): its latest materialization's path,
        rows, bytes, host, worker, id and creation time (schema:
        :func:`data_locations_schema`). This is the Arrow data-location
        metadata the steering plugin uses for locality.
        """
        import pyarrow as pa

        rows = self._latest_rows(asset_keys)
        schema = data_locations_schema()
        source = {"materialization_id": "id"}
        columns = {name: [row[source.get(name, name)] for row in rows] for name in schema.names}
        columns["created_at"] = [int(round(t * 1_000_000)) for t in columns["created_at"]]
        return pa.Table.from_arrays(
            [pa.array(columns[field.name], type=field.type) for field in schema], schema=schema
        )

    # -- lineage ---------------------------------------------------------
    def lineage(
        self, asset_key_or_materialization_id: str | int,
        direction: Literal["upstream", "downstream"] = "upstream", depth: int | None = None,
    ) -> list[LineageNode]:
        """Walk lineage edges from a materialization (or an asset's latest ones).

        Starting from a materialization id, or from the latest materialization
        of every partition of an asset key, follow edges ``upstream`` (what it
        read) or ``downstream`` (what read it) up to ``depth`` hops (None: all).
        Returns the start node(s) at depth 0, then each reached materialization
        once, at its smallest depth, ordered by depth then id.
        """
        if direction not in ("upstream", "downstream"):
            raise CatalogError(
                f"lineage direction {direction!r} is unknown; use 'upstream' or 'downstream'"
            )
        start = asset_key_or_materialization_id
        if isinstance(start, int):
            roots = [start] if self.get_materialization(start) is not None else []
            if not roots:
                raise CatalogError(f"materialization {start} is not in the catalog")
        else:
            roots = [m.id for m in self.latest_materializations([start]).values()]
            if not roots:
                raise CatalogError(
                    f"asset {start!r} has no materialization in the catalog; materialize it first"
                )
        if direction == "upstream":
            edge_sql = "SELECT materialization_id AS origin, upstream_id AS reached FROM lineage"
            edge_sql += " WHERE materialization_id IN (SELECT value FROM json_each(?))"
        else:
            edge_sql = "SELECT upstream_id AS origin, materialization_id AS reached FROM lineage"
            edge_sql += " WHERE upstream_id IN (SELECT value FROM json_each(?))"
        found: dict[int, tuple[int, int | None]] = {root: (0, None) for root in roots}
        frontier = sorted(roots)
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            next_frontier = []
            for row in self._query(edge_sql + " ORDER BY origin, reached", (json.dumps(frontier),)):
                reached = row["reached"]
                if reached not in found:
                    found[reached] = (level, row["origin"])
                    next_frontier.append(reached)
            frontier = sorted(set(next_frontier))
        by_id = {
            row["id"]: _to_record(Materialization, row)
            for row in self._query(
                "SELECT * FROM materializations WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(found)),),
            )
        }
        nodes = [LineageNode(by_id[i], d, via) for i, (d, via) in found.items() if i in by_id]
        return sorted(nodes, key=lambda node: (node.depth, node.materialization.id))

    def upstream_ids(self, materialization_id: int) -> list[int]:
        """The materialization ids one materialization read (its direct inputs)."""
        rows = self._query(
            "SELECT upstream_id FROM lineage WHERE materialization_id = ? ORDER BY upstream_id",
            (int(materialization_id),),
        )
        return [row["upstream_id"] for row in rows]

    # -- staleness -------------------------------------------------------
    def is_stale(
        self, asset_key: str, partition: str | None, code_version: str | None,
        input_data_versions: Iterable[str] | Mapping[str, str] = (),
    ) -> tuple[bool, str]:
        """Whether an asset-partition needs re-materializing, and why.

        Stale when never materialized, when it has no ``code_version`` (then
        daskflow cannot know whether the code changed), when the code version
        differs from the latest materialization's, or when the inputs' current
        data versions give a different data version than the recorded one.
        """
        latest = self.latest_materialization(asset_key, partition)
        where = asset_key if partition is None else f"{asset_key}[{partition}]"
        if latest is None:
            return True, f"{where} was never materialized"
        if code_version is None:
            return True, (
                f"{where} has no code_version, so changes cannot be detected; set "
                "@asset(code_version=...) to let only_stale skip it"
            )
        if latest.code_version != code_version:
            return True, (
                f"{where}: code version changed from {latest.code_version!r} to {code_version!r}"
            )
        expected = compute_data_version(code_version, input_data_versions)
        if expected != latest.data_version:
            return True, (
                f"{where}: upstream data changed since materialization {latest.id} "
                f"(run {latest.run_id})"
            )
        return False, (
            f"{where}: up to date (code version {code_version!r}, inputs unchanged since "
            f"materialization {latest.id}, run {latest.run_id})"
        )

    # -- checks ----------------------------------------------------------
    def record_check_result(
        self, run_id: str, asset_key: str, check_name: str, passed: bool,
        partition: str | None = None, blocking: bool = False, message: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Store one check outcome; returns its id."""
        row = {
            "run_id": run_id, "asset_key": asset_key, "partition": partition,
            "check_name": check_name, "passed": bool(passed), "blocking": bool(blocking),
            "message": message or "", "metadata": dict(metadata or {}), "created_at": time.time(),
        }
        with self._transaction() as conn:
            return _insert(conn, "check_results", row)

    def check_results(
        self, run_id: str | None = None, asset_key: str | None = None
    ) -> list[CheckResult]:
        """Check results filtered by run and/or asset, in the order recorded."""
        return self._select(CheckResult, "check_results", "id", run_id=run_id, asset_key=asset_key)


def _busy_timeout_s() -> float:
    from dask.utils import parse_timedelta

    value = config.get("catalog.busy-timeout", "30s")
    return float(parse_timedelta(value, default="s"))


def _insert(conn: sqlite3.Connection, table: str, values: Mapping[str, Any]) -> int:
    """INSERT one row (dict/list values stored as JSON); returns its rowid."""
    encoded = [
        json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for v in values.values()
    ]
    sql = f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"
    return int(conn.execute(sql, encoded).lastrowid)


def _optional(kind: type, value: Any) -> Any:
    # numpy integers/floats (common in task metadata) cannot be bound by sqlite3.
    return None if value is None else kind(value)


def _to_record(cls: type, row: sqlite3.Row) -> Any:
    """A record dataclass from a row: JSON columns decoded, 0/1 back to bool."""
    values = {}
    for field in dataclasses.fields(cls):
        value = row[field.name]
        if field.name in _JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif field.type == "bool":
            value = bool(value)
        values[field.name] = value
    return cls(**values)
