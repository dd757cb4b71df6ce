"""The dask / distributed internals that daskflow's own code needs, in one place.

Design note
-----------
daskflow touches two kinds of internals, and each lives in exactly one module
(``tests/test_compat_boundary.py`` fails when any other module does):

* this module, :mod:`daskflow.compat` — what the client-side library needs:
  building a task from dask's private task spec (``dask._task_spec``: there is
  no public constructor for a task with keyword arguments and key references),
  and the few scheduler reads that daskflow's own ``run_on_scheduler`` probes
  make (``daskflow.cluster``, ``daskflow.explain_fetch``,
  ``daskflow.run_governance``, ``daskflow.replay.probes``): plugin lookup by
  name, worker summaries, live keys, keys waiting in ``no-worker``, Dask's
  per-prefix duration estimates;
* :mod:`scheduler_plugins.compat` — what the scheduler plugins need (task and
  worker state, holding and pinning tasks, periodic callbacks, worker-side
  task metadata). It re-exports the readers defined here that the plugins use
  too (``plugin``), so a plugin module imports one compat module.

The split follows the dependency direction (``scheduler_plugins -> daskflow``,
never back), so daskflow can reach its internals without importing
``scheduler_plugins``. Checked against dask / distributed 2026.8.

Everything takes the scheduler (``distributed.Scheduler``) as an argument; the
types are imported for type checkers only, so importing this module costs
nothing on a client that never talks to a scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler, TaskPrefix


# -------------------------------------------------------------- task specs


def make_task(key: str, func: Callable, args: tuple, dependencies: Iterable[str], kwargs: dict) -> Any:
    """A dask task computing ``func(*args, *<results of dependencies>, **kwargs)``.

    >>> make_task("b", max, (1,), ["a"], {}).dependencies
    frozenset({'a'})
    """
    from dask._task_spec import Task, TaskRef

    refs = [TaskRef(dep) for dep in dependencies]
    return Task(key, func, *args, *refs, **kwargs)


# -------------------------------------------------------------- scheduler reads


def plugin(scheduler: Scheduler, name: str) -> Any | None:
    """The scheduler plugin registered under ``name``, or None."""
    return scheduler.plugins.get(name)


def plugin_names(scheduler: Scheduler) -> list[str]:
    """Names of all registered scheduler plugins, sorted."""
    return sorted(str(name) for name in scheduler.plugins)


def has_extension(scheduler: Scheduler, name: str) -> bool:
    """Whether ``scheduler.extensions`` holds ``name`` (e.g. the daskflow dashboard)."""
    return name in scheduler.extensions


def has_task(scheduler: Scheduler, key: Any) -> bool:
    """Whether the scheduler still knows ``key`` (not yet forgotten)."""
    return key in scheduler.tasks


def n_tasks(scheduler: Scheduler) -> int:
    return len(scheduler.tasks)


def dashboard_port(scheduler: Scheduler) -> int | None:
    """Port of the scheduler's HTTP server (dashboard), None when it has none."""
    return getattr(getattr(scheduler, "http_server", None), "port", None)


def worker_summaries(scheduler: Scheduler) -> list[dict[str, Any]]:
    """Per worker: address, name, threads, memory limit and process memory (bytes), tasks processing."""
    return [
        {
            "address": address,
            "name": str(ws.name),
            "threads": ws.nthreads,
            "memory_limit_bytes": ws.memory_limit,
            "memory_bytes": ws.memory.process,
            "processing": len(ws.processing),
        }
        for address, ws in scheduler.workers.items()
    ]


def reset_prefix_duration(scheduler: Scheduler, name: str) -> bool:
    """Forget Dask's duration estimate for the task prefix ``name`` (False: no such prefix).

    A fresh ``TaskPrefix`` honours ``distributed.scheduler.default-task-durations``;
    its estimate (EWMA of observed compute time) and longest execution time are
    copied onto the existing prefix, so tasks keep pointing at the same object.
    """
    prefix: TaskPrefix | None = scheduler.task_prefixes.get(name)
    if prefix is None:
        return False
    fresh = type(prefix)(name)
    prefix.duration_average = fresh.duration_average
    prefix.max_exec_time = fresh.max_exec_time
    return True


def unrunnable_keys(scheduler: Scheduler, keys: Iterable[Any]) -> list[str]:
    """Those of ``keys`` waiting in ``no-worker``: no connected worker satisfies their restrictions."""
    wanted = set(keys)
    return sorted(str(task.key) for task in scheduler.unrunnable if task.key in wanted)
