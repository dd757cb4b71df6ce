"""Replay a workload trace on a real Dask cluster and measure its makespan.

A trace becomes one graph (:mod:`daskflow.replay.specs`: one Dask task per
trace task, a task body that sleeps its scaled runtime holding its scaled
peak memory), sent through :func:`daskflow.daskgraph.submit_graph` to a
cluster set up for a mode (:mod:`daskflow.replay.cluster`: ``stock``,
``record``, ``steer``, ``oracle``), ``repeat`` times; this module measures
the runs and assembles the result.

Scales: ``memory_scale`` defaults to 0.01 because holding memory is CPU work
(every page is faulted in and zeroed): at 0.1 the blast traces alone touch
~33 GB, which on a small shared machine turns sleep-bound tasks into
CPU-bound ones and swamps the scheduling effects being measured. Use
``memory_scale=1`` (and a ``memory_limit``) when memory pressure is the point.

Multi-host test bed: with ``testbed=`` (CLI ``--hosts``) the trace runs on
a :class:`~daskflow.testbed.TestBed` instead of a LocalCluster, with stored
data on hosts, emulated host speeds and the speed- and transfer-aware
clairvoyant simulation (:mod:`daskflow.replay.hosted`).

Keep going: a worker slow to come back (before the first run or between
repeats) is reported (``workers_slow_to_return``), not fatal — the run goes
on with the workers that are there; a run that passes ``timeout_s`` counts
its unfinished tasks as failed (``runs_timed_out``), and a run whose keys are
slow to be released is reported (``runs_not_released``). Only a cluster
with no worker at all stops the sequence.

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

import logging
import statistics
import time
import uuid
from collections.abc import Mapping
from typing import Any

from daskflow.replay import hosted, metrics, probes
from daskflow.replay.cluster import (
    MODES,
    PRELOAD,
    QUIET_CLUSTER,
    mode_config,
    replay_cluster,
    wait_for_workers,
    wait_until,
    warm_graph,
)
from daskflow.replay.metrics import median_ape
from daskflow.replay.probes import ReplayWatch
from daskflow.replay.simulate import list_schedule_makespan_s, lower_bound_s
from daskflow.replay.specs import (
    OUTPUT_CAP_BYTES,
    build_specs,
    replay_task,
    warm_worker,
)
from daskflow.replay.trace import (
    Trace,
    load_trace,
    memory_pressure_bag,
    scale_time,
    scale_to_target,
    skewed_bag,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "OUTPUT_CAP_BYTES",
    "PRELOAD",
    "QUIET_CLUSTER",
    "ReplayWatch",
    "median_ape",
    "mode_config",
    "replay",
    "replay_cluster",
    "replay_on_client",
    "replay_task",
    "resolve_trace",
]

# names kept for existing imports (the concepts moved to .specs and .cluster)
_build_specs = build_specs
_warm_graph = warm_graph
_warm_worker = warm_worker

# --------------------------------------------------------------------------- traces


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


# --------------------------------------------------------------------------- replay


def _report_slow_workers(connected: int, expected: int, timeout_s: float) -> None:
    logger.warning("replay: only %d of %d workers connected after %.0f s (one slow to come back?); "
                   "replaying on the workers that are there", connected, expected, timeout_s)


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
    expected_workers: int | None = None,
    worker_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Replay ``trace`` ``repeat`` times on an existing cluster (set up for ``mode``); return the result dict.

    Before each run it waits up to ``worker_timeout_s`` for ``expected_workers``
    (None: the test bed's, or the cluster's spec); fewer is reported
    (``workers_slow_to_return``) and the run goes on with those there.

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
    expected = expected_workers if expected_workers is not None else (bed.n_workers if bed is not None else None)
    worker_info, expected = wait_for_workers(client, worker_timeout_s, expected)
    slow_workers = 0
    if len(worker_info) < expected:
        if not worker_info:
            raise TimeoutError(f"replay: no worker connected to the scheduler within {worker_timeout_s:.0f} s; "
                               "start workers (or check the cluster) and replay again")
        _report_slow_workers(len(worker_info), expected, worker_timeout_s)
        slow_workers += 1
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
    runs_timed_out = runs_not_released = 0
    for round_index in range(repeat):
        if round_index:
            connected, _ = wait_for_workers(client, worker_timeout_s, expected)
            if len(connected) < expected:  # a worker slow to come back: report it, keep going
                _report_slow_workers(len(connected), expected, worker_timeout_s)
                slow_workers += 1
        run_id = uuid.uuid4().hex
        if hosted_run is not None:
            specs, keys, categories = hosted_run.specs(run_id, memory_scale)
        else:
            specs, keys, categories = build_specs(scaled, run_id, memory_scale, bytes_scale)
        client.run_on_scheduler(probes.reset_prefix_estimates, sorted(set(categories)))
        before = client.run_on_scheduler(probes.watch_counts)
        from daskflow.daskgraph import submit_graph

        if hosted_run is not None:
            hosted_run.before_submit(client)
        start = time.perf_counter()
        futures = submit_graph(client, specs)
        try:
            done, not_done = wait(list(futures.values()), timeout=timeout_s)
        except TimeoutError:  # report it as failed tasks and keep going
            logger.warning("replay: run %s passed its timeout (%.0f s); counting its unfinished tasks as failed",
                           run_id[:8], timeout_s)
            runs_timed_out += 1
            done = {f for f in futures.values() if f.done()}
            not_done = {f for f in futures.values() if not f.done()}
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
        try:
            wait_until(lambda run_keys=keys: client.run_on_scheduler(probes.count_live_keys, run_keys) == 0, 60,
                       f"run {run_id[:8]} to be released")
        except TimeoutError as exc:  # its keys may still be released later: report it, keep going
            logger.warning("%s; going on with the next run", exc)
            runs_not_released += 1

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
    result["runs_timed_out"] = runs_timed_out
    result["runs_not_released"] = runs_not_released
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
