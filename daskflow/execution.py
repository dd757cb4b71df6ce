"""Execution: materialize a selection of assets as ONE annotated Dask graph.

Design note
-----------
:func:`materialize` is a thin composition of four layers, each in its own
module:

1. read the catalog facts the plan needs (latest materializations and their
   data locations; with ``resume=``, the earlier run's records too) — besides
   the check that a given ``run_id`` is new, the only catalog reads before
   the run;
2. plan, purely, from the graph, the selection and those facts
   (:mod:`daskflow.planning`): nodes, data versions, what is up to date, and
   the Dask tasks with their annotations; a bad selection raises here, with
   nothing written;
3. run the graph (:mod:`daskflow.run_loop`, with the worker-side task bodies
   of :mod:`daskflow.tasks`), which emits run events;
4. listen (:mod:`daskflow.listeners`): the catalog writer
   (:mod:`daskflow.catalog_writer`, required: its errors fail the run), the
   progress bar, the listeners of config ``daskflow.execution.listeners`` and
   those passed as ``listeners=`` (errors: one warning each).

Catalog rows are written only after data is durable: the writer records a
materialization when the loop reports ``asset_materialized``, which it does
only once the worker announced that its atomic write finished.

Run ids: a fresh ``uuid4().hex`` unless the caller passes ``run_id=`` (the
timeline daemon pre-generates ids for exactly-once launches): 32 lowercase
hex characters, or 1-64 of ``[A-Za-z0-9_-]`` starting with a letter or
digit; an id already in the catalog is refused before anything runs.
``resume=`` re-runs what an earlier run left undone (:mod:`daskflow.resume`).
A :class:`~daskflow.heartbeat.RunHeartbeat` keeps the run's heartbeat fresh
so a dead client's run is marked abandoned, not left ``running``.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from daskflow.catalog import Catalog
from daskflow.catalog_writer import CatalogWriter
from daskflow.decision_capture import capture_for
from daskflow.definitions import Definitions
from daskflow.errors import CatalogError, RunFailedError, SelectionError
from daskflow.graph import AssetGraph, build_asset_graph
from daskflow.heartbeat import RunHeartbeat
from daskflow.listeners import RunInfo, RunListener, RunListeners, listeners_from_config
from daskflow.loading import load_definitions
from daskflow.placement_rules import rules_from_config
from daskflow.planning import (
    CatalogFacts,
    Plan,
    build_task_specs,
    plan_run,
    select_run,
    selection_string,
    task_facts,
)
from daskflow.progress import RunProgress, make_progress
from daskflow.resume import plan_resume
from daskflow.run_governance import WaitingWatch, apply_policy, record_checks, record_decisions
from daskflow.run_loop import RunLoop, client_for
from daskflow.run_result import AssetRecord, CheckRecord, RunResult
from daskflow.storage import AssetStore
from daskflow.tasks import PIPELINE_LOCK, BlockingCheckFailed

__all__ = ["RUN_ID_PATTERN", "AssetRecord", "BlockingCheckFailed", "CheckRecord", "RunListener", "RunResult",
           "materialize", "read_catalog_facts", "validate_run_id"]

#: a caller-given run id: uuid hex, or a short name safe in file names and task keys
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{32}|[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def validate_run_id(run_id: str, catalog: Catalog) -> str:
    """``run_id`` if it is well-formed and not yet in ``catalog``; else one-line SelectionError/CatalogError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise SelectionError(
            f"run id {run_id!r} is invalid; use 32 lowercase hex characters (uuid.uuid4().hex) or 1-64 "
            "letters, digits, '_' and '-' starting with a letter or digit")
    if catalog.path.exists() and catalog.get_run(run_id) is not None:
        raise CatalogError(f"run {run_id!r} already exists in {str(catalog.path)!r}; use a new run id")
    return run_id


