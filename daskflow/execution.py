"""Execution: materialize a selection of assets as ONE annotated Dask graph.

Design note
-----------
Planning is pure and happens on the client before anything is written: the
asset graph gives the (asset, partition) nodes of the selection; each input
is either *in-graph* (its value is passed by Dask from the upstream task) or
*external* (outside the selection, or skipped as up to date: loaded on the
worker from the path of the catalog's latest materialization). Data versions
are planned in topological order, ``H(code_version, input data versions)``,
so ``only_stale=True`` can skip an asset whose code and inputs are unchanged
before the graph is built.

The graph has one task per asset-partition plus one per check. An asset task
loads its external inputs, calls the function, validates the schema and
writes through :class:`~daskflow.storage.AssetStore` (atomic), publishes a
small metadata dict (path, rows, bytes, schema, host, worker, duration_s) as a
scheduler event, and returns the *value*, which Dask hands to downstream tasks
(and which the client never fetches). Failure handling is Dask's own: a task
that raises (after its ``retries``) errs, and Dask errs every dependent
without running it. A blocking check that fails raises
:class:`BlockingCheckFailed`; downstream assets depend on blocking checks, so
they are skipped the same way. The client therefore classifies an errored
node as *failed* when all its in-graph upstreams succeeded, else *skipped*.

The client waits with ``distributed.as_completed`` in batches and writes the
catalog only after data is durable: each batch's materializations, lineage,
check results and run events go in per batch, in topological order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from daskflow import config
from daskflow.catalog import Catalog, compute_data_version
from daskflow.daskgraph import TaskSpec, submit_graph
from daskflow.definitions import (
    AssetCheckSpec,
    AssetContext,
    AssetSpec,
    Definitions,
    code_version_of,
    io_for_value,
    to_check_result,
)
from daskflow.errors import RunFailedError, SelectionError
from daskflow.graph import AssetGraph, build_asset_graph
from daskflow.loading import load_definitions
from daskflow.progress import RunProgress, make_progress
from daskflow.run_result import AssetRecord, CheckRecord, RunResult  # noqa: F401 - re-exported
from daskflow.storage import AssetStore

__all__ = ["AssetRecord", "BlockingCheckFailed", "CheckRecord", "RunResult", "materialize"]

#: scheduler event topic on which asset tasks publish their metadata
METADATA_TOPIC = "daskflow-materialized"
SCHEDULER_PRELOAD = "scheduler_plugins.preload"


class BlockingCheckFailed(Exception):
    """Raised by a blocking check task that failed, so Dask skips everything downstream."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message, result)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


# -- worker side ---------------------------------------------------------------
class _ByValue:
    """Pickles its object with cloudpickle even inside a plain ``pickle.dumps``.

    Dask pickles tasks with the standard pickle first, which ships functions by
    module name; pipeline files are loaded under names the workers cannot
    import, so user functions must travel by value. The bytes are made eagerly,
    under :data:`_PIPELINE_LOCK`: while another thread of this process loads
    the same pipeline file its module name is briefly in ``sys.modules``, and
    cloudpickle would then ship module references the workers cannot import.
    """

    def __init__(self, obj: Any = None, payload: bytes | None = None):
        import cloudpickle

        self._obj = obj
        self.payload = payload if payload is not None else cloudpickle.dumps(obj)

    @property
    def obj(self) -> Any:
        """The object, unpickled lazily inside the task: a failure is the asset's error, not a dead worker."""
        if self._obj is None:
            import cloudpickle

            self._obj = cloudpickle.loads(self.payload)
        return self._obj

    def __reduce__(self):
        return (_unpickle, (self.payload,))


def _unpickle(payload: bytes) -> Any:
    return _ByValue(payload=payload)


#: serialises loading pipeline files and pickling their functions between runs in one process
_PIPELINE_LOCK = threading.RLock()


@dataclasses.dataclass
class _AssetTask:
    """Everything an asset task needs on the worker (pickled once per task)."""

    spec: AssetSpec
    partition: str | None
    run_id: str
    key: str
    store: AssetStore
    # per parameter: (mapping, [(partition, ("dep", index) | ("path", path))])
    inputs: list[tuple[str, str, list[tuple[str | None, tuple[str, Any]]]]]


