"""Timeline benchmark: backfill throughput, planning time, daemon launch rate, tick latency.

Four measurements, each in a fresh daskflow home, on one process LocalCluster
(``--workers`` x 1 thread) that every launcher connects to:

``backfill``  ``--partitions`` trivial daily partitions end to end (plan, persist,
              drive with ``--chunk`` partitions per run and at most
              ``--max-concurrent-runs`` runs at once): wall time and partitions/s.
              Checked: every partition materialized exactly once (catalog).
``planning``  planning + persisting a ``--plan-partitions`` backfill (one graph
              build, bulk inserts), chunk 1: seconds; plus how fast the run queue
              admits those rows without launching (a fake pool): rows/s.
``launches``  one sensor evaluation requests ``--daemon-runs`` runs; the daemon
              (``daskflow.timeline.max-launchers`` launcher processes) starts them:
              runs started per second, from the claim to the last run's start.
``latency``   a schedule every 2 s (cron with seconds) on an idle daemon
              (tick interval 200 ms): due time -> catalog run start, median / max
              over ``--ticks`` ticks.

Launcher processes dominate ``backfill``, ``launches`` and ``latency`` (a new
Python importing daskflow and connecting to the scheduler per run); absolute
numbers on a shared 2-core machine are noise, so the report includes the load
average before and after.

Usage::

    python benchmarks/timeline.py --json timeline.json
    python benchmarks/timeline.py --only planning
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import pathlib
import statistics
import sys
import tempfile
import textwrap
import threading
import time

PIPELINE = textwrap.dedent('''
    import daskflow
    from daskflow.partitions import DailyPartitions

    @daskflow.asset(partitions=DailyPartitions("2000-01-01", "2030-12-31"))
    def day(context):
        return [{"day": context.partition}]

    @daskflow.asset
    def trivial():
        return [1]
''')


@contextlib.contextmanager
def fresh_home(root: pathlib.Path, name: str):
    import dask.config

    home = root / name
    home.mkdir()
    (home / "pipeline.py").write_text(PIPELINE)
    with dask.config.set({"daskflow.home": str(home)}):
        old = os.environ.get("DASKFLOW_HOME")
        os.environ["DASKFLOW_HOME"] = str(home)  # launcher processes
        try:
            yield home
        finally:
            if old is None:
                os.environ.pop("DASKFLOW_HOME", None)
            else:
                os.environ["DASKFLOW_HOME"] = old


def bench_backfill(root, address, partitions: int, chunk: int, limit: int) -> dict:
    from daskflow.catalog import Catalog
    from daskflow.partitions import DailyPartitions
    from daskflow.timeline.backfill import Backfills, plan_backfill
    from daskflow.timeline.backfill_driver import drive_backfill
    from daskflow.timeline.store import TimelineStore

    with fresh_home(root, "backfill") as home:
        keys = DailyPartitions("2000-01-01", "2030-12-31").keys()
        selection = f"{keys[0]}...{keys[partitions - 1]}"
        started = time.perf_counter()
        plan = plan_backfill(str(home / "pipeline.py"), selection, selection="day", chunk_size=chunk)
        backfill_id = Backfills(TimelineStore(home / "catalog.sqlite")).create(plan, limit)
        planned = time.perf_counter()
        status = drive_backfill(backfill_id, str(home / "catalog.sqlite"), address=address)
        wall_s = time.perf_counter() - started
        materialized = [m.partition for m in Catalog(home / "catalog.sqlite").materializations(asset_key="day")]
        return {"partitions": partitions, "chunk": chunk, "max_concurrent_runs": limit, "runs": len(plan.chunks),
                "plan_s": planned - started, "wall_s": wall_s, "partitions_per_s": partitions / wall_s,
                "done": status["done"], "failed": status["failed"],
                "exactly_once": sorted(materialized) == list(plan.partitions)}


def bench_planning(root, partitions: int) -> dict:
    from daskflow.partitions import DailyPartitions
    from daskflow.timeline.backfill import Backfills, plan_backfill
    from daskflow.timeline.queue import QueueRunner, RunLimits
    from daskflow.timeline.store import TimelineStore

    class CountingPool:
        def __init__(self):
            self.in_flight: dict = {}
            self.started = 0

        def free_slots(self):
            return 500

        def start(self, launch):
            self.started += 1

        def reap(self):
            return []

    with fresh_home(root, "planning") as home:
        keys = DailyPartitions("2000-01-01", "2030-12-31").keys()
        started = time.perf_counter()
        plan = plan_backfill(str(home / "pipeline.py"), f"{keys[0]}...{keys[partitions - 1]}", selection="day")
        planned = time.perf_counter()
        store = TimelineStore(home / "catalog.sqlite")
        Backfills(store).create(plan, max_concurrent_runs=partitions)
        persisted = time.perf_counter()
        pool = CountingPool()
        runner = QueueRunner(store, pool, RunLimits())
        while pool.started < partitions:
            runner.step()
        admitted = time.perf_counter()
        return {"partitions": partitions, "plan_s": planned - started, "persist_s": persisted - planned,
                "total_s": persisted - started, "admitted_rows_per_s": partitions / (admitted - persisted)}


def _daemon(home, address, pipeline_text: str, **settings):
    import dask.config

    from daskflow.timeline.daemon import run_daemon

    (home / "timed.py").write_text(pipeline_text)
    stop = threading.Event()
    config = {"daskflow.timeline.tick-interval": "200ms", **settings}

    def loop():
        with dask.config.set(config):
            run_daemon([str(home / "timed.py")], address=address, stop_event=stop)

    thread = threading.Thread(target=loop, name="daskflow-daemon", daemon=True)
    thread.start()
    return stop, thread


def _wait(condition, timeout_s: float, thread: threading.Thread | None = None):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        if thread is not None and not thread.is_alive():
            raise RuntimeError("the daemon thread stopped before the benchmark condition was reached")
        time.sleep(0.1)


def bench_launches(root, address, n_runs: int) -> dict:
    from daskflow.catalog import Catalog
    from daskflow.timeline.store import TimelineStore

    text = textwrap.dedent(f'''
        import daskflow

        @daskflow.asset
        def trivial():
            return [1]

        @daskflow.sensor(target="trivial", minimum_interval_s=3600)
        def burst(context):
            return [daskflow.RunRequest(run_key=f"r{{i}}") for i in range({n_runs})]
    ''')
    with fresh_home(root, "launches") as home:
        stop, thread = _daemon(home, address, text)
        try:
            catalog = Catalog(home / "catalog.sqlite")
            _wait(lambda: (home / "catalog.sqlite").exists() and len(catalog.runs(limit=None)) >= n_runs, 600,
                  thread)
            claims = TimelineStore(home / "catalog.sqlite").launches(trigger="sensor")
            runs = catalog.runs(limit=None)
            first_claim = min(c.claimed_at for c in claims)
            last_start = max(r.started_at for r in runs)
            _wait(lambda: all(r.finished_at for r in catalog.runs(limit=None)), 600, thread)
        finally:
            stop.set()
            thread.join(60)
        import dask.config

        return {"runs": n_runs, "max_launchers": int(dask.config.get("daskflow.timeline.max-launchers")),
                "claim_to_last_start_s": last_start - first_claim,
                "runs_started_per_s": n_runs / (last_start - first_claim),
                "all_succeeded": all(r.status == "success" for r in catalog.runs(limit=None))}


def bench_latency(root, address, ticks: int) -> dict:
    from daskflow.catalog import Catalog

    text = textwrap.dedent('''
        import daskflow

        @daskflow.asset
        def trivial():
            return [1]

        every_2s = daskflow.schedule("* * * * * */2", target="trivial", name="every_2s", catchup="skip")
    ''')
    with fresh_home(root, "latency") as home:
        stop, thread = _daemon(home, address, text)
        try:
            catalog = Catalog(home / "catalog.sqlite")
            _wait(lambda: (home / "catalog.sqlite").exists() and len(
                [r for r in catalog.runs(limit=None) if r.finished_at]) >= ticks, 600, thread)
        finally:
            stop.set()
            thread.join(60)
        runs = sorted(catalog.runs(limit=None), key=lambda r: r.started_at)[:ticks]
        latencies = [r.started_at - dt.datetime.fromisoformat(r.tags["tick_time"]).timestamp() for r in runs]
        return {"ticks": len(latencies), "median_s": statistics.median(latencies), "max_s": max(latencies),
                "min_s": min(latencies), "tick_interval_s": 0.2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--max-concurrent-runs", type=int, default=2)
    parser.add_argument("--plan-partitions", type=int, default=10000)
    parser.add_argument("--daemon-runs", type=int, default=40)
    parser.add_argument("--ticks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("backfill", "planning", "launches", "latency"), action="append")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    wanted = set(args.only or ("backfill", "planning", "launches", "latency"))
    report: dict = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="daskflow-timeline-bench-") as tmp:
        root = pathlib.Path(tmp)
        if "planning" in wanted:
            report["planning"] = bench_planning(root, args.plan_partitions)
            print(json.dumps({"planning": report["planning"]}), flush=True)
        if wanted - {"planning"}:
            from distributed import LocalCluster

            with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                              dashboard_address=":0", host="127.0.0.1", scheduler_port=0) as cluster:
                address = cluster.scheduler_address
                if "backfill" in wanted:
                    report["backfill"] = bench_backfill(root, address, args.partitions, args.chunk,
                                                        args.max_concurrent_runs)
                    print(json.dumps({"backfill": report["backfill"]}), flush=True)
                if "launches" in wanted:
                    report["launches"] = bench_launches(root, address, args.daemon_runs)
                    print(json.dumps({"launches": report["launches"]}), flush=True)
                if "latency" in wanted:
                    report["latency"] = bench_latency(root, address, args.ticks)
                    print(json.dumps({"latency": report["latency"]}), flush=True)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
