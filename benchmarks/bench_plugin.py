"""asv: scheduler plugin overhead — throughput on 20k trivial tasks, stock vs off/shadow/steer.

Why it matters: the recorder and the steering plugin run inside the scheduler's
event loop on every task. On short tasks they must cost next to nothing, or
steering loses on the graphs it cannot improve. The claim is a *ratio* measured
in one run on one machine: wall time to finish the same 20k trivial tasks with
the plugins, divided by stock Dask's.

Modes: ``stock`` — plain ``LocalCluster``, no preload; ``off`` — daskflow's
preload with steering off (recorder + dashboard pages only); ``shadow`` —
steering predicts and logs what it would do; ``steer`` — steering holds,
orders and places every task. The model is a real XGBoost model trained on
synthetic history whose categories the tasks use, so prediction is exercised.

All four are measured back to back in ``setup_cache`` (one cluster per mode:
2 worker processes × 1 thread, the embedded default; in a child process, see
:func:`benchmarks.run_in_subprocess`); the ``track_`` methods report from those
measurements. Set ``DASKFLOW_BENCH_PLUGIN_TASKS`` to use fewer
tasks on a slow or busy machine (the ratio, not the count, is the claim).
"""

from __future__ import annotations

import logging
import os
import time

from benchmarks import IsolatedHome, require, run_in_subprocess

MODES = ("stock", "off", "shadow", "steer")
N_CATEGORIES = 25  # same category names as the synthetic model (bench_prediction)


def n_tasks() -> int:
    """Task count: 20k, or ``$DASKFLOW_BENCH_PLUGIN_TASKS``."""
    return int(os.environ.get("DASKFLOW_BENCH_PLUGIN_TASKS", 20_000))


def trivial_task() -> int:
    """The task body: nothing."""
    return 1


def trivial_task_specs(count: int, run_id: str) -> list:
    """``count`` independent trivial tasks with daskflow annotations (as execution/replay send them)."""
    daskgraph = require("daskflow.daskgraph", "TaskSpec", "build_graph")
    specs = []
    for i in range(count):
        category = f"cat{i % N_CATEGORIES:02d}"
        specs.append(daskgraph.TaskSpec(
            key=f"{category}-{run_id}-{i}", func=trivial_task,
            annotations={"run_id": run_id, "kind": "asset", "category": category, "asset": category,
                         "partition": None, "input_bytes": 1000 * (i % 100), "input_rows": i % 100,
                         "n_inputs": 0, "input_locations": [], "tags": {}},
        ))
    return specs


def measure_mode(mode: str, count: int, model_dir: str) -> dict:
    """Seconds for one cluster in ``mode`` to run ``count`` trivial tasks (graph built beforehand)."""
    import dask.config
    from distributed import Client, LocalCluster, wait

    daskgraph = require("daskflow.daskgraph", "build_graph")
    specs = trivial_task_specs(count, run_id=f"{mode}{os.getpid()}")
    graph = daskgraph.build_graph(specs)
    keys = [spec.key for spec in specs]
    preload = [] if mode == "stock" else ["scheduler_plugins.preload"]
    settings = {"daskflow.steering.mode": "off" if mode == "stock" else mode, "daskflow.steering.model": model_dir}
    with dask.config.set(settings), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.CRITICAL, scheduler_kwargs={"preload": preload}) as cluster, \
            Client(cluster) as client:
        client.submit(trivial_task, pure=False).result()  # workers up and warm
        start = time.perf_counter()
        futures = client.get(graph, keys, sync=False)
        wait(futures)
        elapsed = time.perf_counter() - start
        errors = sum(f.status != "finished" for f in futures)
        plugins = cluster.scheduler.plugins
        steering = plugins.get("daskflow-steering")
        result = {"seconds": elapsed, "tasks": count, "errors": errors,
                  "recorder": "daskflow-recorder" in plugins, "steering": steering is not None,
                  "fallbacks": getattr(steering, "fallback_count", 0),
                  "model_version": getattr(steering, "model_version", None)}
        del futures
    if errors:
        raise RuntimeError(f"{errors} of {count} trivial tasks failed in mode {mode}")
    expected_steering = mode in ("shadow", "steer")
    if mode != "stock" and (not result["recorder"] or result["steering"] != expected_steering):
        raise RuntimeError(f"mode {mode}: plugins not installed as expected: {result}")
    return result


def measure_all_modes(count: int) -> dict:
    """Train the synthetic model, then time every mode back to back (runs in a subprocess)."""
    from benchmarks.bench_prediction import train_synthetic_model

    home = IsolatedHome()
    try:
        model_dir = train_synthetic_model(str(home.path / "models"), n_rows=2_000)
        return {mode: measure_mode(mode, count, model_dir) for mode in MODES}
    finally:
        home.close()


class PluginThroughput:
    """Wall time for 20k trivial tasks with daskflow's scheduler plugins, relative to stock Dask."""

    params = [list(MODES)]
    param_names = ["mode"]
    timeout = 900
    number = 1
    repeat = 1

    def setup_cache(self) -> dict:
        """Measure stock, off, shadow and steer back to back; the tracks read these numbers."""
        require("scheduler_plugins.steering", "SteeringPlugin")
        require("scheduler_plugins.recorder", "RecorderPlugin")
        require("daskflow.learning.training", "train_models")
        return run_in_subprocess("benchmarks.bench_plugin", "measure_all_modes", timeout_s=self.timeout - 30,
                                 count=n_tasks())

    def track_time_ratio_to_stock(self, measured: dict, mode: str) -> float:
        """Wall time with the plugins in ``mode`` ÷ stock Dask's, same tasks, same run (1.0 = free; stock: 1 by definition)."""
        return measured[mode]["seconds"] / measured["stock"]["seconds"]

    track_time_ratio_to_stock.unit = "ratio"

    def track_tasks_per_s(self, measured: dict, mode: str) -> float:
        """Throughput in ``mode`` (tasks/s; absolute, so only comparable within one machine)."""
        return measured[mode]["tasks"] / measured[mode]["seconds"]

    track_tasks_per_s.unit = "tasks/s"

    def track_steering_fallbacks(self, measured: dict, mode: str) -> int:
        """Batches where steering fell back to stock behaviour (should be 0)."""
        return int(measured[mode]["fallbacks"])

    track_steering_fallbacks.unit = "batches"
