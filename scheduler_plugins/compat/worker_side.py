"""The one worker-side internal: a finished task's metadata, which travels to the scheduler with its result."""

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
