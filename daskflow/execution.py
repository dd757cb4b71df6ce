"""Execution: materialize a selection of assets as ONE annotated Dask graph.

Design note
-----------
:func:`materialize` is a thin composition of four layers, each in its own
module:

1. read the catalog facts the plan needs (latest materializations and their
   data locations) — the only catalog read before the run;
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
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from daskflow.catalog import Catalog
from daskflow.catalog_writer import CatalogWriter
from daskflow.definitions import Definitions
from daskflow.errors import RunFailedError
from daskflow.graph import build_asset_graph
from daskflow.listeners import RunInfo, RunListener, RunListeners, listeners_from_config
from daskflow.loading import load_definitions
from daskflow.planning import CatalogFacts, Plan, build_task_specs, plan_run, select_run, selection_string
from daskflow.progress import RunProgress, make_progress
from daskflow.run_loop import RunLoop, client_for
from daskflow.run_result import AssetRecord, CheckRecord, RunResult
from daskflow.storage import AssetStore
from daskflow.tasks import PIPELINE_LOCK, BlockingCheckFailed

__all__ = ["AssetRecord", "BlockingCheckFailed", "CheckRecord", "RunListener", "RunResult", "materialize",
           "read_catalog_facts"]


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


def _run_info(plan: Plan, label: str, selection, partitions, tags: Mapping[str, str], only_stale: bool) -> RunInfo:
    partition_list = None if partitions is None else ([partitions] if isinstance(partitions, str)
                                                       else list(partitions))
    assets = {a for a, _ in plan.asset_nodes} | {r.asset for r in plan.stale_skipped}
    return RunInfo(
        run_id=plan.run_id, pipeline=label, selection=selection_string(selection), partitions=partition_list,
        tags=dict(tags), only_stale=only_stale, totals=plan.totals(), planned=tuple(plan.asset_nodes),
        inputs={ref: tuple(node.upstream_materializations) for ref, node in plan.asset_nodes.items()},
        code_versions={a: plan.code_versions[a] for a in sorted(assets)},
    )


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
) -> RunResult:
    """Materialize the selected assets on a Dask cluster; return a :class:`RunResult`.

    ``definitions_or_module_or_path``: a ``Definitions``, a module, a module
    name or a ``.py`` path. ``selection``: e.g. ``"+report"`` (see
    :meth:`daskflow.graph.AssetGraph.select`); ``partitions``: ``"2024-01-02"``
    or ``"2024-01-01...2024-01-07"``. Without ``client``/``address`` (and no
    cluster file) an embedded ``LocalCluster`` is started and stopped.
    ``listeners``: extra :class:`~daskflow.listeners.RunListener` objects
    that receive this run's events (after those of config
    ``daskflow.execution.listeners``).

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
    run_id = uuid.uuid4().hex
    with PIPELINE_LOCK:
        definitions, label = _definitions(definitions_or_module_or_path)
        graph = build_asset_graph(definitions)
        chosen = select_run(graph, selection, partitions)  # raises before anything is read or written
        facts = read_catalog_facts(catalog, chosen.asset_keys)
        plan = plan_run(graph, chosen, run_id, facts, only_stale)  # pure; raises before anything is written
        tasks = build_task_specs(plan, store, tags or {})  # pickles the functions (see tasks.ByValue)
    info = _run_info(plan, label, selection, partitions, tags or {}, only_stale)
    writer = CatalogWriter(catalog, {ref: m.id for ref, m in facts.latest.items()})
    fanout = RunListeners(required=[writer],
                          optional=[make_progress(progress), *listeners_from_config(), *listeners])
    fanout.run_started(info)
    loop = RunLoop(plan, info, fanout)
    try:
        loop.skip_up_to_date()
        if tasks:
            with client_for(client, address, workers) as active:
                loop.execute(active, tasks)
    except BaseException:
        fanout.aborting = True  # report the run as failed, but let the original exception through
        fanout.run_finished(info, loop.result(time.monotonic() - started, status="failure"))
        raise
    result = loop.result(time.monotonic() - started)
    fanout.run_finished(info, result)
    if raise_on_error and not result.ok:
        failed = [f"{r.asset}[{r.partition}]" if r.partition else r.asset for r in result.by_status("failed")]
        raise RunFailedError(f"run {run_id} failed: {', '.join(failed) or 'a blocking check failed'}; "
                             f"see RunResult.records or `daskflow runs {run_id}`")
    return result