def _coerce(value: Any, annotation: Any, from_storage: bool) -> Any:
    """Give a parameter the table type it asks for (pandas vs pyarrow)."""
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    module = type(value).__module__.split(".")[0]
    if module == "pyarrow" and type(value).__name__ == "Table":
        schema_meta = value.schema.metadata or {}
        if name == "DataFrame" or name.endswith(".DataFrame") or (
            from_storage and annotation is inspect.Parameter.empty and b"pandas" in schema_meta
        ):
            return value.to_pandas()
    elif module == "pandas" and type(value).__name__ == "DataFrame" and (name == "Table" or name.endswith(".Table")):
        import pyarrow as pa

        return pa.Table.from_pandas(value, preserve_index=False)
    return value


def _run_asset(wrapped: _ByValue, *upstream_values: Any) -> Any:
    started = time.perf_counter()
    task: _AssetTask = wrapped.obj
    spec = task.spec
    signature = inspect.signature(spec.fn).parameters
    kwargs: dict[str, Any] = {}
    for param, mapping, sources in task.inputs:
        loaded = {}
        for partition, (kind, ref) in sources:
            value = upstream_values[ref] if kind == "dep" else task.store.read(ref[0], ref[1])
            loaded[partition] = _coerce(value, signature[param].annotation, kind != "dep")
        kwargs[param] = loaded if mapping == "all" else next(iter(loaded.values()))
    if spec.context_parameter:
        kwargs[spec.context_parameter] = AssetContext(spec.key, task.partition, task.run_id)
    value = spec.fn(**kwargs)
    io = io_for_value(spec, value)
    stored = task.store.write(spec.key, value, io=io, partition=task.partition, run_id=task.run_id,
                              schema=spec.schema)
    meta = stored.to_dict()
    meta.update(key=task.key, run_id=task.run_id, duration_s=time.perf_counter() - started)
    from distributed import get_worker

    get_worker().log_event(METADATA_TOPIC, meta)
    return value


def _run_check(wrapped: _ByValue, partition: str | None, run_id: str, value: Any) -> dict[str, Any]:
    check: AssetCheckSpec = wrapped.obj
    kwargs: dict[str, Any] = {check.value_parameter: value}
    if check.context_parameter:
        kwargs[check.context_parameter] = AssetContext(check.asset, partition, run_id)
    try:
        result = to_check_result(check.fn(**kwargs), check)
        outcome = {"passed": bool(result.passed), "message": result.message, "metadata": dict(result.metadata)}
    except Exception as exc:  # a crashing check is a failed check, with its traceback
        outcome = {"passed": False, "message": f"check raised {type(exc).__name__}: {exc}",
                   "metadata": {"traceback": traceback.format_exc()}}
    if not outcome["passed"] and check.blocking:
        where = check.asset if partition is None else f"{check.asset}[{partition}]"
        raise BlockingCheckFailed(f"blocking check {check.name!r} of {where} failed: {outcome['message']}", outcome)
    return outcome


# -- planning ------------------------------------------------------------------
@dataclasses.dataclass
class _Node:
    kind: str  # "asset" | "check"
    asset: str
    partition: str | None
    key: str
    index: int
    upstream_keys: list[str]  # in-graph dependencies (data, blocking checks, deps=)
    check: AssetCheckSpec | None = None
    data_version: str | None = None
    upstream_materializations: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    inputs: list = dataclasses.field(default_factory=list)  # (param, mapping, sources) of asset nodes


def _task_key(asset: str, partition: str | None, run_id: str, check: str | None = None) -> str:
    name = asset if check is None else f"{asset}.check.{check}"
    return f"{name}-{run_id}" + ("" if partition is None else f"-{partition}")


def _definitions(target: Any) -> tuple[Definitions, str]:
    if isinstance(target, (list, tuple)):
        return Definitions(assets=target), "<assets>"
    label = getattr(target, "__name__", None) or str(target)
    return load_definitions(target), label


def _selection_string(selection: str | Sequence[str] | None) -> str | None:
    if selection is None or isinstance(selection, str):
        return selection
    return ",".join(selection)


