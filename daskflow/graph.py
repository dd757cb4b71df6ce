"""The asset graph: pure, frozen, built once from :class:`~daskflow.definitions.Definitions`.

Design note
-----------
:func:`build_asset_graph` resolves every parameter / ``deps=`` reference of
every :class:`AssetSpec` to an asset key, attaches checks, checks partitions,
and orders the assets topologically (``graphlib``; ties broken by key so the
order is deterministic). All definition mistakes surface here, before any Dask
task exists, as errors naming the objects and the fix:

* :class:`AssetCycleError` — prints the cycle ``a -> b -> a``;
* :class:`UnknownAssetError` — names the asset, the parameter and close matches;
* :class:`DuplicateAssetError` — names both functions;
* :class:`PartitionError` — names both assets and their partitions.

Reference resolution order (for a parameter ``orders`` of asset ``sales/x``):
an asset whose key is exactly ``orders``; else ``sales/orders`` (same key
prefix); else the one asset named ``orders`` anywhere (several → error asking
for ``ins={"orders": "<key>"}``).

Selection syntax (:meth:`AssetGraph.select`, Dagster-like), terms separated by
commas and unioned:

* ``name`` or ``group/name`` — one asset (by key, or by unique name);
* ``+name`` — it and all its upstream assets; ``name+`` — it and all
  downstream; ``+name+`` — both (``*`` is accepted in place of ``+``);
* ``group:NAME`` — all assets of a group; ``tag:KEY=VALUE`` (or ``tag:KEY``);
  the ``+`` modifiers apply to these too;
* ``*`` — every asset.

Partition selection: see :func:`resolve_partitions` and :mod:`daskflow.partitions`.
"""

from __future__ import annotations

import dataclasses
import difflib
import graphlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

from daskflow.definitions import AssetCheckSpec, AssetSpec, Definitions
from daskflow.errors import (
    AssetCycleError,
    AssetDefinitionError,
    DuplicateAssetError,
    SelectionError,
    UnknownAssetError,
)
from daskflow.partitions import (
    PartitionMapping,
    parse_partition_selection,
    partition_mapping,
    upstream_partition_keys,
)

__all__ = ["AssetGraph", "build_asset_graph", "resolve_partitions"]


def _close(word: str, candidates: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)


def _listing(items: Sequence[str], limit: int = 12) -> str:
    """Comma-separated items, shortened for big pipelines so a message stays one readable line."""
    if not items:
        return "(none)"
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = _close(word, candidates)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


