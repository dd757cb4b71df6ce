"""Reading a scheduler ``TaskState`` and holding / pinning it to workers.

Holding a task: a task whose ``worker_restrictions`` name only a worker that
does not exist (:data:`~daskflow.contracts.HOLD_ADDRESS`, strict) is not
root-ish, so it skips the scheduler's queue, and ``decide_worker`` finds no
valid worker: it waits in the scheduler's ``no-worker`` state
(``scheduler.unrunnable``) until the plugin pins it to a real worker and
recommends ``processing``. ``add_worker`` never picks it up (no new worker
matches the restriction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daskflow.contracts import HOLD_ADDRESS

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler, TaskState

_HOLD = frozenset({HOLD_ADDRESS})


def task_state(scheduler: Scheduler, key: Any) -> TaskState | None:
    """The scheduler's TaskState for ``key`` or None."""
    return scheduler.tasks.get(key)


def state_of(ts: TaskState) -> str:
    return ts.state


def restricted_by_client(ts: TaskState) -> bool:
    """Whether the submitted graph restricted this task (resources, hosts or workers; placement rules do).

    Call it before the plugin restricts anything itself (in ``update_graph``). Such
    tasks must be left to Dask: a loose pin falls back to ALL workers when none of
    its workers is available and then ignores resource restrictions;
    ``valid_workers`` takes the union of worker and host restrictions, so a pin does
    not narrow a host-restricted task and a hold does not hold it; ``unpin`` would
    clear the client's own address restrictions.
    """
    return bool(ts.resource_restrictions or ts.host_restrictions or ts.worker_restrictions)


def is_manageable(ts: TaskState) -> bool:
    """Whether the plugin may hold and place this task itself.

    Tasks restricted by the client (:func:`restricted_by_client`: resources, hosts,
    workers; e.g. classified assets under ``daskflow.policy.rules``) and actors keep
    stock placement, so those restrictions hold exactly as Dask enforces them.
    """
    return (
        ts.state == "released"
        and ts.run_spec is not None
        and not ts.actor
        and not restricted_by_client(ts)
    )


def dependency_keys(ts: TaskState) -> list:
    return [dts.key for dts in ts.dependencies]


def dependencies_with_locations(ts: TaskState) -> list[tuple[int, frozenset[str]]]:
    """``(nbytes, holder addresses)`` of each dependency (nbytes 0 when not known yet)."""
    out = []
    for dts in ts.dependencies:
        nbytes = dts.nbytes if dts.nbytes and dts.nbytes > 0 else 0
        holders = frozenset(ws.address for ws in dts.who_has) if dts.who_has else frozenset()
        out.append((nbytes, holders))
    return out


def dependency_nbytes(ts: TaskState) -> list[int]:
    """Output bytes of each dependency (0 while not known yet)."""
    dependencies = ts.dependencies
    if not dependencies:  # root tasks: most of a wide graph (per-task hot path)
        return []
    return [dts.nbytes if dts.nbytes > 0 else 0 for dts in dependencies]


def annotations(ts: TaskState) -> dict:
    return ts.annotations or {}


def priority(ts: TaskState) -> tuple:
    return ts.priority


def set_priority(ts: TaskState, value: tuple) -> None:
    ts.priority = value


def prefix_name(ts: TaskState) -> str:
    return ts.prefix.name


def prefix_duration_s(ts: TaskState, default_s: float = 0.5) -> float:
    """The scheduler's own per-prefix duration estimate (what stock Dask uses)."""
    average = ts.prefix.duration_average
    return average if average is not None and average >= 0 else default_s


def hold(ts: TaskState) -> None:
    """Make the task wait in ``no-worker`` until :func:`pin` (strict, fake worker)."""
    ts.worker_restrictions = set(_HOLD)
    ts.loose_restrictions = False


def is_held(ts: TaskState) -> bool:
    return ts.worker_restrictions is not None and HOLD_ADDRESS in ts.worker_restrictions


def pin(ts: TaskState, address: str, loose: bool) -> None:
    """Restrict the task to one worker (``loose``: a preference the scheduler may override)."""
    ts.worker_restrictions = {address}
    ts.loose_restrictions = bool(loose)


def unpin(ts: TaskState) -> None:
    """Back to stock placement (no worker restrictions)."""
    ts.worker_restrictions = None
    ts.loose_restrictions = False


def pinned_to(ts: TaskState) -> set[str]:
    return set(ts.worker_restrictions or ())


def processing_on(ts: TaskState) -> str | None:
    return ts.processing_on.address if ts.processing_on is not None else None


def allowed_workers(scheduler: Scheduler, ts: TaskState) -> frozenset[str] | None:
    """Workers that supply the task's resource restrictions (None: no restriction)."""
    if not ts.resource_restrictions:
        return None
    allowed: set[str] | None = None
    for resource, required in ts.resource_restrictions.items():
        supplied = scheduler.resources.get(resource, {})
        ok = {addr for addr, amount in supplied.items() if amount >= required}
        allowed = ok if allowed is None else allowed & ok
    return frozenset(allowed or ())


def unrunnable_tasks(scheduler: Scheduler) -> list[TaskState]:
    return list(scheduler.unrunnable)


def key_of(ts: TaskState) -> Any:
    return ts.key