class _Plan:
    """The nodes of one run, their data versions and what is skipped as up to date."""

    def __init__(self, graph: AssetGraph, selection, partitions, run_id: str, catalog: Catalog, only_stale: bool):
        self.graph, self.run_id = graph, run_id
        self.code_versions = {key: code_version_of(spec) for key, spec in graph.assets.items()}
        selected = set(graph.select(_selection_string(selection)))
        pairs = graph.asset_partitions(selected, partitions)
        asset_keys = {a for a, _ in pairs} | {u for a, _ in pairs for u in graph.upstream(a)}
        # Planning must write nothing (a bad selection exits with nothing on disk): read the catalog only if it exists.
        known = catalog.path.exists()
        self.latest = catalog.latest_materializations(asset_keys) if known else {}
        self.nodes: dict[str, _Node] = {}
        self.asset_nodes: dict[tuple[str, str | None], _Node] = {}
        self.stale_skipped: list[AssetRecord] = []
        versions: dict[tuple[str, str | None], str] = {}
        for asset, partition in pairs:
            inputs, upstream_keys, input_versions, reads = [], [], [], []
            for param, up in graph.inputs[asset]:
                sources = []
                for up_part in graph.upstream_partitions(asset, partition, up):
                    ref = (up, up_part)
                    if ref in self.asset_nodes:
                        upstream_keys.append(self.asset_nodes[ref].key)
                        sources.append((up_part, ("dep", self.asset_nodes[ref].key)))
                        input_versions.append(versions[ref])
                    else:
                        latest = self.latest.get(ref)
                        if latest is None:
                            where = up if up_part is None else f"{up}[{up_part}]"
                            if up in selected:
                                reason, fix = "is outside the selected partitions", (
                                    f"run without a partition filter first, or leave {asset!r} out of the selection")
                            else:
                                reason, fix = "is not in this run's selection", (
                                    f"include it (select '+{asset}') or materialize {up!r} first")
                            raise SelectionError(
                                f"asset {asset!r} reads {where} (parameter {param!r}), which {reason} and has "
                                f"never been materialized. Fix: {fix}."
                            )
                        sources.append((up_part, ("path", (latest.path, latest.format))))
                        input_versions.append(latest.data_version)
                    reads.append(ref)
                inputs.append((param, graph.partition_mapping(asset, up), sources))
                for check in graph.checks_for(up):
                    for up_part in graph.upstream_partitions(asset, partition, up):
                        ck = _task_key(up, up_part, run_id, check.name)
                        if check.blocking and ck in self.nodes:
                            upstream_keys.append(ck)
            for dep in graph.deps[asset]:
                upstream_keys += [n.key for (a, _), n in self.asset_nodes.items() if a == dep]
            if only_stale and (asset, partition) in self.latest:
                stale, why = catalog.is_stale(asset, partition, self.code_versions[asset], input_versions)
                if not stale:
                    latest = self.latest[(asset, partition)]
                    versions[(asset, partition)] = latest.data_version
                    self.stale_skipped.append(AssetRecord(
                        asset, partition, "stale-skipped", rows=latest.rows, bytes=latest.bytes, path=latest.path,
                        worker=latest.worker, host=latest.host, materialization_id=latest.id,
                        data_version=latest.data_version, reason=why))
                    continue
            versions[(asset, partition)] = compute_data_version(self.code_versions[asset], input_versions)
            key = _task_key(asset, partition, run_id)
            node = _Node("asset", asset, partition, key, len(self.nodes), list(dict.fromkeys(upstream_keys)),
                         data_version=versions[(asset, partition)], upstream_materializations=reads,
                         inputs=inputs)
            self.nodes[key] = self.asset_nodes[(asset, partition)] = node
            for check in graph.checks_for(asset):
                ck = _task_key(asset, partition, run_id, check.name)
                self.nodes[ck] = _Node("check", asset, partition, ck, len(self.nodes), [key], check=check)
        self.downstream: dict[str, list[str]] = {k: [] for k in self.nodes}
        for node in self.nodes.values():
            for up in node.upstream_keys:
                self.downstream[up].append(node.key)

    def annotations(self, node: _Node, tags: Mapping[str, str], locations: dict) -> dict[str, Any]:
        """The ``daskflow`` task annotations (CONTRACTS): features for the scheduler plugins."""
        spec = self.graph.assets[node.asset]
        input_bytes = input_rows = 0
        by_host: dict[str, int] = {}
        for ref in node.upstream_materializations:
            latest = self.latest.get(ref)
            if latest is not None:
                input_bytes += latest.bytes or 0
                input_rows += latest.rows or 0
            host, size = locations.get(ref, (None, 0))
            if host:
                by_host[host] = by_host.get(host, 0) + size
        return {
            "run_id": self.run_id, "kind": node.kind, "category": node.asset if node.kind == "asset"
            else f"{node.asset}.check.{node.check.name}", "asset": node.asset, "partition": node.partition,
            "code_version": self.code_versions[node.asset], "tags": {**dict(tags), **dict(spec.tags)},
            "input_bytes": int(input_bytes), "input_rows": int(input_rows),
            "n_inputs": len(node.upstream_materializations),
            "input_locations": [{"host": h, "bytes": int(b)} for h, b in sorted(by_host.items())],
        }

    def task_specs(self, store: AssetStore, tags: Mapping[str, str], locations: dict) -> list[TaskSpec]:
        tasks = []
        for node in self.nodes.values():
            annotations = self.annotations(node, tags, locations)
            if node.kind == "check":
                tasks.append(TaskSpec(node.key, _run_check, args=(_ByValue(node.check), node.partition, self.run_id),
                                      dependencies=(node.upstream_keys[0],), annotations=annotations))
                continue
            position = {k: i for i, k in enumerate(node.upstream_keys)}
            inputs = [(param, mapping, [(p, ("dep", position[ref]) if kind == "dep" else (kind, ref))
                                        for p, (kind, ref) in sources])
                      for param, mapping, sources in node.inputs]
            spec = self.graph.assets[node.asset]
            task = _AssetTask(spec, node.partition, self.run_id, node.key, store, inputs)
            tasks.append(TaskSpec(node.key, _run_asset, args=(_ByValue(task),), dependencies=tuple(node.upstream_keys),
                                  annotations=annotations, retries=spec.retries or None))
        return tasks


