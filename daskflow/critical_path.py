"""Upward ranks (critical path) of a task graph: the one definition.

Design note
-----------
A task's *upward rank* is its own duration plus the longest duration-weighted
path from it to a sink (HEFT's ``rank_u``). Ordering ready tasks by it is the
classic critical-path priority. The steering policy
(:mod:`scheduler_plugins.policy.ordering`) and the replay simulator
(:mod:`daskflow.replay.simulate`, the clairvoyant bound of the benchmarks) both
call :func:`critical_path_ranks`, so the bound we compare against is computed by
the code we ship.

Behaviour on cycles: a cycle cannot come from Dask (a task graph is a DAG), so
one in the input is a bug upstream; :func:`critical_path_ranks` raises
:class:`GraphCycleError` (a ``ValueError``) naming a task on it. The steering
plugin treats that as any hook failure: stock Dask scheduling for the batch.

Negative durations count as 0. Pure: no I/O, no clock, no ``distributed``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar, overload

__all__ = ["GraphCycleError", "critical_path_ranks", "topological_order"]

K = TypeVar("K", bound=Hashable)


class GraphCycleError(ValueError):
    """The task graph given to a rank computation is not a DAG (``task``: one task on a cycle)."""

    def __init__(self, task: object) -> None:
        super().__init__(f"the task graph has a cycle through task {task!r}; critical-path ranks need a DAG")
        self.task = task


def topological_order(parents: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """Kahn's algorithm over an index graph; returns ``(order, children)``.

    Raises :class:`GraphCycleError` on a cycle and ``ValueError`` for a parent
    index out of range.

    >>> topological_order([[], [0], [0]])
    ([0, 1, 2], [[1, 2], [], []])
    """
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    missing = [0] * n
    for child, task_parents in enumerate(parents):
        for parent in task_parents:
            if not 0 <= parent < n:
                raise ValueError(f"task {child} names parent {parent}, which is not an index in 0..{n - 1}")
            children[parent].append(child)
            missing[child] += 1
    order = [i for i in range(n) if missing[i] == 0]
    for i in order:  # the list grows while we walk it
        for child in children[i]:
            missing[child] -= 1
            if missing[child] == 0:
                order.append(child)
    if len(order) != n:
        stuck = next(i for i in range(n) if missing[i] > 0)
        raise GraphCycleError(stuck)
    return order, children


def _index_ranks(durations: list[float], parents: Sequence[Sequence[int]]) -> list[float]:
    if len(durations) != len(parents):
        raise ValueError(f"durations ({len(durations)}) and parents ({len(parents)}) must have the same length")
    order, children = topological_order(parents)
    ranks = [0.0] * len(durations)
    for i in reversed(order):
        longest_below = 0.0
        for child in children[i]:
            if ranks[child] > longest_below:
                longest_below = ranks[child]
        ranks[i] = durations[i] + longest_below
    return ranks


@overload
def critical_path_ranks(durations: Sequence[float], parents: Sequence[Sequence[int]]) -> list[float]: ...
@overload
def critical_path_ranks(durations: Mapping[K, float], parents: Mapping[K, Sequence[K]]) -> dict[K, float]: ...


def critical_path_ranks(durations, parents):
    """Upward rank of every task: own duration + longest path (sum of durations) to a sink.

    Index based (``durations[i]``, ``parents[i]`` a list of indices; returns a
    list) or keyed (``durations`` maps key -> seconds, ``parents`` maps key ->
    parent keys; returns a dict). Keyed parents absent from ``durations`` are
    ignored (they belong to an earlier graph); repeated parents count once.

    >>> critical_path_ranks([1.0, 2.0, 3.0], [[], [0], [0]])   # 0 -> 1, 0 -> 2
    [4.0, 2.0, 3.0]
    >>> critical_path_ranks({"a": 1.0, "b": 5.0, "c": 1.0}, {"b": ["a"], "c": ["a"]})
    {'a': 6.0, 'b': 5.0, 'c': 1.0}
    >>> try:
    ...     critical_path_ranks({"a": 1.0, "b": 1.0}, {"a": ["b"], "b": ["a"]})
    ... except GraphCycleError as exc:
    ...     print(exc)
    the task graph has a cycle through task 'a'; critical-path ranks need a DAG
    """
    if isinstance(durations, Mapping):
        keys = list(durations)
        index = {key: i for i, key in enumerate(keys)}
        parent_map = parents if isinstance(parents, Mapping) else {}
        index_parents: list[Sequence[int]] = []
        for key in keys:
            its_parents = parent_map.get(key)
            if not its_parents:
                index_parents.append(())
                continue
            found = {index[p] for p in its_parents if p in index}
            index_parents.append(tuple(found))
        values = [max(float(durations[key]), 0.0) for key in keys]
        try:
            ranks = _index_ranks(values, index_parents)
        except GraphCycleError as exc:
            raise GraphCycleError(keys[exc.task]) from None
        return dict(zip(keys, ranks))
    return _index_ranks([max(float(d), 0.0) for d in durations], parents)
