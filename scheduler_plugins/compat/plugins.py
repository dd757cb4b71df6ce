"""Scheduler and worker plugins and scheduler extensions, looked up and installed by name.

The name lookups both sides use (``plugin``, ``plugin_names``) are defined in
:mod:`daskflow.compat` and re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daskflow.compat import plugin, plugin_names  # noqa: F401 - re-exported for the plugins

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler


def is_running(scheduler: Scheduler) -> bool:
    """Whether the scheduler has finished starting (plugins added later must be started by hand)."""
    status = getattr(scheduler, "status", None)
    return status is not None and str(status.name) == "running"


def add_plugin(scheduler: Scheduler, plugin_object: Any, name: str) -> None:
    """Add a scheduler plugin; on a scheduler that already runs, also schedule its ``start``."""
    scheduler.add_plugin(plugin_object, name=name)
    # Before start-up the scheduler calls plugin.start itself; a running one does not.
    if is_running(scheduler):
        scheduler.loop.add_callback(plugin_object.start, scheduler)


async def register_worker_plugin(scheduler: Scheduler, plugin_object: Any, name: str) -> None:
    """Install a worker plugin on the current workers and on every future one."""
    from distributed.protocol.pickle import dumps

    await scheduler.register_worker_plugin(None, dumps(plugin_object), name=name, idempotent=True)


def extension(scheduler: Scheduler, name: str) -> Any | None:
    """The scheduler extension stored under ``name`` (``scheduler.extensions``), or None."""
    return scheduler.extensions.get(name)


def set_extension(scheduler: Scheduler, name: str, value: Any) -> None:
    scheduler.extensions[name] = value


def has_plugin(scheduler: Scheduler | None, name: str) -> bool:
    """Whether a scheduler plugin named ``name`` is installed."""
    return scheduler is not None and plugin(scheduler, name) is not None
