"""Plugin overhead: scheduler throughput on N trivial tasks, stock vs SteeringPlugin in ``steer`` mode without a model.

One LocalCluster (worker processes); the rounds alternate stock (no plugin)
and steer (``SteeringPlugin`` registered with ``Client.register_plugin``,
model directory empty so every prediction is the default / running mean),
unregistering the plugin between rounds, so both modes see the same cluster
and the same machine load. The order flips every round (ABBA: on a shared
machine the first run of a pair tends to be faster) and every round starts on
an idle scheduler. Prints one JSON object: tasks/s per round, the
median of each mode and the ratio steer / stock (>= 0.95 is the target).

With ``--preload`` the steer side is what ``daskflow run`` gets: a second
LocalCluster whose scheduler preloads ``scheduler_plugins.preload`` (recorder,
steering in ``steer`` mode, dashboard pages), kept for all rounds; both
clusters are alive for the whole run and the rounds alternate between them.

    python benchmarks/steering_overhead.py --tasks 20000 --workers 2 --rounds 3
    python benchmarks/steering_overhead.py --tasks 20000 --workers 2 --rounds 3 --preload
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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
    from daskflow.contracts import STEERING_PLUGIN

    plugin = dask_scheduler.plugins.get(STEERING_PLUGIN)
    return plugin.summary() if plugin is not None else None


def _installed_plugins(dask_scheduler=None) -> list[str]:
    return sorted(dask_scheduler.plugins)


def _cluster(args, preload: list[str]):
    from distributed import LocalCluster

    return LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker, processes=True,
                        dashboard_address=":0", scheduler_kwargs={"preload": preload})  # both sides: Bokeh dashboard on


def run_preloaded(args) -> tuple[dict[str, list[float]], list, list[str]]:
    """Stock vs every daskflow scheduler plugin preloaded: a fresh cluster per round, rounds alternated (ABBA).

    A fresh cluster per round keeps the two sides independent (two live
    schedulers in one process would share one event loop thread); each round
    warms its cluster up with 500 tasks first, so the preloaded steering plugin
    has observed the category and the measured graph is ordered by it.
    """
    import dask
    from distributed import Client

    from daskflow.contracts import SCHEDULER_PRELOAD

    results: dict[str, list[float]] = {"stock": [], "steer": []}
    summaries = []
    plugins: list[str] = []
    with tempfile.TemporaryDirectory() as home:
        settings = {"daskflow.home": home, "daskflow.history.url": f"{home}/history", "daskflow.models.url": f"{home}/models",
                    "daskflow.steering.model": f"{home}/models", "daskflow.steering.oracle": False,
                    "daskflow.steering.mode": "steer" if "steering" in args.parts else "off",
                    "daskflow.recorder.enabled": "recorder" in args.parts,
                    "daskflow.dashboard.enabled": "dashboard" in args.parts}
        with dask.config.set(settings):
            for round_index in range(args.rounds):
                steer_first = args.steer_first ^ (round_index % 2 == 1)
                for mode in (("steer", "stock") if steer_first else ("stock", "steer")):
                    preload = [SCHEDULER_PRELOAD] if mode == "steer" else []
                    with _cluster(args, preload) as cluster, Client(cluster) as client:
                        client.wait_for_workers(args.workers)
                        run_once(client, 500, f"warmup{mode}{round_index}")
                        rate = run_once(client, args.tasks, f"{mode}{round_index}")
                        if mode == "steer":
                            summaries.append(client.run_on_scheduler(_plugin_summary))
                            plugins = client.run_on_scheduler(_installed_plugins)
                    results[mode].append(rate)
                    print(f"round {round_index} {mode}: {rate:.0f} tasks/s", file=sys.stderr, flush=True)
    return results, summaries, plugins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (alternated)")
    parser.add_argument("--steer-first", action="store_true", help="start with steer (the order flips every round: ABBA)")
    parser.add_argument("--preload", action="store_true",
                        help="steer side: a cluster preloading scheduler_plugins.preload (recorder + steering + dashboard)")
    parser.add_argument("--parts", default="recorder,steering,dashboard",
                        help="with --preload: the preloaded parts that are enabled (comma-separated; to measure each part's cost)")
    args = parser.parse_args(argv)
    args.parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    unknown = args.parts - {"recorder", "steering", "dashboard"}
    if unknown:
        parser.error(f"--parts: unknown part(s) {sorted(unknown)}; choose from recorder, steering, dashboard")
    if args.preload:
        results, summaries, plugins = run_preloaded(args)
        return report(args, results, summaries, plugins)

    import dask
    from distributed import Client, LocalCluster

    from daskflow.contracts import STEERING_PLUGIN
    from scheduler_plugins.steering import SteeringPlugin

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
                        client.register_plugin(SteeringPlugin(), name=STEERING_PLUGIN)
                    rate = run_once(client, args.tasks, f"{mode}{round_index}")
                    if mode == "steer":
                        summaries.append(client.run_on_scheduler(_plugin_summary))
                        client.unregister_scheduler_plugin(STEERING_PLUGIN)
                    results[mode].append(rate)
                    print(f"round {round_index} {mode}: {rate:.0f} tasks/s", file=sys.stderr, flush=True)
    return report(args, results, summaries, [STEERING_PLUGIN])


def report(args, results: dict[str, list[float]], summaries: list, plugins: list[str]) -> int:
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
        "preload": bool(args.preload),
        "steer_side_plugins": plugins,
        "enabled_parts": sorted(args.parts) if args.preload else ["steering"],
        "load_average": list(os.getloadavg()),
        "tasks_per_s": results,
        "stock_median_tasks_per_s": stock,
        "steer_median_tasks_per_s": steer,
        "ratio_steer_over_stock": steer / stock,
        # rounds are paired (one stock and one steer run back to back): the per-pair ratios and their
        # geometric mean are less sensitive to the machine's load drifting between rounds than the medians
        "paired_ratios": [round(b / a, 4) for a, b in zip(results["stock"], results["steer"])],
        "paired_ratio_geomean": statistics.geometric_mean(b / a for a, b in zip(results["stock"], results["steer"])),
        "plugin_summaries": summaries,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
