"""The catalog writer: the run listener that records a run in the SQLite catalog.

Design note
-----------
A required listener (:class:`daskflow.listeners.RunListeners`): if a write
fails, the run fails, as it always has. It writes

* the run row at ``run_started`` and its final status at ``run_finished``;
* one materialization row with its lineage edges per ``asset_materialized``,
  which the loop emits only once the worker announced that the data file is
  durable — so a row never points at a missing or partial file;
* one check-result row per evaluated (not skipped) check, linked to the
  materialization it checked. Checks gate data: an asset with blocking
  checks is recorded ``check_status = "pending"`` (not usable: never latest
  for downstream reads, ``only_stale`` or ``daskflow assets``) and becomes
  ``passed`` when its last blocking check passes, or ``failed`` (naming the
  check) when one fails. A run that dies between the two leaves it pending,
  i.e. not usable: unverified data is never served;
* on ``asset_attempt_replaced`` (Dask re-executed a recorded asset): the row
  now describes the new attempt and the old file is listed for gc;
* run events (``run-start``, ``asset-<status>``, ``check-<status>``,
  ``run-finish``), buffered and written in one transaction per
  ``batch_finished``.

Its state: the materialization id of every asset-partition this run may
read (the caller's latest materializations, then whatever this run writes
or finds up to date), to link lineage edges.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from daskflow.catalog import Catalog
from daskflow.contracts import MaterializedEvent
from daskflow.listeners import RunInfo, RunListener
from daskflow.run_result import AssetRecord, CheckRecord, RunResult

__all__ = ["CatalogWriter", "asset_event"]


def asset_event(run_id: str, record: AssetRecord) -> dict[str, Any]:
    """The run event of one asset record (payload: its non-empty fields)."""
    payload = {k: v for k, v in vars(record).items() if v is not None and k not in ("asset", "partition")}
    message = record.reason or record.error or record.path or ""
    return dict(run_id=run_id, kind=f"asset-{record.status}", asset_key=record.asset,
                partition=record.partition, message=message, payload=payload)


class CatalogWriter(RunListener):
    """Writes runs, materializations, lineage, checks and run events to ``catalog``.

    ``known_ids``: materialization id per (asset, partition) the run may read
    from outside the run (the latest ones planning saw).
    """

    def __init__(self, catalog: Catalog, known_ids: Mapping[tuple[str, str | None], int] | None = None):
        self.catalog = catalog
        self.materialization_ids: dict[tuple[str, str | None], int] = dict(known_ids or {})
        self.pending_events: list[dict[str, Any]] = []
        #: per asset-partition materialized in this run: its blocking checks not yet passed
        self.unchecked: dict[tuple[str, str | None], set[str]] = {}

    def run_started(self, run: RunInfo) -> None:
        self.catalog.start_run(run.run_id, pipeline=run.pipeline, selection=run.selection,
                               partitions=run.partitions, tags={**run.tags, "host": socket.gethostname()},
                               resumed_from=run.resumed_from)
        up_to_date = sum(run.totals.values()) - len(run.planned)
        self.pending_events.append(dict(
            run_id=run.run_id, kind="run-start", message=f"{len(run.planned)} asset-partitions, "
            f"{up_to_date} up to date", payload={"only_stale": run.only_stale}))

    def asset_materialized(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent) -> None:
        ref = (record.asset, record.partition)
        upstream_ids = [self.materialization_ids[up] for up in run.inputs.get(ref, ())
                        if up in self.materialization_ids]
        blocking = run.blocking_checks.get(record.asset, ())
        record.materialization_id = self.catalog.record_materialization(
            run.run_id, record.asset, stored, partition=record.partition,
            code_version=run.code_versions.get(record.asset), data_version=record.data_version,
            duration_s=record.duration_s, upstream_ids=upstream_ids,
            check_status="pending" if blocking else "none")
        if blocking:
            self.unchecked[ref] = set(blocking)
        if record.superseded:
            self.catalog.list_superseded(record.materialization_id, run.run_id, record.superseded)
        self.materialization_ids[ref] = record.materialization_id
        self.pending_events.append(asset_event(run.run_id, record))

    def asset_attempt_replaced(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent,
                               previous_path: str | None) -> None:
        if record.materialization_id is None:
            return
        self.catalog.replace_attempt(record.materialization_id, stored, record.duration_s)
        self.pending_events.append(dict(
            run_id=run.run_id, kind="asset-attempt-replaced", asset_key=record.asset, partition=record.partition,
            message=f"{previous_path} -> {record.path}",
            payload={"previous_path": previous_path, "path": record.path, "rows": record.rows,
                     "bytes": record.bytes, "worker": record.worker}))

    def asset_failed(self, run: RunInfo, record: AssetRecord) -> None:
        self.pending_events.append(asset_event(run.run_id, record))

    def asset_skipped(self, run: RunInfo, record: AssetRecord) -> None:
        if record.materialization_id is not None:  # up to date: downstream lineage points at it
            self.materialization_ids[(record.asset, record.partition)] = record.materialization_id
        self.pending_events.append(asset_event(run.run_id, record))

    def check_evaluated(self, run: RunInfo, record: CheckRecord) -> None:
        ref = (record.asset, record.partition)
        if record.status != "skipped":
            self.catalog.record_check_result(
                run.run_id, record.asset, record.check, record.status == "passed", partition=record.partition,
                blocking=record.blocking, message=record.message, metadata=record.metadata,
                materialization_id=self.materialization_ids.get(ref))
        remaining = self.unchecked.get(ref)
        if record.blocking and remaining is not None and record.status != "skipped":
            if record.status == "failed":
                del self.unchecked[ref]
                self.catalog.set_check_status(self.materialization_ids[ref], "failed", record.check)
            else:
                remaining.discard(record.check)
                if not remaining:
                    del self.unchecked[ref]
                    self.catalog.set_check_status(self.materialization_ids[ref], "passed")
        self.pending_events.append(dict(run_id=run.run_id, kind=f"check-{record.status}", asset_key=record.asset,
                                        partition=record.partition, message=f"{record.check}: {record.message}"))

    def batch_finished(self, run: RunInfo) -> None:
        if self.pending_events:
            events, self.pending_events = self.pending_events, []
            self.catalog.log_events(events)

    def run_finished(self, run: RunInfo, result: RunResult) -> None:
        self.pending_events.append(dict(run_id=run.run_id, kind="run-finish", message=result.status))
        try:
            self.batch_finished(run)
        finally:  # an interrupted run still gets its final status, even if its events cannot be written
            self.catalog.finish_run(run.run_id, result.status)
