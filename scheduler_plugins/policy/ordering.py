"""Order: critical-path ranks → dispatch order (user priorities first).

Design note
-----------
A task's rank is its planned duration plus the longest planned path from it to
a sink (:func:`daskflow.critical_path.critical_path_ranks`, the one definition
shared with the replay simulator; a cycle raises ``GraphCycleError``). Ready
tasks are dispatched highest rank first; user priorities always come first and
the scheduler's own priority breaks ties (:func:`order_keys`). Without any
information (every prediction a default) the order is the scheduler's own
(:func:`plan_order`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from daskflow.critical_path import GraphCycleError, critical_path_ranks

__all__ = ["GraphCycleError", "critical_path_ranks", "order_keys", "plan_order"]


def order_keys(
    ranks: Mapping[Hashable, float],
    user_priority: Mapping[Hashable, float] | None = None,
    tie_break: Mapping[Hashable, object] | None = None,
) -> list[Hashable]:
    """Keys in dispatch order: highest user priority, then highest rank, then ``tie_break``.

    >>> order_keys({"a": 1.0, "b": 5.0, "c": 3.0}, user_priority={"a": 10})
    ['a', 'b', 'c']
    """
    user_priority = user_priority or {}
    tie_break = tie_break or {}
    return sorted(
        ranks,
        key=lambda k: (-float(user_priority.get(k, 0)), -ranks[k], tie_break.get(k, 0)),
    )


def plan_order(
    durations_s: Mapping[Hashable, float],
    parents: Mapping[Hashable, Iterable[Hashable]],
    user_priority: Mapping[Hashable, float],
    tie_break: Mapping[Hashable, object],
    informed: bool,
) -> tuple[list[Hashable], dict[Hashable, float]]:
    """``(dispatch order, ranks)`` of one graph batch.

    ``informed`` False (no prediction says more than a default): the ranks are
    computed (they are logged) but the order is the scheduler's own — user
    priority, then ``tie_break``.

    >>> plan_order({"a": 1.0, "b": 5.0}, {}, {"a": 0, "b": 0}, {"a": (0,), "b": (1,)}, informed=True)[0]
    ['b', 'a']
    >>> plan_order({"a": 1.0, "b": 5.0}, {}, {"a": 0, "b": 0}, {"a": (0,), "b": (1,)}, informed=False)[0]
    ['a', 'b']
    """
    ranks = critical_path_ranks(durations_s, parents)
    if informed:
        order = order_keys(ranks, user_priority, tie_break)
    else:
        order = sorted(durations_s, key=lambda k: (-user_priority[k], tie_break[k]))
    return order, ranks
