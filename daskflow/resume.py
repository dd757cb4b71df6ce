"""Resuming a run: which asset-partitions of an earlier run still need to run, and what they read.

Design note
-----------
``daskflow run PIPELINE --resume RUN_ID`` (``materialize(resume=RUN_ID)``)
re-executes only the asset-partitions of RUN_ID that did not end usable:
the failed and skipped ones, the ones whose blocking check failed, and — for
a run abandoned by its client — the ones never attempted. It uses the
selection and partitions recorded on RUN_ID. The asset-partitions that
succeeded there (usable materializations of that run) or were up to date
(its ``asset-stale-skipped`` events) are not re-run: planning reads them as
external inputs (the resumed run's own materialization, pinned, even if a
newer one exists) and the new run reports them as ``stale-skipped`` with the
reason, so resuming a resumed run also skips them. The new run records
``resumed_from``.

A run still ``running`` (its client heartbeats) cannot be resumed; one whose
client died is first marked abandoned (:meth:`Catalog.mark_abandoned_runs`).
"""

from __future__ import annotations

import dataclasses

from daskflow.catalog import Catalog
from daskflow.catalog_records import Materialization, RunRecord
from daskflow.errors import SelectionError
from daskflow.graph import AssetGraph
from daskflow.planning import AssetPartition, RunSelection, select_run
from daskflow.run_result import AssetRecord

__all__ = ["ResumePlan", "plan_resume"]


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """What a resumed run does: the pairs to run, and the earlier results it keeps."""

    run: RunRecord
    selection: RunSelection
    #: usable materializations of the resumed run, pinned as the latest of their asset-partitions
    done: dict[AssetPartition, Materialization]
    #: the asset-partitions kept (done or up to date), as stale-skipped records for the new run
    kept: list[AssetRecord]


def plan_resume(catalog: Catalog, run_id_or_prefix: str, graph: AssetGraph) -> ResumePlan:
    """The resume plan of one earlier run (raises SelectionError / CatalogError with one line)."""
    if not catalog.path.exists():
        raise SelectionError(f"cannot resume run {run_id_or_prefix!r}: there is no catalog at {str(catalog.path)!r}")
    catalog.mark_abandoned_runs()
    run = catalog.find_run(run_id_or_prefix)
    short = run.run_id[:12]
    if run.status == "running":
        raise SelectionError(
            f"run {short} is still running (its client heartbeats); wait for it to finish, or, if its "
            "client died, for it to be marked abandoned after daskflow.runs.abandon-after")
    chosen = select_run(graph, run.selection, run.partitions)
    done: dict[AssetPartition, Materialization] = {}
    for m in catalog.materializations(run_id=run.run_id):
        if m.usable:
            done[(m.asset_key, m.partition)] = m
    up_to_date: dict[AssetPartition, str] = {}
    for event in catalog.events(run.run_id, kind="asset-stale-skipped"):
        up_to_date[(event.asset_key, event.partition)] = event.message
    kept = [AssetRecord(a, p, "stale-skipped", rows=m.rows, bytes=m.bytes, path=m.path, worker=m.worker,
                        host=m.host, materialization_id=m.id, data_version=m.data_version,
                        reason=f"succeeded in run {short}, which this run resumes")
            for (a, p), m in done.items() if (a, p) in set(chosen.pairs)]
    remaining = tuple(ref for ref in chosen.pairs if ref not in done and ref not in up_to_date)
    if not remaining:
        raise SelectionError(
            f"run {short} has nothing to resume: every asset-partition of it succeeded or was up to date; "
            "start a new run instead")
    kept_refs = {(r.asset, r.partition) for r in kept}
    for ref in chosen.pairs:
        if ref in up_to_date and ref not in kept_refs:
            kept.append(AssetRecord(ref[0], ref[1], "stale-skipped",
                                    reason=f"up to date in run {short}, which this run resumes"))
    selection = RunSelection(chosen.selected, remaining, chosen.asset_keys)
    return ResumePlan(run, selection, {ref: m for ref, m in done.items() if ref in set(chosen.pairs)}, kept)
