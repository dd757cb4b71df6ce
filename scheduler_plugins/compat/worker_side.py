"""The worker-side internals: a finished task's metadata (it travels to the scheduler with its result) and its compute time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.worker import Worker


def set_task_metadata(worker: Worker, key: Any, name: str, value: Any) -> bool:
    """Put ``value`` under ``metadata[name]`` of a task on ``worker`` (False: the task is gone).

    Mutated in place: the task-finished message to the scheduler already holds
    this very dict, so the value arrives with the ``processing -> memory``
    transition (``kwargs["metadata"]``) without an extra message.
    """
    state = getattr(worker, "state", None)
    ts = state.tasks.get(key) if state is not None else None
    if ts is None:
        return False
    ts.metadata[name] = value
    return True


def task_compute_s(worker: Worker, key: Any) -> float | None:
    """Seconds the task computed on ``worker`` (its ``startstops``' compute phases; None when unknown).

    Recorded by the worker before the ``executing -> memory`` transition, so a
    plugin's ``transition`` hook reads it there; thread hand-off and event-loop
    delays are not in it.
    """
    from scheduler_plugins.compat.results import startstops_compute_s

    state = getattr(worker, "state", None)
    ts = state.tasks.get(key) if state is not None else None
    if ts is None:
        return None
    return startstops_compute_s(ts.startstops)
