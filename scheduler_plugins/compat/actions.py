"""Changing task states on the scheduler: dispatch ready tasks, hand them back to stock placement, restart one."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

from scheduler_plugins.compat.tasks import is_held, unpin

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler


def dispatch(scheduler: Scheduler, keys: Iterable, stimulus_id: str) -> None:
    """Ask the scheduler to (re)consider ready tasks, in the given order.

    Recommendations are processed last-in first-out, so they are inserted in
    reverse to honour the order.
    """
    keys = list(keys)
    if not keys:
        return
    recommendations = {key: "processing" for key in reversed(keys)}
    scheduler.transitions(recommendations, stimulus_id)


def release_to_stock(scheduler: Scheduler, keys: Iterable, stimulus_id: str) -> int:
    """Drop our restrictions and let stock placement take ready (``no-worker``) tasks."""
    ready = []
    for key in keys:
        ts = scheduler.tasks.get(key)
        if ts is None:
            continue
        if is_held(ts) or ts.worker_restrictions:
            unpin(ts)
        if ts.state == "no-worker":
            ready.append(ts)
    ready.sort(key=lambda ts: ts.priority)
    dispatch(scheduler, [ts.key for ts in ready], stimulus_id)
    return len(ready)


def restart_processing(scheduler: Scheduler, key: Hashable, stimulus_id: str) -> bool:
    """Take a processing task back from its worker so it is placed again (a straggler restart).

    The worker is told to forget it; a running function cannot be stopped, so
    it runs to its end there and its result is discarded. Use only for tasks
    whose side effects may happen twice (never an asset materialization).
    """
    ts = scheduler.tasks.get(key)
    if ts is None or ts.state != "processing":
        return False
    scheduler.transitions({key: "released"}, stimulus_id=stimulus_id)
    return True
