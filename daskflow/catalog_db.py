"""The catalog's SQLite connection: open, migrate, transactions, row <-> record.

Design note
-----------
One SQLite file (stdlib ``sqlite3``) shared by every run and process that uses
the same home. Concurrency comes from SQLite itself: WAL journaling (readers
never block the one writer), a busy timeout (writers wait for each other
instead of failing with "database is locked"), and short ``BEGIN IMMEDIATE``
transactions (take the write lock up front, so two writers cannot deadlock
upgrading a read lock). A connection is opened lazily per process (after
``fork`` a fresh one is made) and shared by threads behind a lock. Opening
applies the ordered migrations of :mod:`daskflow.catalog_migrations`.

:class:`CatalogDB` knows SQL mechanics only; what the tables mean is
:class:`daskflow.catalog.Catalog`'s business.
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
from typing import Any, Iterable, Iterator, Mapping

from daskflow import config
from daskflow.catalog_migrations import migrate
from daskflow.errors import CatalogError

__all__ = ["CatalogDB", "insert_row", "to_record"]

_JSON_COLUMNS = frozenset({"partitions", "tags", "payload", "metadata"})

# Connections inherited through fork() are parked here instead of closed: closing
# them in the child could checkpoint/unlink the WAL under the parent's feet.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


class CatalogDB:
    """A lazily opened, per-process, thread-shared connection to one catalog file."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.busy_timeout_s = _busy_timeout_s()
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None

    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def connection(self) -> sqlite3.Connection:
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
        migrate(conn, str(self.path))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction holding the write lock from the start."""
        with self._lock:
            conn = self.connection()
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

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self.connection().execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                raise CatalogError(f"catalog {str(self.path)!r}: query failed: {exc}") from exc

    def select(self, cls: type, table: str, order: str, limit: int | None = None, **equal: Any) -> list[Any]:
        """Records of ``cls`` from ``table`` whose columns equal the non-None ``equal`` values."""
        conditions = [(column, value) for column, value in equal.items() if value is not None]
        where = " AND ".join(f"{column} = ?" for column, _ in conditions) or "1"
        params = [value for _, value in conditions]
        sql = f"SELECT * FROM {table} WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, int(limit)]
        return [to_record(cls, row) for row in self.query(sql, params)]


def _busy_timeout_s() -> float:
    from dask.utils import parse_timedelta

    return float(parse_timedelta(config.get("catalog.busy-timeout"), default="s"))


def insert_row(conn: sqlite3.Connection, table: str, values: Mapping[str, Any]) -> int:
    """INSERT one row (dict/list values stored as JSON); returns its rowid."""
    encoded = [
        json.dumps(v, default=str) if isinstance(v, (dict, list)) else v for v in values.values()
    ]
    sql = f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"
    return int(conn.execute(sql, encoded).lastrowid)


def to_record(cls: type, row: sqlite3.Row) -> Any:
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
