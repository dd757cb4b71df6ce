"""The catalog writer: the run listener that records a run in the SQLite catalog.

Design note
-----------
A required listener (:class:`daskflow.listeners.RunListeners`): if a write
fails, the run fails, as it always has. It writes

* the run row at ``run_started`` and its final status at ``run_finished``;
* one materialization row with its lineage edges per ``asset_materialized``,
  which the loop emits only once the worker announced that the data file is
  durable — so a row never points at a missing or partial file;
* one check-result row per evaluated (not skipped) check;
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

    def run_started(self, run: RunInfo) -> None:
        self.catalog.start_run(run.run_id, pipeline=run.pipeline, selection=run.selection,
                               partitions=run.partitions, tags={**run.tags, "host": socket.gethostname()})
        up_to_date = sum(run.totals.values()) - len(run.planned)
        self.pending_events.append(dict(
            run_id=run.run_id, kind="run-start", message=f"{len(run.planned)} asset-partitions, "
            f"{up_to_date} up to date", payload={"only_stale": run.only_stale}))

    def asset_materialized(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent) -> None:
        ref = (record.asset, record.partition)
        upstream_ids = [self.materialization_ids[up] for up in run.inputs.get(ref, ())
                        if up in self.materialization_ids]
        record.materialization_id = self.catalog.record_materialization(
            run.run_id, record.asset, stored, partition=record.partition,
            code_version=run.code_versions.get(record.asset), data_version=record.data_version,
            duration_s=record.duration_s, upstream_ids=upstream_ids)
        self.materialization_ids[ref] = record.materialization_id
        self.pending_events.append(asset_event(run.run_id, record))

    def asset_failed(self, run: RunInfo, record: AssetRecord) -> None:
        self.pending_events.append(asset_event(run.run_id, record))

    def asset_skipped(self, run: RunInfo, record: AssetRecord) -> None:
        if record.materialization_id is not None:  # up to date: downstream lineage points at it
            self.materialization_ids[(record.asset, record.partition)] = record.materialization_id
        self.pending_events.append(asset_event(run.run_id, record))

    def check_evaluated(self, run: RunInfo, record: CheckRecord) -> None:
        if record.status != "skipped":
            self.catalog.record_check_result(
                run.run_id, record.asset, record.check, record.status == "passed", partition=record.partition,
                blocking=record.blocking, message=record.message, metadata=record.metadata)
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
