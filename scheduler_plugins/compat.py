"""The one place that touches ``distributed`` scheduler internals.

Design note
-----------
The steering plugin needs a few things the public plugin API does not give:
read ``TaskState``/``WorkerState`` attributes, change a task's priority and
worker restrictions, and ask the scheduler to (re)consider a ready task. All
of it lives here, checked against distributed 2026.8 (see
tests/steering/test_compat.py), so a change in ``distributed`` breaks one
small module with a test instead of the whole plugin.

Holding a task: a task whose ``worker_restrictions`` name only a worker that
does not exist (:data:`HOLD_ADDRESS`, strict) is not root-ish, so it skips the
scheduler's queue, and ``decide_worker`` finds no valid worker: it waits in the
scheduler's ``no-worker`` state (``scheduler.unrunnable``) until the plugin pins
it to a real worker and recommends ``processing``. ``add_worker`` never picks
it up (no new worker matches the restriction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import dask.config

HOLD_ADDRESS = "daskflow-steering://hold"
_HOLD = frozenset({HOLD_ADDRESS})
SPEED_RESOURCE = "daskflow-speed"


# -------------------------------------------------------------- tasks


def task_state(scheduler: Any, key: Any) -> Any | None:
    """The scheduler's TaskState for ``key`` or None."""
    return scheduler.tasks.get(key)


def state_of(ts: Any) -> str:
    return ts.state


def is_manageable(ts: Any) -> bool:
    """Whether the plugin may hold and place this task itself.

    Tasks with user worker/host restrictions or actors keep stock placement;
    resource restrictions are kept and honoured (see :func:`allowed_workers`).
    """
    return (
        ts.state == "released"
        and ts.run_spec is not None
        and not ts.actor
        and not ts.worker_restrictions
        and not ts.host_restrictions
    )


def dependency_keys(ts: Any) -> list:
    return [dts.key for dts in ts.dependencies]


def dependencies_with_locations(ts: Any) -> list[tuple[int, frozenset[str]]]:
    """``(nbytes, holder addresses)`` of each dependency (nbytes 0 when not known yet)."""
    out = []
    for dts in ts.dependencies:
        nbytes = dts.nbytes if dts.nbytes and dts.nbytes > 0 else 0
        holders = frozenset(ws.address for ws in dts.who_has) if dts.who_has else frozenset()
        out.append((nbytes, holders))
    return out


def annotations(ts: Any) -> dict:
    return ts.annotations or {}


def priority(ts: Any) -> tuple:
    return ts.priority


def set_priority(ts: Any, value: tuple) -> None:
    ts.priority = value


def prefix_name(ts: Any) -> str:
    return ts.prefix.name


def prefix_duration_s(ts: Any, default_s: float = 0.5) -> float:
    """The scheduler's own per-prefix duration estimate (what stock Dask uses)."""
    average = ts.prefix.duration_average
    return average if average is not None and average >= 0 else default_s


def hold(ts: Any) -> None:
    """Make the task wait in ``no-worker`` until :func:`pin` (strict, fake worker)."""
    ts.worker_restrictions = set(_HOLD)
    ts.loose_restrictions = False


def is_held(ts: Any) -> bool:
    return ts.worker_restrictions is not None and HOLD_ADDRESS in ts.worker_restrictions


def pin(ts: Any, address: str, loose: bool) -> None:
    """Restrict the task to one worker (``loose``: a preference the scheduler may override)."""
    ts.worker_restrictions = {address}
    ts.loose_restrictions = bool(loose)


def unpin(ts: Any) -> None:
    """Back to stock placement (no worker restrictions)."""
    ts.worker_restrictions = None
    ts.loose_restrictions = False


def pinned_to(ts: Any) -> set[str]:
    return set(ts.worker_restrictions or ())


def processing_on(ts: Any) -> str | None:
    return ts.processing_on.address if ts.processing_on is not None else None


def allowed_workers(scheduler: Any, ts: Any) -> frozenset[str] | None:
    """Workers that supply the task's resource restrictions (None: no restriction)."""
    if not ts.resource_restrictions:
        return None
    allowed: set[str] | None = None
    for resource, required in ts.resource_restrictions.items():
        supplied = scheduler.resources.get(resource, {})
        ok = {addr for addr, amount in supplied.items() if amount >= required}
        allowed = ok if allowed is None else allowed & ok
    return frozenset(allowed or ())


def unrunnable_tasks(scheduler: Any) -> list:
    return list(scheduler.unrunnable)


def key_of(ts: Any) -> Any:
    return ts.key


# ------------------------------------------------------------- workers


def running_workers(scheduler: Any) -> list:
    """Workers accepting tasks (not paused, not retiring)."""
    return list(scheduler.running)


def worker_address(ws: Any) -> str:
    return ws.address


