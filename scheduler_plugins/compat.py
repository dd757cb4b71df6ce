"""The scheduler-side compat layer: every ``distributed`` internal the plugins touch.

Design note
-----------
The plugins need a few things the public plugin API does not give: read
``TaskState``/``WorkerState`` attributes, change a task's priority and worker
restrictions, ask the scheduler to (re)consider a ready task, look plugins and
extensions up by name, run named periodic callbacks, add dashboard routes, and
put data into a finished task's metadata on the worker. All of it lives here,
checked against distributed 2026.8 (``tests/steering/test_compat.py``,
``tests/test_compat_layer.py``), so a change in ``distributed`` breaks one
small module with a test instead of the whole plugin.

There are two compat modules and no third: this one, and
:mod:`daskflow.compat` for what daskflow's client-side code needs (task specs,
its ``run_on_scheduler`` probes); it cannot live here because ``daskflow``
never imports ``scheduler_plugins``. The readers both sides use are defined
there and re-exported here (``plugin``, ``plugin_names``), so a plugin module
imports one compat module. ``tests/test_compat_boundary.py`` fails when any
other module in ``daskflow/`` or ``scheduler_plugins/`` touches a
scheduler/worker internal or imports a private dask module.

The scheduler-side types (``Scheduler``, ``TaskState``, ``WorkerState``) are
imported for type checkers only.

Holding a task: a task whose ``worker_restrictions`` name only a worker that
does not exist (:data:`HOLD_ADDRESS`, strict) is not root-ish, so it skips the
scheduler's queue, and ``decide_worker`` finds no valid worker: it waits in the
scheduler's ``no-worker`` state (``scheduler.unrunnable``) until the plugin pins
it to a real worker and recommends ``processing``. ``add_worker`` never picks
it up (no new worker matches the restriction).

Sections: tasks, workers, actions, task results (the one ``startstops``
parser), plugins and callbacks, dashboard (HTTP), worker side.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

import dask.config

from daskflow.compat import plugin, plugin_names  # noqa: F401 - re-exported for the plugins
from daskflow.contracts import HOLD_ADDRESS, SPEED_RESOURCE

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler, TaskState, WorkerState
    from distributed.worker import Worker

_HOLD = frozenset({HOLD_ADDRESS})


# -------------------------------------------------------------- tasks


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
    return [max(0, dts.nbytes) for dts in dependencies]


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


# ------------------------------------------------------------- workers


def running_workers(scheduler: Scheduler) -> list[WorkerState]:
    """Workers accepting tasks (not paused, not retiring)."""
    return list(scheduler.running)


def worker_address(ws: WorkerState) -> str:
    return ws.address


def worker_facts(ws: WorkerState) -> dict:
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


def speed_declared(ws: WorkerState) -> bool:
    """Whether an operator declared the worker's speed (the ``daskflow-speed`` resource): it overrides learning."""
    return SPEED_RESOURCE in (ws.resources or {})


def worker_memory(ws: WorkerState) -> tuple[int, int | None]:
    """``(managed bytes now, unmanaged_old bytes or None before the first memory report)``."""
    memory = ws.memory
    if not memory.process:
        return int(ws.nbytes), None
    return int(ws.nbytes), int(memory.unmanaged_old)


def worker_process_bytes(ws: WorkerState) -> int | None:
    """The worker process's whole memory at its last heartbeat (managed + unmanaged), None before the first."""
    process = ws.memory.process
    return int(process) if process else None


def worker_clock_offset_s(scheduler: Scheduler, address: str) -> float:
    """Seconds to add to a worker's clock to get the scheduler's (0 when unknown)."""
    ws = scheduler.workers.get(address)
    return float(getattr(ws, "time_delay", 0.0) or 0.0) if ws is not None else 0.0


def worker_threads_and_memory_limit(scheduler: Scheduler, address: str | None) -> tuple[int | None, int | None]:
    """``(nthreads, memory limit bytes)`` of the worker at ``address``; None for what is unknown or unlimited."""
    ws = scheduler.workers.get(address) if address else None
    if ws is None:
        return None, None
    return ws.nthreads, (ws.memory_limit or None)


def worker_pressure(scheduler: Scheduler, address: str | None) -> tuple[bool | None, int | None]:
    """``(paused, bytes spilled to disk)`` of the worker at ``address`` as of its last heartbeat; ``(None, None)`` when unknown."""
    ws = scheduler.workers.get(address) if address else None
    if ws is None:
        return None, None
    # ws.memory builds a MemoryState; its ``spilled`` is this heartbeat metric (read directly: per-task hot path)
    spilled = (ws.metrics.get("spilled_bytes") or {}).get("disk", 0)
    return str(getattr(ws.status, "name", ws.status)) == "paused", int(spilled)