@dataclass(frozen=True)
class AssetGraph:
    """Resolved assets, edges and checks. Build it with :func:`build_asset_graph`.

    ``assets`` maps key -> spec in topological order; ``inputs`` maps key ->
    ``((parameter, upstream_key), ...)`` for data dependencies; ``deps`` maps key
    -> non-data upstream keys; ``checks`` maps key -> attached checks (their
    ``asset`` field resolved to the key). Treat all mappings as read-only.
    """

    assets: Mapping[str, AssetSpec]
    inputs: Mapping[str, tuple[tuple[str, str], ...]]
    deps: Mapping[str, tuple[str, ...]]
    checks: Mapping[str, tuple[AssetCheckSpec, ...]]
    _downstream: Mapping[str, tuple[str, ...]] = dataclasses.field(repr=False)

    # -- lookups -------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self.assets

    def __iter__(self) -> Iterator[str]:
        return iter(self.assets)

    def __len__(self) -> int:
        return len(self.assets)

    def spec(self, key: str) -> AssetSpec:
        """The spec of ``key`` (a key or a unique asset name)."""
        return self.assets[self.resolve(key)]

    def resolve(self, ref: str) -> str:
        """Turn a key or a unique asset name into a key, else :class:`SelectionError`."""
        if ref in self.assets:
            return ref
        named = [key for key, spec in self.assets.items() if spec.name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise SelectionError(
                f"asset name {ref!r} is ambiguous: it matches {', '.join(sorted(named))}. "
                f"Fix: use the full key."
            )
        names = list(self.assets) + [s.name for s in self.assets.values()]
        raise SelectionError(
            f"no asset {ref!r} in this pipeline.{_did_you_mean(ref, names)} "
            f"Known assets: {_listing(list(self.assets))}."
        )

    def upstream(self, key: str) -> tuple[str, ...]:
        """Direct upstream keys of ``key`` (data inputs first, then ``deps=``)."""
        key = self.resolve(key)
        data = [up for _, up in self.inputs[key]]
        return tuple(dict.fromkeys(data + list(self.deps[key])))

    def downstream(self, key: str) -> tuple[str, ...]:
        """Direct downstream keys of ``key``, in topological order."""
        return self._downstream[self.resolve(key)]

    def ancestors(self, key: str) -> tuple[str, ...]:
        """All transitive upstream keys of ``key`` (excluding it), topological order."""
        return self._closure([self.resolve(key)], self.upstream, include_start=False)

    def descendants(self, key: str) -> tuple[str, ...]:
        """All transitive downstream keys of ``key`` (excluding it), topological order."""
        return self._closure([self.resolve(key)], self.downstream, include_start=False)

    def topological_order(self) -> tuple[str, ...]:
        """Every key, upstream before downstream; deterministic."""
        return tuple(self.assets)

    def inputs_of(self, key: str) -> dict[str, str]:
        """``{parameter: upstream_key}`` for the data inputs of ``key``."""
        return dict(self.inputs[self.resolve(key)])

    def checks_for(self, key: str) -> tuple[AssetCheckSpec, ...]:
        """Checks attached to ``key`` (in definition order)."""
        return self.checks.get(self.resolve(key), ())

    def groups(self) -> tuple[str, ...]:
        return tuple(sorted({spec.group for spec in self.assets.values()}))

    # -- partitions ------------------------------------------------------------
    def partition_mapping(self, key: str, upstream_key: str) -> PartitionMapping:
        """How ``key`` consumes ``upstream_key``: "none", "identity", "all" or "single"."""
        spec, up = self.spec(key), self.spec(upstream_key)
        return partition_mapping(spec.key, spec.partitions, up.key, up.partitions)

    def upstream_partitions(self, key: str, partition: str | None, upstream_key: str) -> tuple[str | None, ...]:
        """Upstream partition keys read by partition ``partition`` of ``key``.

        ``(None,)`` for an unpartitioned upstream; all upstream keys for an
        unpartitioned downstream of a partitioned asset (it receives a dict).
        """
        mapping = self.partition_mapping(key, upstream_key)
        return upstream_partition_keys(mapping, self.spec(upstream_key).partitions, partition)

    def asset_partitions(self, keys: Iterable[str] | None = None,
                         partitions: str | Sequence[str] | None = None) -> tuple[tuple[str, str | None], ...]:
        """``(key, partition)`` pairs to materialize, topological order.

        ``partitions`` applies to partitioned assets (see :func:`resolve_partitions`);
        unpartitioned assets appear once with partition ``None``.
        """
        wanted = set(self.assets) if keys is None else {self.resolve(k) for k in keys}
        return tuple((key, part) for key in self.assets if key in wanted
                     for part in resolve_partitions(self.assets[key], partitions))

    # -- selection -------------------------------------------------------------
    def select(self, expr: str | Sequence[str] | None = None) -> tuple[str, ...]:
        """Keys matching a selection expression, in topological order.

        ``None`` or ``"*"`` selects everything; a list of terms is their union;
        see the module docstring for the syntax.
        """
        if expr is not None and not isinstance(expr, str):
            expr = ",".join(expr)
        if expr is None or expr.strip() == "*":
            return self.topological_order()
        terms = [t.strip() for t in expr.split(",")]
        if not all(terms):
            raise SelectionError(
                f"selection {expr!r} has an empty term; expected comma-separated terms like "
                f"'+name', 'name+', 'group:NAME', 'tag:KEY=VALUE'. Fix: remove the extra comma."
            )
        chosen: set[str] = set()
        for term in terms:
            chosen.update(self._select_term(term, expr))
        return tuple(k for k in self.assets if k in chosen)

    def _select_term(self, term: str, expr: str) -> tuple[str, ...]:
        if term == "*":
            return tuple(self.assets)
        # '*' works like '+' at either end, for people used to Dagster's "*name*".
        up, down = term[0] in "+*", term[-1] in "+*" and len(term) > 1
        core = term[1 if up else 0: len(term) - (1 if down else 0)].strip()
        if not core or "+" in core or "*" in core:
            raise SelectionError(
                f"selection term {term!r} in {expr!r} is malformed; expected 'name', '+name', "
                f"'name+' or '+name+'. Fix: e.g. '+{core.strip('+') or 'name'}'."
            )
        base = self._select_base(core)
        result = list(base)
        if up:
            result += self._closure(base, self.upstream, include_start=False)
        if down:
            result += self._closure(base, self.downstream, include_start=False)
        return tuple(result)

    def _select_base(self, core: str) -> tuple[str, ...]:
        if core.startswith("group:"):
            group = core[len("group:"):].strip()
            keys = tuple(k for k, s in self.assets.items() if s.group == group)
            if not keys:
                raise SelectionError(
                    f"selection 'group:{group}' matches no asset.{_did_you_mean(group, self.groups())} "
                    f"Known groups: {_listing(self.groups())}."
                )
            return keys
        if core.startswith("tag:"):
            tag = core[len("tag:"):].strip()
            tag_key, has_value, tag_value = tag.partition("=")
            keys = tuple(k for k, s in self.assets.items()
                         if tag_key in s.tags and (not has_value or s.tags[tag_key] == tag_value))
            if not keys:
                known = sorted({f"{k}={v}" for s in self.assets.values() for k, v in s.tags.items()})
                raise SelectionError(
                    f"selection 'tag:{tag}' matches no asset.{_did_you_mean(tag, known)} "
                    f"Known tags: {_listing(known)}. Fix: 'tag:KEY=VALUE' or 'tag:KEY'."
                )
            return keys
        return (self.resolve(core),)

    def _closure(self, start: Iterable[str], step, include_start: bool) -> tuple[str, ...]:
        seen: set[str] = set()
        stack = list(start)
        while stack:
            for nxt in step(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        if include_start:
            seen.update(start)
        return tuple(k for k in self.assets if k in seen)


def resolve_partitions(spec: AssetSpec, partitions: str | Sequence[str] | None = None) -> tuple[str | None, ...]:
    """Partition keys of ``spec`` selected by ``partitions``.

    ``None`` → all keys; ``"2024-01-03"`` → one key; ``"2024-01-01...2024-01-07"``
    → inclusive range; ``"a,b"`` or ``["a", "b"]`` → those keys. An unpartitioned
    asset always gives ``(None,)`` (a run-level partition selection only applies
    to partitioned assets). Unknown keys raise :class:`PartitionError` naming the
    asset and the valid keys.
    """
    if spec.partitions is None:
        return (None,)
    return parse_partition_selection(spec.partitions, partitions, spec.key)


def _resolve_reference(ref: str, owner: str, prefix: str | None, by_key: Mapping[str, AssetSpec],
                       by_name: Mapping[str, list[str]], what: str) -> str:
    """Resolve ``ref`` (key or name) for ``owner`` (a label for messages); see the module note."""
    if ref in by_key:
        return ref
    if "/" not in ref:
        if prefix and f"{prefix}/{ref}" in by_key:
            return f"{prefix}/{ref}"
        candidates = sorted(by_name.get(ref, []))
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise AssetDefinitionError(
                f"{owner}: {what} {ref!r} matches several assets: {', '.join(candidates)}. "
                f"Fix: name the one you mean by its full key, e.g. ins={{{ref!r}: {candidates[0]!r}}} "
                f"(or asset={candidates[0]!r} for a check)."
            )
    names = list(by_key) + list(by_name)
    raise UnknownAssetError(
        f"{owner}: {what} {ref!r} names no asset in this pipeline.{_did_you_mean(ref, names)} "
        f"Fix: use the name or key of an existing asset (map a parameter with "
        f"@asset(ins={{'param': 'group/name'}})), or add the missing asset to the Definitions."
    )


def build_asset_graph(definitions: Definitions | Iterable[object]) -> AssetGraph:
    """Resolve, validate and order the assets of ``definitions`` into an :class:`AssetGraph`.

    Accepts a :class:`Definitions` or an iterable of decorated functions.

    >>> from daskflow.definitions import asset
    >>> @asset
    ... def a():
    ...     return 1
    >>> @asset
    ... def b(a):
    ...     return a + 1
    >>> graph = build_asset_graph([b, a])
    >>> graph.topological_order(), graph.downstream("a"), graph.select("+b")
    (('a', 'b'), ('b',), ('a', 'b'))
    """
    if not isinstance(definitions, Definitions):
        definitions = Definitions(assets=list(definitions))
    by_key: dict[str, AssetSpec] = {}
    for spec in definitions.assets:
        other = by_key.get(spec.key)
        if other is not None and other is not spec:
            raise DuplicateAssetError(
                f"two assets have the key {spec.key!r}: {other.source} and {spec.source}. "
                f"Fix: rename one (name=...), or give them different groups/key prefixes."
            )
        by_key[spec.key] = spec
    by_name: dict[str, list[str]] = {}
    for key, spec in by_key.items():
        by_name.setdefault(spec.name, []).append(key)

    inputs: dict[str, tuple[tuple[str, str], ...]] = {}
    deps: dict[str, tuple[str, ...]] = {}
    for key, spec in by_key.items():
        owner = f"asset {key!r} ({spec.source})"
        inputs[key] = tuple(
            (param, _resolve_reference(ref, owner, spec.key_prefix, by_key, by_name, f"parameter {param!r}"))
            for param, ref in spec.ins)
        deps[key] = tuple(dict.fromkeys(
            _resolve_reference(ref, owner, spec.key_prefix, by_key, by_name, "deps= entry") for ref in spec.deps))

    order = _topological_order(by_key, inputs, deps)

    for key in order:  # partitions: checked after cycles so the cycle error wins
        spec = by_key[key]  # deps= edges too, so upstream_partitions() works on every edge
        for up in dict.fromkeys([u for _, u in inputs[key]] + list(deps[key])):
            partition_mapping(key, spec.partitions, up, by_key[up].partitions)

    checks: dict[str, list[AssetCheckSpec]] = {}
    for check in definitions.checks:
        target = _resolve_reference(check.asset, f"check {check.name!r} ({check.source})", None,
                                    by_key, by_name, "asset")
        attached = checks.setdefault(target, [])
        if any(c.name == check.name for c in attached):
            first = next(c for c in attached if c.name == check.name)
            raise DuplicateAssetError(
                f"asset {target!r} has two checks named {check.name!r}: {first.source} and {check.source}. "
                f"Fix: give one a different name (@asset_check(name=...))."
            )
        attached.append(dataclasses.replace(check, asset=target))

    downstream: dict[str, list[str]] = {key: [] for key in order}
    for key in order:
        for up in dict.fromkeys([u for _, u in inputs[key]] + list(deps[key])):
            downstream[up].append(key)

    return AssetGraph(
        assets={key: by_key[key] for key in order},
        inputs={key: inputs[key] for key in order},
        deps={key: deps[key] for key in order},
        checks={key: tuple(v) for key, v in checks.items()},
        _downstream={key: tuple(v) for key, v in downstream.items()},
    )


def _topological_order(by_key: Mapping[str, AssetSpec], inputs, deps) -> tuple[str, ...]:
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for key in sorted(by_key):
        sorter.add(key, *sorted({u for _, u in inputs[key]} | set(deps[key])))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])  # each node is an upstream of the next; first == last
        edges = []
        for up, down in zip(cycle, cycle[1:]):
            params = [p for p, u in inputs[down] if u == up]
            via = f"parameter {params[0]!r}" if params else "deps="
            edges.append(f"{down!r} reads {up!r} via {via} of {by_key[down].source}")
        raise AssetCycleError(
            f"asset dependency cycle: {' -> '.join(cycle)} ({'; '.join(edges)}). "
            f"Fix: remove one of these dependencies, or split an asset in two."
        ) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return tuple(order)
