"""CPU per task in each daskflow hook on a real cluster (issue #10: where the plugin overhead goes).

The throughput benchmark (``steering_overhead.py``) says *how much* the
preloaded plugins cost; this one says *where*: it wraps every daskflow hook
that runs per task and sums the CPU time of the calling thread
(``time.thread_time``, so waits for the GIL and other threads' work are not
counted) while N trivial tasks run on a LocalCluster whose scheduler preloads
``scheduler_plugins.preload`` (2 worker processes x 1 thread, as the
throughput benchmark). Scheduler-side hooks are wrapped in this process (the
LocalCluster scheduler runs here); the worker-side peak-memory plugin is
wrapped inside each worker with ``Client.run``.

Numbers are CPU microseconds per task, nested hooks included in their callers
(``RecorderPlugin.transition`` contains ``capture`` and most ``_build_rows``).
``wrapper_us`` is what one wrapped call costs by itself (two ``thread_time``
reads), measured in this process: subtract ``calls_per_task x wrapper_us`` for
the hook's own cost. Diagnostic only: no assertion, not part of the suite.

    python benchmarks/plugin_hook_costs.py --tasks 5000
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

CPU: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()


def noop(i: int) -> int:
    return i


def _wrap(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name, None)
    if original is None:  # a hook an older commit does not have (the script compares commits)
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            CPU[label] += time.thread_time() - started
            CALLS[label] += 1

    setattr(owner, name, timed)


def instrument_scheduler_side() -> None:
    import scheduler_plugins.dashboard.state as dashboard_state
    from daskflow.learning import history
    from scheduler_plugins import recorder, steering, task_feedback

    for name in ("transition", "capture", "_build_rows", "make_row"):
        _wrap(recorder.RecorderPlugin, name, f"RecorderPlugin.{name}")
    for name in ("transition", "update_graph"):
        _wrap(steering.SteeringPlugin, name, f"SteeringPlugin.{name}")
    _wrap(task_feedback.TaskFeedback, "finished", "TaskFeedback.finished")
    _wrap(dashboard_state.DashboardState, "pull", "DashboardState.pull")
    _wrap(history, "append_history", "append_history (writer thread)")
    recorder.append_history = history.append_history  # the recorder imported the name


def instrument_worker(dask_worker: Any = None) -> bool:
    """Wrap this worker's peak-memory plugin (runs inside the worker process)."""
    import time as _time

    from daskflow.contracts import PEAK_MEMORY_PLUGIN

    plugin = dask_worker.plugins.get(PEAK_MEMORY_PLUGIN)
    if plugin is None:
        return False
    plugin._hook_cpu = [0.0, 0]
    original = plugin.transition

    def timed(key: Any, start: str, finish: str, **kwargs: Any) -> None:
        started = _time.thread_time()
        try:
            original(key, start, finish, **kwargs)
        finally:
            plugin._hook_cpu[0] += _time.thread_time() - started
            plugin._hook_cpu[1] += 1

    plugin.transition = timed
    return True


def collect_worker(dask_worker: Any = None) -> tuple[float, int]:
    """``(CPU seconds, calls)`` of this worker's wrapped peak-memory plugin."""
    from daskflow.contracts import PEAK_MEMORY_PLUGIN

    plugin = dask_worker.plugins.get(PEAK_MEMORY_PLUGIN)
    cpu, calls = getattr(plugin, "_hook_cpu", (0.0, 0))
    return cpu, calls


def wrapper_cost_us(n: int = 20_000) -> float:
    label = "calibration"

    class Probe:
        def call(self) -> None:
            return None

    _wrap(Probe, "call", label)
    probe = Probe()
    started = time.thread_time()
    for _ in range(n):
        probe.call()
    total = time.thread_time() - started
    CPU.pop(label, None)
    CALLS.pop(label, None)
    return total / n * 1e6


def run(n_tasks: int, parts: set[str]) -> dict[str, Any]:
    import dask
    from distributed import Client, LocalCluster, wait

    from daskflow.contracts import SCHEDULER_PRELOAD

    with tempfile.TemporaryDirectory() as home:
        settings = {"daskflow.home": home, "daskflow.history.url": f"{home}/history", "daskflow.models.url": f"{home}/models",
                    "daskflow.steering.model": f"{home}/models", "daskflow.steering.oracle": False,
                    "daskflow.steering.mode": "steer" if "steering" in parts else "off",
                    "daskflow.recorder.enabled": "recorder" in parts, "daskflow.dashboard.enabled": "dashboard" in parts}
        with dask.config.set(settings), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]},
        ) as cluster, Client(cluster) as client:  # fmt: skip
            client.wait_for_workers(2)
            warm = client.map(noop, range(500), key=[f"warm-{i}" for i in range(500)])
            wait(warm)
            del warm
            time.sleep(1.0)
            client.run(instrument_worker)
            CPU.clear()
            CALLS.clear()
            started = time.perf_counter()
            futures = client.map(noop, range(n_tasks), key=[f"measured-{i}" for i in range(n_tasks)])
            wait(futures)
            elapsed = time.perf_counter() - started
            time.sleep(2.0)  # let the dashboard tick and a flush happen inside the window
            worker = client.run(collect_worker)
            del futures
    hooks = {label: {"cpu_us_per_task": round(CPU[label] / n_tasks * 1e6, 2), "calls_per_task": round(CALLS[label] / n_tasks, 3)}
             for label in sorted(CPU, key=CPU.get, reverse=True)}
    worker_cpu = sum(cpu for cpu, _ in worker.values())
    worker_calls = sum(calls for _, calls in worker.values())
    hooks["PeakMemoryPlugin.transition (workers)"] = {"cpu_us_per_task": round(worker_cpu / n_tasks * 1e6, 2),
                                                       "calls_per_task": round(worker_calls / n_tasks, 3)}
    return {"tasks_per_s": n_tasks / elapsed, "hooks": hooks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--parts", default="recorder,steering,dashboard")
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    instrument_scheduler_side()
    calibration = wrapper_cost_us()
    result = run(args.tasks, parts)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    print(json.dumps({"benchmark": "plugin_hook_costs", "commit": commit, "tasks": args.tasks, "parts": sorted(parts),
                      "load_average": list(os.getloadavg()), "wrapper_us": round(calibration, 3), **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