def worker_facts(ws: Any) -> dict:
    """Static-ish facts of a worker: address, host, threads, speed, memory limit."""
    speed = 1.0
    try:
        speed = float((ws.resources or {}).get(SPEED_RESOURCE, 1.0)) or 1.0
    except (TypeError, ValueError):
        speed = 1.0
    return {
        "address": ws.address,
        "host": ws.host,
        "nthreads": max(int(ws.nthreads or 1), 1),
        "speed": speed,
        "memory_limit_bytes": int(ws.memory_limit or 0),
    }


def worker_memory(ws: Any) -> tuple[int, int | None]:
    """``(managed bytes now, unmanaged_old bytes or None before the first memory report)``."""
    memory = ws.memory
    if not memory.process:
        return int(ws.nbytes), None
    return int(ws.nbytes), int(memory.unmanaged_old)


def worker_clock_offset_s(scheduler: Any, address: str) -> float:
    """Seconds to add to a worker's clock to get the scheduler's (0 when unknown)."""
    ws = scheduler.workers.get(address)
    return float(getattr(ws, "time_delay", 0.0) or 0.0) if ws is not None else 0.0


def startstops_compute_start(startstops: Iterable[dict] | None) -> float | None:
    """Worker-clock start of the compute phase from ``startstops``."""
    for item in startstops or ():
        if item.get("action") == "compute":
            return float(item["start"])
    return None


def worker_managed_bytes(ws: Any) -> int:
    """Bytes of task results the worker holds (updated as results land, not only on heartbeats)."""
    return int(ws.nbytes)


def worker_processing(ws: Any) -> list:
    """Tasks processing on a worker (running or queued there)."""
    return list(ws.processing)


def _memory_fraction(name: str, default: float) -> float:
    """``distributed.worker.memory.<name>`` as a fraction; 0 when disabled (0 / False / None / invalid)."""
    value = dask.config.get(f"distributed.worker.memory.{name}", default)
    if value is False or value is None:
        return 0.0
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if value > 0 and math.isfinite(value) else 0.0


def pause_fraction() -> float:
    """``distributed.worker.memory.pause`` (0 / False: workers never pause)."""
    return _memory_fraction("pause", 0.8)


def terminate_fraction() -> float:
    """``distributed.worker.memory.terminate`` (0 / False: the nanny never kills for memory)."""
    return _memory_fraction("terminate", 0.95)


def bandwidth(scheduler: Any) -> float:
    """Measured average bandwidth between workers (bytes/s)."""
    value = getattr(scheduler, "bandwidth", 0) or 0
    return float(value) if value > 0 else 100e6


# ------------------------------------------------------------ actions


def dispatch(scheduler: Any, keys: Iterable, stimulus_id: str) -> None:
    """Ask the scheduler to (re)consider ready tasks, in the given order.

    Recommendations are processed last-in first-out, so they are inserted in
    reverse to honour the order.
    """
    keys = list(keys)
    if not keys:
        return
    recommendations = {key: "processing" for key in reversed(keys)}
    scheduler.transitions(recommendations, stimulus_id)


def release_to_stock(scheduler: Any, keys: Iterable, stimulus_id: str) -> int:
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


def add_periodic_callback(scheduler: Any, name: str, callback, interval_ms: float) -> Any:
    """Register (and start, if the scheduler runs) a named periodic callback."""
    from tornado.ioloop import PeriodicCallback

    pc = PeriodicCallback(callback, interval_ms)
    scheduler.periodic_callbacks[name] = pc
    if getattr(scheduler, "status", None) is not None and str(scheduler.status.name) == "running":
        pc.start()
    return pc


def call_soon(scheduler: Any, callback) -> None:
    """Run ``callback`` on the scheduler's event loop after the current stimulus."""
    scheduler.loop.add_callback(callback)


def call_later(scheduler: Any, delay_s: float, callback) -> Any:
    """Run ``callback`` on the scheduler's event loop in ``delay_s`` seconds; returns a handle."""
    return scheduler.loop.call_later(delay_s, callback)


def cancel_timer(scheduler: Any, handle: Any) -> None:
    """Cancel a :func:`call_later` handle (no error when it already ran)."""
    scheduler.loop.remove_timeout(handle)


def startstops_compute_s(startstops: Iterable[dict] | None) -> float | None:
    """Compute time from a processing→memory transition's ``startstops``."""
    for item in startstops or ():
        if item.get("action") == "compute":
            return float(item["stop"]) - float(item["start"])
    return None


# -- steering needs ---------------------------------------------------------------


def remove_periodic_callback(scheduler: Any, name: str) -> None:
    """Stop and remove the named periodic callback (no error when absent; idempotent)."""
    pc = scheduler.periodic_callbacks.pop(name, None)
    if pc is not None:
        pc.stop()


def has_plugin(scheduler: Any, name: str) -> bool:
    """Whether a scheduler plugin named ``name`` is installed."""
    return scheduler is not None and name in scheduler.plugins