def worker_managed_bytes(ws: WorkerState) -> int:
    """Bytes of task results the worker holds (updated as results land, not only on heartbeats)."""
    return int(ws.nbytes)


def worker_processing(ws: WorkerState) -> list[TaskState]:
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


def bandwidth(scheduler: Scheduler) -> float:
    """Measured average bandwidth between workers (bytes/s)."""
    value = getattr(scheduler, "bandwidth", 0) or 0
    return float(value) if value > 0 else 100e6


# ------------------------------------------------------------ actions


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


# -------------------------------------------------------- task results


def startstops_compute(startstops: Iterable[dict] | None) -> tuple[float | None, float | None, float | None]:
    """``(start, stop, compute seconds)`` from a processing->memory transition's ``startstops``.

    The one parser of ``startstops``. Worker clock; ``start``/``stop`` span
    all ``compute`` phases and the seconds are their sum. All None when there
    is no compute phase.

    >>> startstops_compute([{"action": "transfer", "start": 0, "stop": 1}, {"action": "compute", "start": 1.0, "stop": 3.5}])
    (1.0, 3.5, 2.5)
    """
    start = stop = None
    total = 0.0
    found = False
    for item in startstops or ():
        if item.get("action") != "compute":
            continue
        found = True
        begin, end = float(item["start"]), float(item["stop"])
        start = begin if start is None else min(start, begin)
        stop = end if stop is None else max(stop, end)
        total += max(0.0, end - begin)
    return (start, stop, total if found else None)


def startstops_compute_start(startstops: Iterable[dict] | None) -> float | None:
    """Worker-clock start of the compute phase (see :func:`startstops_compute`)."""
    return startstops_compute(startstops)[0]


def startstops_compute_s(startstops: Iterable[dict] | None) -> float | None:
    """Compute seconds (see :func:`startstops_compute`)."""
    return startstops_compute(startstops)[2]


# -------------------------------------------------- plugins and callbacks


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


def extension(scheduler: Scheduler, name: str) -> Any | None:
    """The scheduler extension stored under ``name`` (``scheduler.extensions``), or None."""
    return scheduler.extensions.get(name)


def set_extension(scheduler: Scheduler, name: str, value: Any) -> None:
    scheduler.extensions[name] = value


# -------------------------------------------------------------- dashboard


def http_application(scheduler: Scheduler) -> Any | None:
    """The scheduler's HTTP ``RoutingApplication`` (None without an HTTP server)."""
    return getattr(scheduler, "http_application", None)


def http_prefix(scheduler: Scheduler) -> str:
    """The dashboard prefix (``dask scheduler --dashboard-prefix``), '' by default."""
    for application in getattr(http_application(scheduler), "applications", []):
        prefix = getattr(application, "_prefix", None)
        if isinstance(prefix, str):
            return prefix.rstrip("/")
    return ""


def add_http_handlers(scheduler: Scheduler, handlers: list) -> None:
    """Tornado ``(pattern, handler, kwargs)`` routes, tried before the dashboard's own."""
    scheduler.http_application.add_handlers(r".*", handlers)


def has_bokeh_dashboard(scheduler: Scheduler) -> bool:
    """Whether the scheduler serves Dask's Bokeh dashboard (not ``--no-dashboard``)."""
    from bokeh.server.server import BokehTornado

    return any(isinstance(app, BokehTornado) for app in getattr(http_application(scheduler), "applications", []))


def add_bokeh_application(scheduler: Scheduler, applications: dict, prefix: str) -> None:
    """Serve Bokeh documents (``{name: factory(scheduler, extra, doc)}``) under ``prefix`` on the dashboard port."""
    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    bokeh_app = BokehApplication(applications, scheduler, prefix=prefix)
    scheduler.http_application.add_application(bokeh_app)
    bokeh_app.initialize(IOLoop.current())
    bokeh_app.start()


def add_dashboard_navigation(scheduler: Scheduler, page: str) -> None:
    """Add ``page`` to the Dask dashboard's top navigation bar."""
    from distributed.dashboard.scheduler import template_variables

    pages = template_variables(scheduler)["pages"]
    if page not in pages:
        pages.append(page)


# ------------------------------------------------------------ worker side


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


def has_plugin(scheduler: Scheduler | None, name: str) -> bool:
    """Whether a scheduler plugin named ``name`` is installed."""
    return scheduler is not None and plugin(scheduler, name) is not None