def _data_locations(catalog: Catalog, asset_keys: Iterable[str]) -> dict[tuple[str, str | None], tuple[str, int]]:
    table = catalog.data_locations(asset_keys).to_pydict()
    return {(a, p): (h, b or 0) for a, p, h, b in zip(table["asset_key"], table["partition"], table["host"],
                                                      table["bytes"])}


# -- metadata events -----------------------------------------------------------
class _MetadataRouter:
    """Receives the ``daskflow-materialized`` events of one client and hands them to runs by run id."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.runs: dict[str, dict[str, dict]] = {}

    def handle(self, event: tuple[float, dict]) -> None:
        meta = event[1]
        with self.condition:
            run = self.runs.get(meta.get("run_id"))
            if run is not None:
                run[meta["key"]] = meta
                self.condition.notify_all()

    def wait_for(self, run_id: str, key: str, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        with self.condition:
            while key not in self.runs[run_id]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.condition.wait(remaining)
            return self.runs[run_id][key]


_ROUTERS: dict[str, _MetadataRouter] = {}
_ROUTERS_LOCK = threading.Lock()


def _router_for(client) -> _MetadataRouter:
    with _ROUTERS_LOCK:
        router = _ROUTERS.get(client.id)
        if router is None:
            router = _ROUTERS[client.id] = _MetadataRouter()
            client.subscribe_topic(METADATA_TOPIC, router.handle)
        return router


# -- clients -------------------------------------------------------------------
@contextlib.contextmanager
def _client_for(client=None, address: str | None = None, workers: int | None = None):
    """The given client; else one connected to ``address``/the cluster file; else an embedded cluster."""
    if client is not None:
        yield client
        return
    from daskflow.connection import connect, resolve_address

    resolved = resolve_address(address)
    if resolved is not None:
        connected = connect(resolved)
        try:
            yield connected
        finally:
            _ROUTERS.pop(connected.id, None)
            connected.close()
        return
    from distributed import Client, LocalCluster

    n_workers = int(workers or config.get("execution.workers", 2))
    threads = int(config.get("execution.threads-per-worker", 1))
    # Worker logs are silenced: task failures are recorded (with tracebacks) in the RunResult and catalog.
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL, scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]}) as cluster, Client(cluster) as embedded:
        try:
            yield embedded
        finally:
            _ROUTERS.pop(embedded.id, None)


# -- materialize ---------------------------------------------------------------
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
) -> RunResult:
    """Materialize the selected assets on a Dask cluster; return a :class:`RunResult`.

    ``definitions_or_module_or_path``: a ``Definitions``, a module, a module
    name or a ``.py`` path. ``selection``: e.g. ``"+report"`` (see
    :meth:`daskflow.graph.AssetGraph.select`); ``partitions``: ``"2024-01-02"``
    or ``"2024-01-01...2024-01-07"``. Without ``client``/``address`` (and no
    cluster file) an embedded ``LocalCluster`` is started and stopped.

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
    with _PIPELINE_LOCK:
        definitions, label = _definitions(definitions_or_module_or_path)
        graph = build_asset_graph(definitions)
        plan = _Plan(graph, selection, partitions, run_id, catalog, only_stale)  # raises before anything is written
        locations = _data_locations(catalog, {a for ref in plan.asset_nodes for a in [ref[0], *graph.upstream(ref[0])]})
        tasks = plan.task_specs(store, tags or {}, locations)  # pickles the functions (see _ByValue)
    bar = make_progress(progress)
    partition_list = None if partitions is None else (
        [partitions] if isinstance(partitions, str) else list(partitions))
    catalog.start_run(run_id, pipeline=label, selection=_selection_string(selection), partitions=partition_list,
                      tags={**dict(tags or {}), "host": socket.gethostname()})
    run = _RunState(plan, catalog, bar)
    try:
        catalog.log_events([dict(run_id=run_id, kind="run-start", message=f"{len(plan.asset_nodes)} asset-partitions, "
                                 f"{len(plan.stale_skipped)} up to date", payload={"only_stale": only_stale})]
                           + [run.event(r) for r in plan.stale_skipped])
        bar.start(run_id, _totals(plan))
        bar.update([vars(r) for r in plan.stale_skipped])
        if tasks:
            with _client_for(client, address, workers) as active:
                run.execute(active, tasks)
    except BaseException:
        catalog.finish_run(run_id, "failure")
        raise
    finally:
        bar.finish()
    status = "success" if run.ok else "failure"
    catalog.log_events([dict(run_id=run_id, kind="run-finish", message=status)])
    catalog.finish_run(run_id, status)
    records = sorted(run.records + plan.stale_skipped, key=lambda r: run.order.get((r.asset, r.partition), -1))
    checks = sorted(run.checks, key=lambda c: (run.order.get((c.asset, c.partition), -1), c.check))
    result = RunResult(run_id, status, records, checks, time.monotonic() - started)
    if raise_on_error and not result.ok:
        failed = [f"{r.asset}[{r.partition}]" if r.partition else r.asset for r in result.by_status("failed")]
        raise RunFailedError(f"run {run_id} failed: {', '.join(failed) or 'a blocking check failed'}; "
                             f"see RunResult.records or `daskflow runs {run_id}`")
    return result


