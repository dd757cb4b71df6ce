"""The catalog: runs, events, materializations, lineage and checks in SQLite.

Design note
-----------
One SQLite file, default ``<home>/catalog.sqlite``, shared by every run and
process that uses the same home; the connection, WAL/busy-timeout
concurrency and transactions are :mod:`daskflow.catalog_db`, the ordered
schema migrations :mod:`daskflow.catalog_migrations`, lineage walks
:mod:`daskflow.catalog_lineage`, and the returned records
:mod:`daskflow.catalog_records`. This module says what the tables mean.

Materialization rows are the record of truth for "what data exists": the
caller writes the data file first (atomically, see :mod:`daskflow.storage`)
and only then calls :meth:`Catalog.record_materialization`, which stores the
row *and* its lineage edges in one transaction. So a row never points at a
missing or partial file, and a crash leaves at worst an unreferenced file.

Data versions make "is this asset up to date?" a pure function:
``data_version = H(code_version, sorted(upstream data versions))`` (see
:func:`compute_data_version` and :func:`assess_staleness`). An asset is stale
when it was never materialized, its code version changed, or the data
version its inputs would produce now differs from the one recorded.

The schema version lives in ``PRAGMA user_version``; opening a catalog made by
a newer daskflow fails with a clear error instead of corrupting it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from daskflow import config
from daskflow.catalog_db import CatalogDB, insert_row, to_record
from daskflow.catalog_lineage import upstream_ids, walk_lineage
from daskflow.catalog_migrations import SCHEMA_VERSION
from daskflow.catalog_records import (
    CheckResultRow,
    LineageNode,
    Materialization,
    RunEvent,
    RunRecord,
    assess_staleness,
    compute_data_version,
    data_locations_schema,
)
from daskflow.errors import CatalogError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from daskflow.storage import StoredObject

__all__ = [
    "SCHEMA_VERSION", "Catalog", "CheckResultRow", "LineageNode", "Materialization", "RunEvent",
    "RunRecord", "assess_staleness", "compute_data_version", "data_locations_schema",
]


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
        self._db = CatalogDB(self.path)

    @property
    def busy_timeout_s(self) -> float:
        return self._db.busy_timeout_s

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

    def close(self) -> None:
        """Close this process's connection (reopened on next use)."""
        self._db.close()

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
            with self._db.transaction() as conn:
                insert_row(conn, "runs", dataclasses.asdict(record))
        except sqlite3.IntegrityError as exc:
            raise CatalogError(
                f"run {record.run_id!r} already exists in {str(self.path)!r}; use a new run_id"
            ) from exc
        return record

    def finish_run(self, run_id: str, status: str) -> RunRecord:
        """Set a run's final ``status`` (e.g. "success", "failure") and finish time."""
        with self._db.transaction() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, time.time(), run_id),
            ).rowcount
        run = self.get_run(run_id)
        if not updated or run is None:
            raise CatalogError(f"run {run_id!r} is not in the catalog; call start_run first")
        return run

    def get_run(self, run_id: str) -> RunRecord | None:
        runs = self._db.select(RunRecord, "runs", "run_id", run_id=run_id)
        return runs[0] if runs else None

    def runs(
        self, limit: int | None = 50, pipeline: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first."""
        return self._db.select(
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
        with self._db.transaction() as conn:
            return [insert_row(conn, "run_events", row) for row in rows]

    def events(self, run_id: str, kind: str | None = None) -> list[RunEvent]:
        """A run's events in the order they were logged."""
        return self._db.select(RunEvent, "run_events", "id", run_id=run_id, kind=kind)

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
        with self._db.transaction() as conn:
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
            materialization_id = insert_row(conn, "materializations", {
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
        found = self._db.select(Materialization, "materializations", "id", id=int(materialization_id))
        return found[0] if found else None

    def materializations(
        self, run_id: str | None = None, asset_key: str | None = None, limit: int | None = None
    ) -> list[Materialization]:
        """Materializations filtered by run and/or asset, oldest first."""
        return self._db.select(
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
        rows = self._db.query(
            f"SELECT * FROM materializations WHERE asset_key = ?{partition_filter} "
            "ORDER BY id DESC LIMIT 1",
            params,
        )
        return to_record(Materialization, rows[0]) if rows else None

    def latest_materializations(
        self, asset_keys: Iterable[str] | None = None
    ) -> dict[tuple[str, str | None], Materialization]:
        """The newest materialization per (asset_key, partition)."""
        return {
            (row["asset_key"], row["partition"]): to_record(Materialization, row)
            for row in self._latest_rows(asset_keys)
        }

    def _latest_rows(self, asset_keys: Iterable[str] | None) -> list[sqlite3.Row]:
        if asset_keys is None:
            where, params = "", ()
        else:
            where = "WHERE asset_key IN (SELECT value FROM json_each(?))"
            params = (json.dumps(sorted({str(k) for k in asset_keys})),)
        return self._db.query(
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
        return walk_lineage(self._db, roots, direction, depth)

    def upstream_ids(self, materialization_id: int) -> list[int]:
        """The materialization ids one materialization read (its direct inputs)."""
        return upstream_ids(self._db, materialization_id)

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
        return assess_staleness(latest, asset_key, partition, code_version, input_data_versions)

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
        with self._db.transaction() as conn:
            return insert_row(conn, "check_results", row)

    def check_results(
        self, run_id: str | None = None, asset_key: str | None = None
    ) -> list[CheckResultRow]:
        """Check results filtered by run and/or asset, in the order recorded."""
        return self._db.select(CheckResultRow, "check_results", "id", run_id=run_id, asset_key=asset_key)


def _optional(kind: type, value: Any) -> Any:
    # numpy integers/floats (common in task metadata) cannot be bound by sqlite3.
    return None if value is None else kind(value)