def read_catalog_facts(catalog: Catalog, asset_keys: Iterable[str]) -> CatalogFacts:
    """The catalog facts planning needs, read without creating a catalog that does not exist yet.

    Planning must write nothing (a bad selection exits with nothing on disk),
    so a missing catalog file means "nothing materialized yet".
    """
    if not catalog.path.exists():
        return CatalogFacts()
    return CatalogFacts.from_latest(catalog.latest_materializations(asset_keys))


def _definitions(target: Any) -> tuple[Definitions, str]:
    if isinstance(target, (list, tuple)):
        return Definitions(assets=target), "<assets>"
    label = getattr(target, "__name__", None) or str(target)
    return load_definitions(target), label


def _run_info(plan: Plan, label: str, selection, partitions, tags: Mapping[str, str], only_stale: bool,
              resumed_from: str | None = None) -> RunInfo:
    partition_list = None if partitions is None else ([partitions] if isinstance(partitions, str)
                                                       else list(partitions))
    graph: AssetGraph = plan.graph
    assets = {a for a, _ in plan.asset_nodes} | {r.asset for r in plan.stale_skipped}
    return RunInfo(
        run_id=plan.run_id, pipeline=label, selection=selection_string(selection), partitions=partition_list,
        tags=dict(tags), only_stale=only_stale, totals=plan.totals(), planned=tuple(plan.asset_nodes),
        inputs={ref: tuple(node.upstream_materializations) for ref, node in plan.asset_nodes.items()},
        code_versions={a: plan.code_versions[a] for a in sorted(assets)},
        blocking_checks={a: tuple(c.name for c in graph.checks_for(a) if c.blocking) for a in sorted(assets)
                         if any(c.blocking for c in graph.checks_for(a))},
        resumed_from=resumed_from,
    )


def _lineage(graph: AssetGraph, store: AssetStore, others: Sequence[RunListener]) -> list[RunListener]:
    """The OpenLineage exporter when export is on (config or the client's own), unless one is listening already."""
    from daskflow.lineage.openlineage import OpenLineageListener, describe_assets, openlineage_listener

    if any(isinstance(listener, OpenLineageListener) for listener in others):
        return []
    listener = openlineage_listener(describe_assets(graph, store))
    return [] if listener is None else [listener]


def _kept_records(kept: list[AssetRecord], facts: CatalogFacts) -> list[AssetRecord]:
    """A resumed run's kept asset-partitions, filled from the catalog facts where the old run did not write them."""
    records = []
    for record in kept:
        latest = facts.latest.get((record.asset, record.partition))
        if record.materialization_id is None and latest is not None:
            record = dataclasses.replace(record, rows=latest.rows, bytes=latest.bytes, path=latest.path,
                                         worker=latest.worker, host=latest.host, materialization_id=latest.id,
                                         data_version=latest.data_version)
        records.append(record)
    return records