def _totals(plan: _Plan) -> dict[str, int]:
    totals: dict[str, int] = {}
    for asset, _ in list(plan.asset_nodes) + [(r.asset, r.partition) for r in plan.stale_skipped]:
        totals[asset] = totals.get(asset, 0) + 1
    return totals


class _RunState:
    """Client-side bookkeeping while the graph runs: statuses, records, catalog writes."""

    def __init__(self, plan: _Plan, catalog: Catalog, bar: RunProgress):
        self.plan, self.catalog, self.bar = plan, catalog, bar
        self.status: dict[str, str] = {}
        self.records: list[AssetRecord] = []
        self.checks: list[CheckRecord] = []
        self.materialization_ids: dict[tuple[str, str | None], int] = {
            ref: m.id for ref, m in plan.latest.items()}
        for rec in plan.stale_skipped:
            self.materialization_ids[(rec.asset, rec.partition)] = rec.materialization_id
        self.order = {ref: node.index for ref, node in plan.asset_nodes.items()}
        self.order.update({(r.asset, r.partition): -1 for r in plan.stale_skipped})
        self.ok = True

    def event(self, rec: AssetRecord) -> dict[str, Any]:
        payload = {k: v for k, v in vars(rec).items() if v is not None and k not in ("asset", "partition")}
        message = rec.reason or rec.error or rec.path or ""
        return dict(run_id=self.plan.run_id, kind=f"asset-{rec.status}", asset_key=rec.asset,
                    partition=rec.partition, message=message, payload=payload)

    def execute(self, client, tasks: list[TaskSpec]) -> None:
        from distributed import as_completed

        router = _router_for(client)
        with router.condition:
            router.runs[self.plan.run_id] = {}
        try:
            futures: dict = {}
            futures = submit_graph(client, tasks)
            pending = {key: len(self.plan.downstream[key]) for key in futures}
            for batch in as_completed(list(futures.values()), with_results=False).batches():
                batch = sorted(batch, key=lambda f: self.plan.nodes[f.key].index)
                events, finished = [], []
                for future in batch:
                    node = self.plan.nodes[future.key]
                    finished.append(self._finish(node, future, router, events))
                    for up in node.upstream_keys:  # release values nobody needs any more
                        pending[up] -= 1
                        if pending[up] == 0:
                            futures.pop(up, None)
                if events:
                    self.catalog.log_events(events)
                self.bar.update([r for r in finished if r is not None])
        except BaseException:  # interrupted (Ctrl-C, catalog error): do not leave the run's tasks on the cluster
            client.cancel(list(futures.values()))
            raise
        finally:
            with router.condition:
                router.runs.pop(self.plan.run_id, None)

    def _failed_upstream(self, node: _Node) -> str | None:
        for up in node.upstream_keys:
            if self.status.get(up) != "success":
                upstream = self.plan.nodes[up]
                where = upstream.asset if upstream.partition is None else f"{upstream.asset}[{upstream.partition}]"
                if upstream.kind == "check":
                    return f"blocking check {upstream.check.name!r} of {where} failed"
                return f"upstream {where} did not succeed"
        return None

    def _finish(self, node: _Node, future, router: _MetadataRouter, events: list) -> dict | None:
        if node.kind == "check":
            self._finish_check(node, future, events)
            return None
        rec = AssetRecord(node.asset, node.partition, "success", data_version=node.data_version)
        if future.status == "finished":
            meta = router.wait_for(self.plan.run_id, node.key, timeout_s=30.0)
            if meta is None:
                rec.status, rec.error = "failed", "the task finished but its storage metadata never reached the client"
            else:
                rec.duration_s, rec.rows, rec.bytes = meta["duration_s"], meta["rows"], meta["bytes"]
                rec.path, rec.worker, rec.host = meta["path"], meta["worker"], meta["host"]
                upstream_ids = [self.materialization_ids[ref] for ref in node.upstream_materializations
                                if ref in self.materialization_ids]
                rec.materialization_id = self.catalog.record_materialization(
                    self.plan.run_id, node.asset, meta, partition=node.partition,
                    code_version=self.plan.code_versions[node.asset],
                    data_version=node.data_version, duration_s=rec.duration_s, upstream_ids=upstream_ids)
                self.materialization_ids[(node.asset, node.partition)] = rec.materialization_id
        else:
            reason = self._failed_upstream(node)
            if reason is not None:
                rec.status, rec.reason, rec.data_version = "skipped", reason, None
            else:
                rec.status, rec.data_version = "failed", None
                if future.status == "cancelled":
                    rec.error = "cancelled: the cluster lost the task (scheduler or client shut down?)"
                else:
                    exc, tb = future.exception(), future.traceback()
                    rec.error = f"{type(exc).__name__}: {exc}"
                    rec.traceback = "".join(traceback.format_exception(type(exc), exc, tb))
        self.status[node.key] = rec.status
        self.ok = self.ok and rec.status == "success"
        self.records.append(rec)
        events.append(self.event(rec))
        return vars(rec)

    def _finish_check(self, node: _Node, future, events: list) -> None:
        check = node.check
        if future.status == "finished":
            outcome, status = future.result(), "passed"
        else:
            exc = future.exception() if future.status == "error" else RuntimeError("cancelled")
            reason = self._failed_upstream(node)
            if isinstance(exc, BlockingCheckFailed) and reason is None:
                outcome, status = exc.result, "failed"
            elif reason is not None:
                outcome, status = {"passed": False, "message": reason}, "skipped"
            else:
                outcome, status = {"passed": False, "message": f"{type(exc).__name__}: {exc}"}, "failed"
        if status == "passed" and not outcome["passed"]:
            status = "failed"  # a failed warning check
        self.status[node.key] = "success" if status == "passed" or not check.blocking else "failed"
        if check.blocking and status == "failed":
            self.ok = False
        self.checks.append(CheckRecord(node.asset, node.partition, check.name, status, check.blocking,
                                       outcome.get("message", "")))
        if status != "skipped":
            self.catalog.record_check_result(self.plan.run_id, node.asset, check.name, status == "passed",
                                             partition=node.partition, blocking=check.blocking,
                                             message=outcome.get("message", ""), metadata=outcome.get("metadata"))
        events.append(dict(run_id=self.plan.run_id, kind=f"check-{status}", asset_key=node.asset,
                           partition=node.partition, message=f"{check.name}: {outcome.get('message', '')}"))
