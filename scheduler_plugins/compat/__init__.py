"""The scheduler-side compat layer: every ``distributed`` internal the plugins touch.

Design note
-----------
The plugins need a few things the public plugin API does not give: read
``TaskState``/``WorkerState`` attributes, change a task's priority and worker
restrictions, ask the scheduler to (re)consider a ready task, look plugins and
extensions up by name, run named periodic callbacks, add dashboard routes, and
put data into a finished task's metadata on the worker. All of it lives in this
package, checked against distributed 2026.8 (``tests/steering/test_compat.py``,
``tests/test_compat_layer.py``), so a change in ``distributed`` breaks one
small package with a test instead of the whole plugin.

There are two compat layers and no third: this package, and
:mod:`daskflow.compat` for what daskflow's client-side code needs (task specs,
its ``run_on_scheduler`` probes); it cannot live here because ``daskflow``
never imports ``scheduler_plugins``. The readers both sides use are defined
there and re-exported here (``plugin``, ``plugin_names``), so a plugin module
imports one compat module: ``from scheduler_plugins import compat``, then
``compat.pin(ts, ...)``. ``tests/test_compat_boundary.py`` fails when any
module in ``daskflow/`` or ``scheduler_plugins/`` outside the two touches a
scheduler/worker internal or imports a private dask module.

One module per concept, every public name re-exported here:

* :mod:`~scheduler_plugins.compat.tasks` — reading a ``TaskState``; holding
  and pinning it (why a held task waits in ``no-worker``);
* :mod:`~scheduler_plugins.compat.workers` — reading a ``WorkerState``, the
  memory thresholds;
* :mod:`~scheduler_plugins.compat.actions` — transitions: dispatch, release
  to stock placement, restart a straggler;
* :mod:`~scheduler_plugins.compat.event_loop` — named periodic callbacks and
  timers;
* :mod:`~scheduler_plugins.compat.results` — the one ``startstops`` parser;
* :mod:`~scheduler_plugins.compat.plugins` — plugins and extensions by name;
* :mod:`~scheduler_plugins.compat.dashboard` — HTTP routes, Bokeh documents,
  the navigation bar;
* :mod:`~scheduler_plugins.compat.worker_side` — a finished task's metadata on
  the worker.

The scheduler-side types (``Scheduler``, ``TaskState``, ``WorkerState``) are
imported for type checkers only.
"""

from scheduler_plugins.compat.actions import (
    dispatch,
    release_to_stock,
    restart_processing,
)
from scheduler_plugins.compat.dashboard import (
    add_bokeh_application,
    add_dashboard_navigation,
    add_http_handlers,
    has_bokeh_dashboard,
    http_application,
    http_prefix,
)
from scheduler_plugins.compat.event_loop import (
    add_periodic_callback,
    call_later,
    call_soon,
    cancel_timer,
    remove_periodic_callback,
)
from scheduler_plugins.compat.plugins import (
    add_plugin,
    extension,
    has_plugin,
    is_running,
    plugin,
    plugin_names,
    register_worker_plugin,
    set_extension,
)
from scheduler_plugins.compat.results import (
    startstops_compute,
    startstops_compute_s,
    startstops_compute_start,
)
from scheduler_plugins.compat.tasks import (
    allowed_workers,
    annotations,
    dependencies_with_locations,
    dependency_keys,
    dependency_nbytes,
    hold,
    is_held,
    is_manageable,
    key_of,
    pin,
    pinned_to,
    prefix_duration_s,
    prefix_name,
    priority,
    processing_on,
    restricted_by_client,
    set_priority,
    state_of,
    task_state,
    unpin,
    unrunnable_tasks,
)
from scheduler_plugins.compat.worker_side import (
    set_task_metadata,
    task_compute_s,
)
from scheduler_plugins.compat.workers import (
    bandwidth,
    pause_fraction,
    running_workers,
    speed_declared,
    terminate_fraction,
    worker_address,
    worker_facts,
    worker_heartbeat_at,
    worker_managed_bytes,
    worker_memory,
    worker_pressure,
    worker_process_bytes,
    worker_processing,
    worker_threads_and_memory_limit,
)

__all__ = [
    "add_bokeh_application", "add_dashboard_navigation", "add_http_handlers", "add_periodic_callback",
    "add_plugin", "allowed_workers", "annotations", "bandwidth", "call_later", "call_soon", "cancel_timer",
    "dependencies_with_locations", "dependency_keys", "dependency_nbytes", "dispatch", "extension",
    "has_bokeh_dashboard", "has_plugin", "hold", "http_application", "http_prefix", "is_held", "is_manageable",
    "is_running", "key_of", "pause_fraction", "pin", "pinned_to", "plugin", "plugin_names", "prefix_duration_s",
    "prefix_name", "priority", "processing_on", "register_worker_plugin", "release_to_stock",
    "remove_periodic_callback", "restart_processing", "restricted_by_client", "running_workers",
    "set_extension", "set_priority", "set_task_metadata", "task_compute_s", "speed_declared", "startstops_compute",
    "startstops_compute_s", "startstops_compute_start", "state_of", "task_state", "terminate_fraction", "unpin",
    "unrunnable_tasks", "worker_address", "worker_facts", "worker_heartbeat_at",
    "worker_managed_bytes",
    "worker_memory", "worker_pressure", "worker_process_bytes", "worker_processing",
    "worker_threads_and_memory_limit"
]
