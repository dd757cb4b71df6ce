"""Trivial asset-graph shapes shared by the peer comparison and the asv suites.

Three shapes, the ones the orchestration-overhead claims are made on:

* ``chain``   — a0 → a1 → … → a(n-1): no parallelism, pure per-step latency;
* ``fan``     — one root, n-2 middle assets that each read the root, one sink
  reading all middle assets (fan-out then fan-in);
* ``layered`` — layers of width 10; asset j of layer L reads assets j and
  (j+1) mod 10 of layer L-1 (two parents each).

An asset's upstream assets are named by its parameters (Dagster's and
daskflow's convention), so the graph is emitted as Python *source* and turned
into functions with ``exec``: the same functions are then decorated by each
system. Every function returns a tiny int, so what is measured is orchestration
(planning, scheduling, storage and catalog bookkeeping), not compute.

>>> parents = shape_parents("layered", 30)
>>> parents["a0012"]
['a0002', 'a0003']
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

SHAPES = ("chain", "fan", "layered")
LAYER_WIDTH = 10
_module_counter = itertools.count()


def asset_name(index: int) -> str:
    """Name of the asset at ``index`` (zero-padded so names sort in creation order)."""
    return f"a{index:04d}"


def shape_parents(shape: str, n_assets: int) -> dict[str, list[str]]:
    """``{asset name: [parent names]}`` for ``shape`` with ``n_assets`` assets, in topological order."""
    if n_assets < 3:
        raise ValueError(f"shape {shape!r} needs at least 3 assets, got n_assets={n_assets}")
    names = [asset_name(i) for i in range(n_assets)]
    if shape == "chain":
        return {name: ([names[i - 1]] if i else []) for i, name in enumerate(names)}
    if shape == "fan":
        parents = {names[0]: []}
        parents.update({name: [names[0]] for name in names[1:-1]})
        parents[names[-1]] = names[1:-1]
        return parents
    if shape == "layered":
        parents = {}
        for i, name in enumerate(names):
            layer, column = divmod(i, LAYER_WIDTH)
            if layer == 0:
                parents[name] = []
                continue
            base = (layer - 1) * LAYER_WIDTH
            candidates = [base + column, base + (column + 1) % LAYER_WIDTH]
            parents[name] = sorted({names[c] for c in candidates if c < n_assets})
        return parents
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def trivial_source(parents: dict[str, list[str]]) -> str:
    """Python source defining one trivial function per asset, parameters = parents."""
    lines = []
    for name, upstream in parents.items():
        lines.append(f"def {name}({', '.join(upstream)}):")
        lines.append("    return 1")
        lines.append("")
    return "\n".join(lines)


def trivial_functions(shape: str, n_assets: int) -> list[Callable[..., int]]:
    """Fresh, undecorated trivial asset functions for ``shape`` (topological order).

    The functions live in a synthetic module that is *not* in ``sys.modules``, so
    cloudpickle ships them by value to Dask worker processes.
    """
    parents = shape_parents(shape, n_assets)
    namespace: dict = {"__name__": f"daskflow_generated_{shape}_{n_assets}_{next(_module_counter)}"}
    exec(compile(trivial_source(parents), namespace["__name__"], "exec"), namespace)
    return [namespace[name] for name in parents]


def plain_dask_graph(shape: str, n_assets: int) -> dict:
    """The equivalent plain Dask task graph (legacy tuple form): one task per asset."""
    graph = {}
    for name, upstream in shape_parents(shape, n_assets).items():
        graph[name] = (_trivial_task, *upstream)
    return graph


def _trivial_task(*upstream: int) -> int:
    return 1
