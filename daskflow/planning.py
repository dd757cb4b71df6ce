"""Planning a run: which asset-partitions run, what they read, their data versions.

Design note
-----------
Planning is pure: no catalog, no file system, no cluster, no clock. Its
inputs are the asset graph, the selection, and :class:`CatalogFacts` — the
latest materializations (and their data locations) that the *caller* read
from the catalog beforehand. So a plan can be built and tested from plain
data, and a bad selection fails before anything touches disk.

The nodes of a run are its (asset, partition) pairs plus one node per check.
Each input of an asset node is either *in-graph* (its value is passed by
Dask from the upstream task) or *external* (outside the selection, or
skipped as up to date: loaded on the worker from the path of the latest
materialization). Data versions are planned in topological order,
``H(code_version, input data versions)``, so ``only_stale=True`` can skip an
asset whose code and inputs are unchanged before the graph is built.
Downstream assets depend on their upstream's *blocking* checks, so a failed
blocking check skips them the way a failed asset does.

Checks gate data across runs too: a newest materialization whose blocking
check failed (or never finished) is *gated* (:attr:`CatalogFacts.gated`). It
is never read as an external input — an asset that would read it fails
planning with one line naming the check and the fix (re-materialize the
upstream), rather than silently reading older data — and ``only_stale``
always re-runs it (and so its checks).

:func:`build_task_specs` turns a plan into the Dask tasks of
:mod:`daskflow.tasks`, each with its task annotation built by
:func:`daskflow.contracts.task_annotation` (the features the scheduler
plugins read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from daskflow.catalog_records import Materialization, assess_staleness, compute_data_version
from daskflow.contracts import InputLocation, TaskAnnotation, task_annotation
from daskflow.daskgraph import TaskSpec
from daskflow.definitions import AssetCheckSpec, code_version_of
from daskflow.errors import SelectionError
from daskflow.graph import AssetGraph
from daskflow.partitions import check_run_size, selection_size
from daskflow.run_result import AssetRecord
from daskflow.storage import AssetStore
from daskflow.tasks import AssetTask, ByValue, run_asset_task, run_check_task

__all__ = ["CatalogFacts", "Plan", "PlanNode", "RunSelection", "build_task_specs", "plan_run",
           "select_run", "task_facts", "task_key"]

#: an (asset key, partition) pair; partition None for unpartitioned assets
AssetPartition = tuple[str, "str | None"]


@dataclasses.dataclass(frozen=True)
class CatalogFacts:
    """What planning needs to know from the catalog, read by the caller.

    ``latest``: the newest materialization per (asset, partition) of the
    run's assets and their upstreams. ``locations``: per (asset, partition),
    the host holding its current data and its size in bytes.
    """

    latest: Mapping[AssetPartition, Materialization] = dataclasses.field(default_factory=dict)
    locations: Mapping[AssetPartition, tuple[str, int]] = dataclasses.field(default_factory=dict)
    #: asset-partitions whose newest materialization is not usable (a blocking check failed or never ran)
    gated: Mapping[AssetPartition, Materialization] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_latest(cls, latest: Mapping[AssetPartition, Materialization]) -> "CatalogFacts":
        """Facts from the newest materializations: usable ones are ``latest``, the others ``gated``."""
        usable = {ref: m for ref, m in latest.items() if m.usable}
        gated = {ref: m for ref, m in latest.items() if not m.usable}
        locations = {ref: (m.host, m.bytes or 0) for ref, m in usable.items() if m.host}
        return cls(usable, locations, gated)

    def pinned(self, materializations: Mapping[AssetPartition, Materialization]) -> "CatalogFacts":
        """These facts with ``materializations`` as the latest of their asset-partitions (a resumed run's)."""
        latest = {**self.latest, **materializations}
        gated = {ref: m for ref, m in self.gated.items() if ref not in materializations}
        return CatalogFacts(latest, {ref: (m.host, m.bytes or 0) for ref, m in latest.items() if m.host}, gated)


@dataclasses.dataclass(frozen=True)
class RunSelection:
    """The selected asset keys and (asset, partition) pairs of one run."""

    selected: frozenset[str]
    pairs: tuple[AssetPartition, ...]
    #: the selected assets and their upstreams: whose catalog facts planning needs
    asset_keys: frozenset[str]


def selection_string(selection: str | Sequence[str] | None) -> str | None:
    if selection is None or isinstance(selection, str):
        return selection
    return ",".join(selection)


def select_run(graph: AssetGraph, selection: str | Sequence[str] | None,
               partitions: str | Sequence[str] | None) -> RunSelection:
    """Resolve a selection expression and partition filter (raises SelectionError/PartitionError)."""
    selected = frozenset(graph.select(selection_string(selection)))
    # bounded before any key is listed: an oversized selection fails in milliseconds (hostile-input rule)
    check_run_size(sum(selection_size(graph.spec(k).partitions, partitions) * (1 + len(graph.checks_for(k)))
                       for k in selected))
    pairs = tuple(graph.asset_partitions(selected, partitions))
    asset_keys = frozenset({a for a, _ in pairs} | {u for a, _ in pairs for u in graph.upstream(a)})
    return RunSelection(selected, pairs, asset_keys)


def task_key(asset: str, partition: str | None, run_id: str, check: str | None = None) -> str:
    name = asset if check is None else f"{asset}.check.{check}"
    return f"{name}-{run_id}" + ("" if partition is None else f"-{partition}")


@dataclasses.dataclass
class PlanNode:
    """One task of the run: an asset-partition or a check on one."""

    kind: str  # "asset" | "check"
    asset: str
    partition: str | None
    key: str
    index: int  # topological position
    upstream_keys: list[str]  # in-graph dependencies (data, blocking checks, deps=)
    check: AssetCheckSpec | None = None
    data_version: str | None = None
    #: the (asset, partition) pairs it reads, in-graph or external: its lineage
    upstream_materializations: list[AssetPartition] = dataclasses.field(default_factory=list)
    inputs: list = dataclasses.field(default_factory=list)  # (param, mapping, sources) of asset nodes


@dataclasses.dataclass
class Plan:
    """The nodes of one run, their data versions and what is skipped as up to date."""

    graph: AssetGraph
    run_id: str
    facts: CatalogFacts
    code_versions: dict[str, str | None]
    nodes: dict[str, PlanNode]
    asset_nodes: dict[AssetPartition, PlanNode]
    stale_skipped: list[AssetRecord]
    downstream: dict[str, list[str]]

    def totals(self) -> dict[str, int]:
        """Asset-partitions per asset in this run, up-to-date ones included."""
        totals: dict[str, int] = {}
        for asset, _ in list(self.asset_nodes) + [(r.asset, r.partition) for r in self.stale_skipped]:
            totals[asset] = totals.get(asset, 0) + 1
        return totals

    def annotation(self, node: PlanNode, tags: Mapping[str, str]) -> TaskAnnotation:
        """The ``daskflow`` task annotation of one node: features for the scheduler plugins."""
        spec = self.graph.assets[node.asset]
        input_bytes = input_rows = 0
        by_host: dict[str, int] = {}
        for ref in node.upstream_materializations:
            latest = self.facts.latest.get(ref)
            if latest is not None:
                input_bytes += latest.bytes or 0
                input_rows += latest.rows or 0
            host, size = self.facts.locations.get(ref, (None, 0))
            if host:
                by_host[host] = by_host.get(host, 0) + size
        locations: list[InputLocation] = [{"host": h, "bytes": int(b)} for h, b in sorted(by_host.items())]
        return task_annotation(
            run_id=self.run_id, kind=node.kind,
            category=node.asset if node.kind == "asset" else f"{node.asset}.check.{node.check.name}",
            asset=node.asset, partition=node.partition, code_version=self.code_versions[node.asset],
            input_bytes=input_bytes, input_rows=input_rows, n_inputs=len(node.upstream_materializations),
            input_locations=locations, tags={**dict(tags), **dict(spec.tags)},
        )


def plan_run(graph: AssetGraph, selection: RunSelection, run_id: str, facts: CatalogFacts,
             only_stale: bool = False) -> Plan:
    """Plan one run from the graph, the selection and the catalog facts (pure).

    Raises :class:`~daskflow.errors.SelectionError` when an asset reads an
    upstream that is neither in the run nor ever materialized.
    """
    code_versions = {key: code_version_of(spec) for key, spec in graph.assets.items()}
    nodes: dict[str, PlanNode] = {}
    asset_nodes: dict[AssetPartition, PlanNode] = {}
    stale_skipped: list[AssetRecord] = []
    versions: dict[AssetPartition, str] = {}
    for asset, partition in selection.pairs:
        inputs, upstream_keys, input_versions, reads = [], [], [], []
        for param, up in graph.inputs[asset]:
            sources = []
            for up_part in graph.upstream_partitions(asset, partition, up):
                ref = (up, up_part)
                if ref in asset_nodes:
                    upstream_keys.append(asset_nodes[ref].key)
                    sources.append((up_part, ("dep", asset_nodes[ref].key)))
                    input_versions.append(versions[ref])
                else:
                    latest = facts.latest.get(ref)
                    if ref in facts.gated:
                        raise _gated_input(asset, param, up, up_part, facts.gated[ref])
                    if latest is None:
                        raise _never_materialized(asset, param, up, up_part, up in selection.selected)
                    sources.append((up_part, ("path", (latest.path, latest.format))))
                    input_versions.append(latest.data_version)
                reads.append(ref)
            inputs.append((param, graph.partition_mapping(asset, up), sources))
            for check in graph.checks_for(up):
                for up_part in graph.upstream_partitions(asset, partition, up):
                    ck = task_key(up, up_part, run_id, check.name)
                    if check.blocking and ck in nodes:
                        upstream_keys.append(ck)
        for dep in graph.deps[asset]:
            upstream_keys += [n.key for (a, _), n in asset_nodes.items() if a == dep]
        latest = facts.latest.get((asset, partition))
        if only_stale and latest is not None and (asset, partition) not in facts.gated:
            stale, why = assess_staleness(latest, asset, partition, code_versions[asset], input_versions)
            if not stale:
                versions[(asset, partition)] = latest.data_version
                stale_skipped.append(AssetRecord(
                    asset, partition, "stale-skipped", rows=latest.rows, bytes=latest.bytes, path=latest.path,
                    worker=latest.worker, host=latest.host, materialization_id=latest.id,
                    data_version=latest.data_version, reason=why))
                continue
        versions[(asset, partition)] = compute_data_version(code_versions[asset], input_versions)
        key = task_key(asset, partition, run_id)
        node = PlanNode("asset", asset, partition, key, len(nodes), list(dict.fromkeys(upstream_keys)),
                        data_version=versions[(asset, partition)], upstream_materializations=reads,
                        inputs=inputs)
        nodes[key] = asset_nodes[(asset, partition)] = node
        for check in graph.checks_for(asset):
            ck = task_key(asset, partition, run_id, check.name)
            nodes[ck] = PlanNode("check", asset, partition, ck, len(nodes), [key], check=check)
    downstream: dict[str, list[str]] = {k: [] for k in nodes}
    for node in nodes.values():
        for up in node.upstream_keys:
            downstream[up].append(node.key)
    return Plan(graph, run_id, facts, code_versions, nodes, asset_nodes, stale_skipped, downstream)


def _never_materialized(asset: str, param: str, up: str, up_part: str | None, up_selected: bool) -> SelectionError:
    where = up if up_part is None else f"{up}[{up_part}]"
    if up_selected:
        reason, fix = "is outside the selected partitions", (
            f"run without a partition filter first, or leave {asset!r} out of the selection")
    else:
        reason, fix = "is not in this run's selection", (
            f"include it (select '+{asset}') or materialize {up!r} first")
    return SelectionError(
        f"asset {asset!r} reads {where} (parameter {param!r}), which {reason} and has "
        f"never been materialized. Fix: {fix}."
    )


def _gated_input(asset: str, param: str, up: str, up_part: str | None, gated: Materialization) -> SelectionError:
    where = up if up_part is None else f"{up}[{up_part}]"
    if gated.check_status == "failed":
        why = f"failed its blocking check {gated.failed_check!r}"
    else:
        why = "has blocking checks that never finished (its run was interrupted)"
    return SelectionError(
        f"asset {asset!r} reads {where} (parameter {param!r}), whose latest materialization "
        f"#{gated.id} (run {gated.run_id[:12]}) {why}, so it is not served. Fix: re-materialize it "
        f"(select '+{asset}', or run with --only-stale) after fixing the data or the check."
    )


def build_task_specs(plan: Plan, store: AssetStore, tags: Mapping[str, str]) -> list[TaskSpec]:
    """The Dask tasks of a plan, in topological order (pickles the user functions, see ByValue)."""
    from daskflow.learning.features import graph_positions

    tasks = []
    positions = graph_positions({key: node.upstream_keys for key, node in plan.nodes.items()})
    for node in plan.nodes.values():
        annotations: dict[str, Any] = {**plan.annotation(node, tags), **positions[node.key]}
        if node.kind == "check":
            tasks.append(TaskSpec(node.key, run_check_task, args=(ByValue(node.check), node.partition, plan.run_id),
                                  dependencies=(node.upstream_keys[0],), annotations=annotations))
            continue
        position = {k: i for i, k in enumerate(node.upstream_keys)}
        inputs = [(param, mapping, [(p, ("dep", position[ref]) if kind == "dep" else (kind, ref))
                                    for p, (kind, ref) in sources])
                  for param, mapping, sources in node.inputs]
        spec = plan.graph.assets[node.asset]
        task = AssetTask(spec, node.partition, plan.run_id, node.key, store, inputs)
        tasks.append(TaskSpec(node.key, run_asset_task, args=(ByValue(task),), dependencies=tuple(node.upstream_keys),
                              annotations=annotations, retries=spec.retries or None,
                              constraints={"resources": dict(spec.resources)} if spec.resources else {}))
    return tasks


def task_facts(plan: Plan, tags: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per task key what the placement rules judge (:class:`daskflow.placement_rules.TaskFacts`). Pure.

    Tags are the run's tags overlaid with the asset's (as in the task annotation); a
    task also holds the data it reads, in-graph (``upstream``) or from earlier runs
    (``input_tags``: the tags of those assets).
    """
    facts: dict[str, dict[str, Any]] = {}
    in_graph = set(plan.asset_nodes)
    for node in plan.nodes.values():
        spec = plan.graph.assets[node.asset]
        external = {a for a, p in node.upstream_materializations if (a, p) not in in_graph}
        facts[node.key] = {
            "kind": node.kind, "asset": node.asset, "partition": node.partition,
            "tags": {**dict(tags), **dict(spec.tags)}, "upstream": list(node.upstream_keys),
            "input_tags": [{**dict(tags), **dict(plan.graph.assets[a].tags)} for a in sorted(external)
                           if a in plan.graph.assets],
            "resources": dict(spec.resources) if node.kind == "asset" else {},
        }
    return facts
