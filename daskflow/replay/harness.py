"""Replay a workload trace on a real Dask cluster and measure its makespan.

Each trace task becomes ONE Dask task (keys ``"<category>-<runid8>-<index>"``,
so Dask's per-prefix statistics are per category) with the trace's
dependencies, sent as one graph through :func:`daskflow.daskgraph.submit_graph`
with daskflow annotations built by :func:`daskflow.contracts.task_annotation`
(``kind="replay"``, category, declared input bytes, number of inputs, run id
and — for the oracle — the true scaled costs). A
replayed task sleeps its scaled runtime while holding its scaled peak memory
(allocated and touched page by page), then returns its scaled output.

Modes (how the cluster's scheduler is set up):

``stock``   plain Dask: no preload at all.
``record``  ``scheduler_plugins.preload`` with steering off: history is recorded.
``steer``   preload with ``daskflow.steering.mode=steer`` and the model at ``model_url``.
``oracle``  ``steer`` with ``daskflow.steering.oracle=true``: true costs as predictions.

The config is set with ``dask.config.set`` for the whole life of the cluster:
the LocalCluster scheduler runs in this process and the nannies copy the
config into the worker processes when they start them.

Scales: ``memory_scale`` defaults to 0.01 because holding memory is CPU work
(every page is faulted in and zeroed): at 0.1 the blast traces alone touch
~33 GB, which on a small shared machine turns sleep-bound tasks into
CPU-bound ones and swamps the scheduling effects being measured. Use
``memory_scale=1`` (and a ``memory_limit``) when memory pressure is the point.

Multi-host test bed: with ``testbed=`` (CLI ``--hosts``) the trace runs on
a :class:`~daskflow.testbed.TestBed` instead of a LocalCluster, with stored
data on hosts, emulated host speeds and the speed- and transfer-aware
clairvoyant simulation (:mod:`daskflow.replay.hosted`). A worker slow to come
back between repeats is reported (``workers_slow_to_return``), not fatal.

Quiet clusters: every replay cluster runs with :data:`QUIET_CLUSTER` (no
statistical profiler, slow event-loop tick and system monitor) so that idle
clusters kept for alternation do not load the machine under the measured one.

Measurement: ``makespan_s`` runs from graph submission to the moment the
client sees the last task finished, on a warmed-up cluster whose workers are
all connected. A reused cluster keeps Dask's per-prefix duration averages
between runs; they are reset before every run so each run starts as a fresh
stock Dask would. ``workers_lost`` counts ``remove_worker`` events during the
run (a worker killed and restarted by its nanny counts once) and
``worker_pauses`` counts transitions to ``paused``, both seen by a small
scheduler plugin (:class:`~daskflow.replay.probes.ReplayWatch`); prediction
errors come from :mod:`daskflow.replay.metrics`.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dask.config

from daskflow.contracts import SCHEDULER_PRELOAD, task_annotation
from daskflow.replay import hosted, metrics, probes
from daskflow.replay.metrics import median_ape
from daskflow.replay.probes import ReplayWatch
from daskflow.replay.simulate import list_schedule_makespan_s, lower_bound_s
from daskflow.replay.trace import (
    Trace,
    load_trace,
    memory_pressure_bag,
    sanitize_category,
    scale_time,
    scale_to_target,
    skewed_bag,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "OUTPUT_CAP_BYTES",
    "ReplayWatch",
    "median_ape",
    "replay",
    "replay_cluster",
    "replay_on_client",
    "replay_task",
    "resolve_trace",
]

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

#: A replayed task returns at most this many bytes (outputs are
#: ``output_bytes × bytes_scale``; WfCommons outputs reach 4 GB per task).
OUTPUT_CAP_BYTES = 64 * 2**20

_PAGE_BYTES = 4096


# --------------------------------------------------------------------------- the task


def replay_task(duration_s: float, memory_bytes: int, output_bytes: int, *upstream: Any) -> bytes:
    """What a replayed task does (runs on a worker).

    Allocates ``memory_bytes`` and writes one byte per page so the memory is
    really resident (the peak shows in VmHWM), holds it until ``duration_s``
    has passed since the start (allocation time included), frees it and
    returns ``output_bytes`` zero bytes. ``upstream`` values are ignored.
    """
    start = time.perf_counter()
    buffer = None
    if memory_bytes > 0:
        import numpy as np

        buffer = np.empty(int(memory_bytes), dtype=np.uint8)
        buffer[::_PAGE_BYTES] = 1  # touch every page: resident, not just reserved
    remaining = duration_s - (time.perf_counter() - start)
    if remaining > 0:
        time.sleep(remaining)
    del buffer
    return bytes(int(output_bytes))


def _warm_worker() -> int:
    """Import what tasks need before the clock starts."""
    import numpy as np

    return int(np.ones(1024, dtype=np.uint8).sum())


# --------------------------------------------------------------------------- traces and clusters


def resolve_trace(spec: str | Trace) -> Trace:
    """A trace from a path, or a generated bag: ``skewed-bag[:SEED[:N]]``, ``memory-pressure[:SEED[:N]]``."""
    if isinstance(spec, Trace):
        return spec
    spec = str(spec)
    for name, generator in (("skewed-bag", skewed_bag), ("memory-pressure", memory_pressure_bag)):
        if spec == name or spec.startswith(name + ":"):
            parts = spec.split(":")[1:]
            try:
                numbers = [int(p) for p in parts]
            except ValueError:
                raise ValueError(f"generated trace {spec!r}: expected {name}[:SEED[:N]] with integers") from None
            kwargs: dict[str, int] = {}
            if numbers:
                kwargs["seed"] = numbers[0]
            if len(numbers) > 1:
                kwargs["n"] = numbers[1]
            return generator(**kwargs)
    return load_trace(spec)


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
            client.run(_warm_worker)
            client.register_plugin(probes.ReplayWatch(), name=probes.WATCH_NAME)
            if mode != "record":  # recorded history holds the trace's tasks only
                _warm_graph(client, 4 * workers)
            yield client


def _warm_graph(client, n_tasks: int) -> None:
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


# --------------------------------------------------------------------------- replay


def _build_specs(trace: Trace, run_id: str, memory_scale: float, bytes_scale: float):
    from daskflow.daskgraph import TaskSpec
    from daskflow.learning.features import graph_positions

    run8 = run_id[:8]
    categories = [sanitize_category(task.category) for task in trace.tasks]
    keys = [f"{category}-{run8}-{i}" for i, category in enumerate(categories)]
    key_of = {task.id: key for task, key in zip(trace.tasks, keys)}
    positions = graph_positions({key_of[task.id]: [key_of[p] for p in task.parents] for task in trace.tasks})
    specs = []
    for task, key, category in zip(trace.tasks, keys, categories):
        memory = int((task.memory_bytes or 0) * memory_scale)
        output = min(int(task.output_bytes * bytes_scale), OUTPUT_CAP_BYTES)
        annotations = task_annotation(
            run_id=run_id,
            kind="replay",
            category=category,
            tags={"trace": trace.name, "trace_category": task.category, "trace_task": task.id},
            input_bytes=int(task.input_bytes * bytes_scale),
            n_inputs=len(task.parents),
            true_duration_s=float(task.runtime_s),
            true_peak_memory_bytes=memory,
            **positions[key],
        )
        specs.append(
            TaskSpec(
                key=key,
                func=replay_task,
                args=(float(task.runtime_s), memory, output),
                dependencies=tuple(key_of[p] for p in task.parents),
                annotations=annotations,
            )
        )
    return specs, keys, categories


def _wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _wait_for_full_cluster(client, timeout_s: float = 120.0, expected: int | None = None) -> dict[str, dict[str, Any]]:
    """Wait until every worker (restarted ones too) is connected; return the workers' info.

    The expected count is ``expected`` (a test bed's ``n_workers``), else the
    cluster's worker spec when the client knows its cluster (LocalCluster),
    else at least one worker. Rechecked after waiting: on an overloaded
    machine a worker can drop out between the two calls.
    """
    spec = getattr(getattr(client, "cluster", None), "worker_spec", None)
    if expected is None:
        expected = len(spec) if spec else 1
    deadline = time.monotonic() + timeout_s
    while True:
        client.wait_for_workers(expected, timeout=max(1.0, deadline - time.monotonic()))
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if len(workers) >= expected:
            return workers
        if time.monotonic() > deadline:
            raise TimeoutError(f"replay: only {len(workers)} of {expected} workers connected after {timeout_s:.0f} s")
        time.sleep(0.1)


def replay_on_client(
    client,
    trace: str | Trace,
    mode: str,
    *,
    target_seconds: float = 8.0,
    time_scale: float | None = None,
    memory_scale: float = 0.01,
    bytes_scale: float = 0.001,
    history_url: str | None = None,
    baseline_history_url: str | None = None,
    repeat: int = 1,
    timeout_s: float = 600.0,
    bed: Any = None,
    data_scale: float | None = None,
    input_placement: str | int = "round-robin",
) -> dict[str, Any]:
    """Replay ``trace`` ``repeat`` times on an existing cluster (set up for ``mode``); return the result dict.

    With ``bed`` (a started :class:`~daskflow.testbed.TestBed` whose scheduler
    ``client`` is connected to) the trace is replayed with stored data on
    hosts (:mod:`daskflow.replay.hosted`): ``data_scale`` (None: automatic)
    scales its bytes, ``input_placement`` places its external inputs.
    """
    from distributed import wait

    if mode not in MODES:
        raise ValueError(f"replay mode {mode!r} is unknown; choose one of {', '.join(MODES)}")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    raw = resolve_trace(trace)
    expected = bed.n_workers if bed is not None else None
    worker_info = _wait_for_full_cluster(client, expected=expected)
    workers = len(worker_info)
    threads = [w.get("nthreads", 1) for w in worker_info.values()]
    slots = int(sum(threads)) or 1
    scaled = scale_time(raw, time_scale) if time_scale else scale_to_target(raw, target_seconds, slots)
    bound = lower_bound_s(scaled, slots)
    simulated = list_schedule_makespan_s(scaled, slots)
    hosted_run = hosted.HostedRun.start(bed, scaled, worker_info, data_scale, input_placement) if bed is not None else None

    makespans: list[float] = []
    run_ids: list[str] = []
    failed_tasks = workers_lost = pauses = 0
    errors: dict[str, Any] = {}
    per_run_errors: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    slow_workers = 0
    for round_index in range(repeat):
        if round_index:
            try:
                _wait_for_full_cluster(client, expected=expected)
            except TimeoutError as exc:  # a worker slow to come back: report it, keep going
                logger.warning("%s; replaying on the workers that are there", exc)
                slow_workers += 1
        run_id = uuid.uuid4().hex
        if hosted_run is not None:
            specs, keys, categories = hosted_run.specs(run_id, memory_scale)
        else:
            specs, keys, categories = _build_specs(scaled, run_id, memory_scale, bytes_scale)
        client.run_on_scheduler(probes.reset_prefix_estimates, sorted(set(categories)))
        before = client.run_on_scheduler(probes.watch_counts)
        from daskflow.daskgraph import submit_graph

        if hosted_run is not None:
            hosted_run.before_submit(client)
        start = time.perf_counter()
        futures = submit_graph(client, specs)
        done, not_done = wait(list(futures.values()), timeout=timeout_s)
        makespans.append(time.perf_counter() - start)
        if hosted_run is not None:
            hosted_run.after_run(client)
        after = client.run_on_scheduler(probes.watch_counts)
        workers_lost += after["workers_removed"] - before["workers_removed"]
        pauses += after["worker_pauses"] - before["worker_pauses"]
        failed_tasks += sum(1 for f in futures.values() if f.status == "error") + len(not_done)
        predictions = client.run_on_scheduler(probes.fetch_predictions, keys)
        state = client.run_on_scheduler(probes.scheduler_state)
        if predictions is not None and state.get("model_version") is not None and mode != "oracle":
            baseline = None if baseline_history_url else metrics.baseline_from_manifest(state.get("model_url"))
            if baseline is None:
                baseline = metrics.baseline_from_history(baseline_history_url or history_url, set(run_ids) | {run_id})
            per_run_errors.append(metrics.prediction_errors(scaled, keys, categories, memory_scale, predictions, baseline))
            errors = {"predictions_found": len(predictions)}
        elif predictions is not None:
            errors = {"predictions_found": len(predictions)}
        run_ids.append(run_id)
        client.cancel(list(futures.values()))
        del futures, done, not_done
        _wait_until(lambda run_keys=keys: client.run_on_scheduler(probes.count_live_keys, run_keys) == 0, 60,
                    f"run {run_id[:8]} to be released")

    for name in metrics.ERROR_FIELDS:  # median over the repeats
        values = [e[name] for e in per_run_errors if e.get(name) is not None]
        errors[name] = statistics.median(values) if values else None
    makespan = statistics.median(makespans)
    result: dict[str, Any] = {
        "trace": raw.name,
        "trace_source": raw.source,
        "application": raw.application,
        "mode": mode,
        "workers": workers,
        "threads_per_worker": max(threads) if threads else 1,
        "slots": slots,
        "tasks": len(scaled),
        "target_seconds": None if time_scale else target_seconds,
        "time_scale": scaled.time_scale,
        "memory_scale": memory_scale,
        "bytes_scale": bytes_scale,
        "repeat": repeat,
        "makespan_s": makespan,
        "makespans_s": makespans,
        "lower_bound_s": bound,
        "simulated_list_makespan_s": simulated,
        "makespan_over_lower_bound": makespan / bound if bound > 0 else None,
        "simulated_over_lower_bound": simulated / bound if bound > 0 else None,
        "makespan_over_simulated": makespan / simulated if simulated > 0 else None,
        "workers_lost": workers_lost,
        "worker_pauses": pauses,
        "failed_tasks": failed_tasks,
        "run_ids": run_ids,
        "scheduler_plugins": state.get("plugins", []),
        "steering_mode": state.get("steering_mode"),
        "model_version": state.get("model_version"),
        "fallback_count": state.get("fallback_count"),
        "loaded_model_url": state.get("model_url"),
        "predictions_found": errors.pop("predictions_found", 0),
        "duration_median_ape": None,
        "baseline_duration_median_ape": None,
        "memory_median_ape": None,
        "baseline_memory_median_ape": None,
    }
    result.update(errors)
    result["workers_slow_to_return"] = slow_workers
    if hosted_run is not None:
        result.update(hosted_run.result(simulated, makespan))
    return result


def replay(
    trace_path: str | Trace,
    mode: str = "stock",
    workers: int = 8,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    target_seconds: float = 8.0,
    memory_scale: float = 0.01,
    bytes_scale: float = 0.001,
    history_url: str | None = None,
    model_url: str | None = None,
    *,
    client=None,
    time_scale: float | None = None,
    baseline_history_url: str | None = None,
    repeat: int = 1,
    timeout_s: float = 600.0,
    testbed: Mapping[str, Any] | None = None,
    data_scale: float | None = None,
    input_placement: str | int = "round-robin",
) -> dict[str, Any]:
    """Replay a trace (path, :class:`Trace`, or ``skewed-bag[:SEED[:N]]``) and return the result dict.

    With ``testbed`` (keyword arguments of
    :func:`daskflow.replay.hosted.testbed_cluster`: ``hosts``,
    ``workers_per_host``, ``link_mbit``, ``link_latency_ms``, ``host_speeds``,
    ``slowdown``) it runs on a fresh multi-host test bed instead, with stored
    data on hosts; the result then also holds ``hosts``,
    ``bytes_between_hosts``, ``storage_bytes_read_from_other_hosts`` and
    ``simulated_heft_makespan_s``.

    Starts a process LocalCluster set up for ``mode`` unless ``client`` is
    given (then the caller set the cluster up: see :func:`replay_cluster`).
    The result holds ``trace, mode, workers, threads_per_worker, tasks,
    makespan_s, lower_bound_s, simulated_list_makespan_s``, ratios,
    ``workers_lost`` and, when a model is loaded, the prediction errors
    ``duration_median_ape, baseline_duration_median_ape, memory_median_ape,
    baseline_memory_median_ape``.
    """
    kwargs = {
        "target_seconds": target_seconds,
        "time_scale": time_scale,
        "memory_scale": memory_scale,
        "bytes_scale": bytes_scale,
        "history_url": history_url,
        "baseline_history_url": baseline_history_url,
        "repeat": repeat,
        "timeout_s": timeout_s,
    }
    trace = resolve_trace(trace_path)  # fail on a bad trace before starting a cluster
    if testbed is not None:
        with hosted.testbed_cluster(mode, threads_per_worker=threads_per_worker, memory_limit=memory_limit or "auto",
                                    history_url=history_url, model_url=model_url, **dict(testbed)) as (bed, bed_client):
            result = replay_on_client(bed_client, trace, mode, bed=bed, data_scale=data_scale,
                                      input_placement=input_placement, **kwargs)
    elif client is not None:
        result = replay_on_client(client, trace, mode, **kwargs)
    else:
        with replay_cluster(mode, workers, threads_per_worker, memory_limit, history_url, model_url) as own_client:
            result = replay_on_client(own_client, trace, mode, **kwargs)
    result["memory_limit"] = memory_limit
    result["model_url"] = model_url
    result["history_url"] = history_url
    return result