def materialize(
    definitions_or_module_or_path: Any,
    selection: str | Sequence[str] | None = None,
    partitions: str | Sequence[str] | None = None,
    client=None,
    address: str | None = None,
    only_stale: bool = False,
    catalog: Catalog | str | None = None,
    store: AssetStore | str | None = None,
    tags: Mapping[str, str] | None = None,
    progress: bool | RunProgress | None = None,
    raise_on_error: bool = False,
    workers: int | None = None,
    listeners: Sequence[RunListener] = (),
    run_id: str | None = None,
    resume: str | None = None,
) -> RunResult:
    """Materialize the selected assets on a Dask cluster; return a :class:`RunResult`.

    ``definitions_or_module_or_path``: a ``Definitions``, a module, a module
    name or a ``.py`` path. ``selection``: e.g. ``"+report"`` (see
    :meth:`daskflow.graph.AssetGraph.select`); ``partitions``: ``"2024-01-02"``
    or ``"2024-01-01...2024-01-07"``. Without ``client``/``address`` (and no
    cluster file) an embedded ``LocalCluster`` is started and stopped.
    ``listeners``: extra :class:`~daskflow.listeners.RunListener` objects
    that receive this run's events (after those of config
    ``daskflow.execution.listeners``). ``run_id``: use this id (see the
    module note for the allowed form; an existing one is refused).
    ``resume``: the id (or a unique prefix) of an earlier run: re-run only
    its failed, skipped and unfinished asset-partitions, with its selection
    and partitions (so ``selection``/``partitions`` must be None).

    >>> import daskflow
    >>> @daskflow.asset
    ... def numbers():
    ...     return [1, 2, 3]
    >>> result = materialize([numbers], progress=False)  # doctest: +SKIP
    >>> result.ok, result.record("numbers").rows  # doctest: +SKIP
    (True, 3)
    """
    started = time.monotonic()
    catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    store = store if isinstance(store, AssetStore) else AssetStore(store)
    run_id = uuid.uuid4().hex if run_id is None else validate_run_id(run_id, catalog)
    resumed_from = None
    with PIPELINE_LOCK:
        definitions, label = _definitions(definitions_or_module_or_path)
        graph = build_asset_graph(definitions)
        if resume is not None:
            if selection is not None or partitions is not None:
                raise SelectionError(
                    f"resume={resume!r} re-uses that run's selection and partitions; drop selection/partitions "
                    "(--select/--partition)")
            resumed = plan_resume(catalog, resume, graph)
            resumed_from, selection, partitions = resumed.run.run_id, resumed.run.selection, resumed.run.partitions
            chosen = resumed.selection
            facts = read_catalog_facts(catalog, chosen.asset_keys).pinned(resumed.done)
        else:
            chosen = select_run(graph, selection, partitions)  # raises before anything is read or written
            facts = read_catalog_facts(catalog, chosen.asset_keys)
        plan = plan_run(graph, chosen, run_id, facts, only_stale)  # pure; raises before anything is written
        if resume is not None:
            plan.stale_skipped.extend(_kept_records(resumed.kept, facts))
        tasks = build_task_specs(plan, store, tags or {})  # pickles the functions (see tasks.ByValue)
        governed = task_facts(plan, tags or {})
        rules_from_config()  # malformed placement rules: one line, before anything is written
    info = _run_info(plan, label, selection, partitions, tags or {}, only_stale, resumed_from)
    writer = CatalogWriter(catalog, {ref: m.id for ref, m in facts.latest.items()})
    configured = listeners_from_config()
    fanout = RunListeners(required=[writer, RunHeartbeat(catalog)],
                          optional=[make_progress(progress), *_lineage(graph, store, [*configured, *listeners]),
                                    *configured, *listeners])
    fanout.run_started(info)
    loop = RunLoop(plan, info, fanout)
    decisions: list = []
    try:
        loop.skip_up_to_date()
        if tasks:
            with client_for(client, address, workers) as active:
                checks, refused = apply_policy(tasks, governed, active)  # placement rules into the graph
                record_checks(catalog, run_id, checks)
                if refused is not None:
                    raise refused  # before anything runs
                capture = capture_for(active, run_id)
                try:
                    with WaitingWatch(active, checks):  # restricted tasks whose allowed workers all left
                        loop.execute(active, tasks)
                finally:
                    decisions = capture.close(run_id)  # the plugin's deque too: the scheduler may stop next
    except BaseException:
        fanout.aborting = True  # report the run as failed, but let the original exception through
        record_decisions(catalog, run_id, decisions, {k: r.worker for k, r in loop.by_key.items()})
        fanout.run_finished(info, loop.result(time.monotonic() - started, status="failure"))
        raise
    if tasks:
        record_decisions(catalog, run_id, decisions, {k: r.worker for k, r in loop.by_key.items()})
    result = loop.result(time.monotonic() - started)
    fanout.run_finished(info, result)
    if raise_on_error and not result.ok:
        failed = [f"{r.asset}[{r.partition}]" if r.partition else r.asset for r in result.by_status("failed")]
        raise RunFailedError(f"run {run_id} failed: {', '.join(failed) or 'a blocking check failed'}; "
                             f"see RunResult.records or `daskflow runs {run_id}`")
    return result
