"""Work on the scheduler's event loop: named periodic callbacks, call-soon and timers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scheduler_plugins.compat.plugins import is_running

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler


def add_periodic_callback(scheduler: Scheduler, name: str, callback, interval_ms: float) -> Any:
    """Register (and start, if the scheduler runs) a named periodic callback; returns it.

    One already registered under ``name`` (a replaced plugin's) is stopped first.
    """
    from tornado.ioloop import PeriodicCallback

    pc = PeriodicCallback(callback, interval_ms)
    previous = scheduler.periodic_callbacks.get(name)
    if previous is not None:
        previous.stop()
    scheduler.periodic_callbacks[name] = pc
    if is_running(scheduler):
        pc.start()
    return pc


def call_soon(scheduler: Scheduler, callback) -> None:
    """Run ``callback`` on the scheduler's event loop after the current stimulus."""
    scheduler.loop.add_callback(callback)


def call_later(scheduler: Scheduler, delay_s: float, callback) -> Any:
    """Run ``callback`` on the scheduler's event loop in ``delay_s`` seconds; returns a handle."""
    return scheduler.loop.call_later(delay_s, callback)


def cancel_timer(scheduler: Scheduler, handle: Any) -> None:
    """Cancel a :func:`call_later` handle (no error when it already ran)."""
    scheduler.loop.remove_timeout(handle)


def remove_periodic_callback(scheduler: Scheduler, name: str, callback: Any = None) -> None:
    """Stop and forget the named periodic callback (no error when there is none).

    With ``callback`` (what :func:`add_periodic_callback` returned), only that
    one: a plugin closing after it was replaced leaves its successor's alone.
    """
    registered = scheduler.periodic_callbacks.get(name)
    if callback is not None:
        callback.stop()
        if registered is not callback:
            return
    if registered is not None:
        registered.stop()
        scheduler.periodic_callbacks.pop(name, None)
