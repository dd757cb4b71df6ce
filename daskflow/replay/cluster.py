"""The clusters replays run on: one config per mode, a warmed-up LocalCluster, waiting for workers.

Modes (how the cluster's scheduler is set up):

``stock``   plain Dask: no preload at all.
``record``  ``scheduler_plugins.preload`` with steering off: history is recorded.
``steer``   preload with ``daskflow.steering.mode=steer`` and the model at ``model_url``.
``oracle``  ``steer`` with ``daskflow.steering.oracle=true``: true costs as predictions.

The config is set with ``dask.config.set`` for the whole life of the cluster:
the LocalCluster scheduler runs in this process and the nannies copy the
config into the worker processes when they start them.

Quiet clusters: every replay cluster runs with :data:`QUIET_CLUSTER` (no
statistical profiler, slow event-loop tick and system monitor) so that idle
clusters kept for alternation do not load the machine under the measured one.

Workers slow to come back (a nanny restarting a killed worker on a loaded
machine): :func:`wait_for_workers` waits for the full cluster, and when it
does not come in time says how many are there instead of raising, so a
sequence of runs keeps going on the workers it has and reports it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dask.config

from daskflow.contracts import SCHEDULER_PRELOAD, task_annotation
from daskflow.replay import probes
from daskflow.replay.specs import replay_task, warm_worker

logger = logging.getLogger(__name__)

__all__ = ["MODES", "PRELOAD", "QUIET_CLUSTER", "mode_config", "replay_cluster", "wait_for_workers", "warm_graph"]

MODES = ("stock", "record", "steer", "oracle")

#: Background work of every replay cluster, turned down for all modes alike. An idle
#: 8-worker LocalCluster with distributed's defaults (statistical profiler every 10 ms,
#: event-loop tick every 20 ms, system monitor every 0.5 s) used ~60 % of one core on
#: a 2-core machine; with these ~16 %. Benchmarks keep several clusters alive (one per
#: mode, alternated), so the defaults loaded every measured run with the others' idling.
QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}
PRELOAD = SCHEDULER_PRELOAD


def mode_config(mode: str, history_url: str | None = None, model_url: str | None = None) -> dict[str, Any]:
    """The dask config a mode's cluster is created under."""
    if mode not in MODES:
        raise ValueError(f"replay mode {mode!r} is unknown; choose one of {', '.join(MODES)}")
    if mode == "stock":
        return {"distributed.scheduler.preload": []}
    config: dict[str, Any] = {
        "daskflow.recorder.enabled": True,
        "daskflow.steering.mode": "off" if mode == "record" else "steer",
        "daskflow.steering.oracle": mode == "oracle",
        "daskflow.dashboard.enabled": False,
    }
    if history_url:
        config["daskflow.history.url"] = str(history_url)
    if model_url:
        config["daskflow.steering.model"] = str(model_url)
        config["daskflow.models.url"] = str(model_url)
    return config


@contextlib.contextmanager
def replay_cluster(
    mode: str = "stock",
    workers: int = 8,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    history_url: str | None = None,
    model_url: str | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A warmed-up process LocalCluster set up for ``mode``; yields a connected Client.

    >>> with replay_cluster("stock", workers=2) as client:   # doctest: +SKIP
    ...     result = replay_on_client(client, "trace.json", mode="stock")
    """
    from distributed import Client, LocalCluster

    config = {**QUIET_CLUSTER, **mode_config(mode, history_url, model_url), **dict(extra_config or {})}
    scheduler_kwargs = {"preload": [PRELOAD]} if mode != "stock" else {}
    with dask.config.set(config), warnings.catch_warnings():
        # The scheduler's HTTP server (health, metrics) falls back to a free port when
        # 8787 is taken; the dashboard is off, so that warning is noise here.
        warnings.filterwarnings("ignore", message="Port 8787 is already in use", category=UserWarning)
        with LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit if memory_limit is not None else "auto",
            dashboard_address=None,
            scheduler_kwargs=scheduler_kwargs,
        ) as cluster, Client(cluster) as client:
            client.wait_for_workers(workers, timeout=120)
            client.run(warm_worker)
            client.register_plugin(probes.ReplayWatch(), name=probes.WATCH_NAME)
            if mode != "record":  # recorded history holds the trace's tasks only
                warm_graph(client, 4 * workers)
            yield client


def warm_graph(client, n_tasks: int) -> None:
    """Run one small replay graph before any measured run (same for every mode).

    The first graph a scheduler sees pays one-off costs that are not
    scheduling: the plugins' first batched prediction (XGBoost initialises its
    thread pool), first placement, imports on the workers. A measured run
    should not carry them; a user's long-lived cluster pays them once.
    """
    from distributed import wait

    from daskflow.daskgraph import TaskSpec, submit_graph

    run_id = uuid.uuid4().hex
    specs = []
    for i in range(n_tasks):
        annotations = task_annotation(run_id=run_id, kind="replay", category="warmup", n_inputs=min(i, 1),
                                      true_duration_s=0.01, true_peak_memory_bytes=0)
        dependencies = (specs[0].key,) if i else ()
        specs.append(TaskSpec(key=f"warmup-{run_id[:8]}-{i}", func=replay_task, args=(0.01, 0, 0),
                              dependencies=dependencies, annotations=annotations))
    futures = submit_graph(client, specs)
    wait(list(futures.values()), timeout=120)
    client.cancel(list(futures.values()))


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def wait_for_workers(client, timeout_s: float = 120.0, expected: int | None = None) -> tuple[dict[str, dict[str, Any]], int]:
    """Wait until every worker (restarted ones too) is connected; ``(the workers' info, the count expected)``.

    The expected count is ``expected`` (a test bed's ``n_workers``), else the
    cluster's worker spec when the client knows its cluster (LocalCluster),
    else at least one worker. Rechecked after waiting: on an overloaded
    machine a worker can drop out between the two calls. When they do not
    all come within ``timeout_s`` it returns the workers that are there
    (fewer than expected, maybe none): the caller reports it and goes on.
    """
    spec = getattr(getattr(client, "cluster", None), "worker_spec", None)
    if expected is None:
        expected = len(spec) if spec else 1
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(TimeoutError):
            client.wait_for_workers(expected, timeout=max(1.0, deadline - time.monotonic()))
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if len(workers) >= expected or time.monotonic() > deadline:
            return workers, expected
        time.sleep(0.1)
