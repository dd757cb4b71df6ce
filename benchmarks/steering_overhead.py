"""Plugin overhead: scheduler throughput on N trivial tasks, stock vs SteeringPlugin in ``steer`` mode without a model.

One LocalCluster (worker processes); the rounds alternate stock (no plugin)
and steer (``SteeringPlugin`` registered with ``Client.register_plugin``,
model directory empty so every prediction is the default / running mean),
unregistering the plugin between rounds, so both modes see the same cluster
and the same machine load. The order flips every round (ABBA: on a shared
machine the first run of a pair tends to be faster) and every round starts on
an idle scheduler. Prints one JSON object: tasks/s per round, the
median of each mode and the ratio steer / stock (>= 0.90 is the target).

    python benchmarks/steering_overhead.py --tasks 20000 --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time


def noop(i: int) -> int:
    return i


def run_once(client, n_tasks: int, tag: str) -> float:
    """Tasks per second for ``n_tasks`` independent trivial tasks."""
    from distributed import wait

    start = time.perf_counter()
    futures = client.map(noop, range(n_tasks), key=[f"noop-{tag}-{i}" for i in range(n_tasks)])
    wait(futures)
    elapsed = time.perf_counter() - start
    failed = sum(1 for f in futures if f.status != "finished")
    if failed:
        raise RuntimeError(f"{failed} of {n_tasks} tasks did not finish in round {tag}")
    client.cancel(futures)
    del futures
    deadline = time.monotonic() + 60
    while client.run_on_scheduler(_n_tasks) and time.monotonic() < deadline:
        time.sleep(0.1)  # start the next round on an idle scheduler
    return n_tasks / elapsed


def _n_tasks(dask_scheduler=None) -> int:
    return len(dask_scheduler.tasks)


def _plugin_summary(dask_scheduler=None) -> dict | None:
    plugin = dask_scheduler.plugins.get("daskflow-steering")
    return plugin.summary() if plugin is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (alternated)")
    parser.add_argument("--steer-first", action="store_true", help="start with steer (the order flips every round: ABBA)")
    args = parser.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    from scheduler_plugins.steering import PLUGIN_NAME, SteeringPlugin

    results: dict[str, list[float]] = {"stock": [], "steer": []}
    summaries = []
    with tempfile.TemporaryDirectory() as empty_models, dask.config.set(
        {"daskflow.steering.model": empty_models, "daskflow.steering.oracle": False, "daskflow.steering.mode": "steer"}
    ):
        with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.wait_for_workers(args.workers)
            run_once(client, 500, "warmup")
            for round_index in range(args.rounds):
                steer_first = args.steer_first ^ (round_index % 2 == 1)
                for mode in (("steer", "stock") if steer_first else ("stock", "steer")):
                    if mode == "steer":
                        client.register_plugin(SteeringPlugin(), name=PLUGIN_NAME)
                    rate = run_once(client, args.tasks, f"{mode}{round_index}")
                    if mode == "steer":
                        summaries.append(client.run_on_scheduler(_plugin_summary))
                        client.unregister_scheduler_plugin(PLUGIN_NAME)
                    results[mode].append(rate)
                    print(f"round {round_index} {mode}: {rate:.0f} tasks/s", file=sys.stderr, flush=True)
    stock = statistics.median(results["stock"])
    steer = statistics.median(results["steer"])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = None
    print(json.dumps({
        "benchmark": "steering_overhead",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "tasks": args.tasks,
        "workers": args.workers,
        "threads_per_worker": args.threads_per_worker,
        "tasks_per_s": results,
        "stock_median_tasks_per_s": stock,
        "steer_median_tasks_per_s": steer,
        "ratio_steer_over_stock": steer / stock,
        "plugin_summaries": summaries,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
