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
from daskflow.catalog_lifecycle import (
    heartbeat,
    list_superseded,
    mark_abandoned_runs,
    replace_attempt,
    superseded_paths,
)
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
        status: str = "running", resumed_from: str | None = None,
    ) -> RunRecord:
        """Insert a run (``run_id`` defaults to a fresh uuid hex) and return it.

        First marks runs whose client died as failed (see :meth:`mark_abandoned_runs`).
        """
        self.mark_abandoned_runs()
        now = time.time()
        record = RunRecord(
            run_id=run_id or uuid.uuid4().hex, pipeline=pipeline, selection=selection,
            partitions=None if partitions is None else [str(p) for p in partitions],
            status=status, started_at=now, finished_at=None, tags=dict(tags or {}),
            heartbeat_at=now if status == "running" else None, resumed_from=resumed_from,
        )
        try:
            with self._db.transaction() as conn:
                insert_row(conn, "runs", dataclasses.asdict(record))
        except sqlite3.IntegrityError as exc:
            raise CatalogError(
                f"run {record.run_id!r} already exists in {str(self.path)!r}; use a new run_id"
            ) from exc
        return record

    def finish_run(self, run_id: str, status: str, reason: str | None = None) -> RunRecord:
        """Set a run's final ``status`` (e.g. "success", "failure"), ``reason`` and finish time.

        A run marked abandoned whose client turns out alive gets its real final status.
        """
        with self._db.transaction() as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, reason = ? WHERE run_id = ?",
                (status, time.time(), reason, run_id),
            ).rowcount
        run = self.get_run(run_id)
        if not updated or run is None:
            raise CatalogError(f"run {run_id!r} is not in the catalog; call start_run first")
        return run

    def get_run(self, run_id: str) -> RunRecord | None:
        runs = self._db.select(RunRecord, "runs", "run_id", run_id=run_id)
        return runs[0] if runs else None

    def find_run(self, run_id_or_prefix: str) -> RunRecord:
        """The run whose id is ``run_id_or_prefix`` or starts with it (the 12 characters ``daskflow runs`` shows)."""
        exact = self.get_run(run_id_or_prefix)
        if exact is not None:
            return exact
        prefix = str(run_id_or_prefix)
        rows = self._db.query("SELECT * FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY started_at LIMIT 3",
                              (len(prefix), prefix)) if prefix else []
        if len(rows) != 1:
            found = "no run" if not rows else "several runs"
            raise CatalogError(f"{found} with id starting {prefix!r} in {str(self.path)!r}; "
                               "list them with `daskflow runs` and pass a longer prefix")
        return to_record(RunRecord, rows[0])

    # -- liveness --------------------------------------------------------
    def heartbeat(self, run_id: str, now: float | None = None) -> bool:
        """Record that the client of ``run_id`` is alive (False: the run is no longer running)."""
        return heartbeat(self._db, run_id, now)

    def mark_abandoned_runs(self, now: float | None = None, abandon_after_s: float | None = None) -> list[str]:
        """Mark runs whose client stopped heartbeating as ``failure`` (reason ``abandoned``); their ids.

        ``abandon_after_s`` defaults to config ``daskflow.runs.abandon-after``;
        ``now`` to the current time (the timeline daemon passes its clock).
        """
        from dask.utils import parse_timedelta

        if abandon_after_s is None:
            abandon_after_s = float(parse_timedelta(config.get("runs.abandon-after"), default="s"))
        return mark_abandoned_runs(self._db, time.time() if now is None else now, abandon_after_s)

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
        upstream_ids: Iterable[int] = (), check_status: str = "none",
    ) -> int:
        """Record a durable stored value and its lineage; returns the new id.

        Call only after :meth:`AssetStore.write` returned. The row and its
        lineage edges (to the materializations in ``upstream_ids`` it read)
        are written in one transaction. ``data_version`` defaults to
        :func:`compute_data_version` of ``code_version`` and the upstream
        materializations' data versions; without a code version the run id
        stands in for it, so such an asset is new data on every run.
        ``check_status="pending"``: the asset has blocking checks still to
        run, so the row is not usable until :meth:`set_check_status` says
        ``passed``.
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
                "created_at": time.time(), "check_status": check_status, "attempt": fields.get("attempt"),
            })
            conn.executemany(
                "INSERT INTO lineage (materialization_id, upstream_id) VALUES (?, ?)",
                [(materialization_id, upstream_id) for upstream_id in upstream],
            )
        return materialization_id

    def set_check_status(self, materialization_id: int, status: str, failed_check: str | None = None) -> None:
        """Mark a materialization's blocking checks ``passed`` or ``failed`` (naming the check)."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE materializations SET check_status = ?, failed_check = ? WHERE id = ?",
                         (status, failed_check, int(materialization_id)))

    def replace_attempt(self, materialization_id: int, stored: Mapping[str, Any],
                        duration_s: float | None = None) -> str | None:
        """Point a materialization at the attempt Dask actually used; returns the superseded file's path."""
        return replace_attempt(self._db, materialization_id, _stored_fields(stored), duration_s)

    def list_superseded(self, materialization_id: int, run_id: str, paths: Iterable[str]) -> None:
        """List files of executions Dask discarded (before ``materialization_id`` was recorded) for gc."""
        list_superseded(self._db, materialization_id, run_id, list(paths))

    def superseded_files(self) -> dict[str, int]:
        """Files of attempts replaced by a recomputation: path -> materialization id (for ``daskflow gc``)."""
        return superseded_paths(self._db)

    def referenced_paths(self) -> set[str]:
        """Every data path a materialization row points at (``daskflow gc`` never deletes these)."""
        return {row["path"] for row in self._db.query("SELECT DISTINCT path FROM materializations")}

    def forget_superseded(self, paths: Iterable[str]) -> None:
        """Drop deleted files from the superseded list."""
        with self._db.transaction() as conn:
            conn.executemany("DELETE FROM superseded_files WHERE path = ?", [(p,) for p in paths])

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
        metadata: Mapping[str, Any] | None = None, materialization_id: int | None = None,
    ) -> int:
        """Store one check outcome (of the materialization ``materialization_id``); returns its id."""
        row = {
            "run_id": run_id, "asset_key": asset_key, "partition": partition,
            "check_name": check_name, "passed": bool(passed), "blocking": bool(blocking),
            "message": message or "", "metadata": dict(metadata or {}), "created_at": time.time(),
            "materialization_id": materialization_id,
        }
        with self._db.transaction() as conn:
            return insert_row(conn, "check_results", row)

    def check_results(
        self, run_id: str | None = None, asset_key: str | None = None, materialization_id: int | None = None,
    ) -> list[CheckResultRow]:
        """Check results filtered by run, asset and/or materialization, in the order recorded."""
        return self._db.select(CheckResultRow, "check_results", "id", run_id=run_id, asset_key=asset_key,
                               materialization_id=materialization_id)


def _optional(kind: type, value: Any) -> Any:
    # numpy integers/floats (common in task metadata) cannot be bound by sqlite3.
    return None if value is None else kind(value)
