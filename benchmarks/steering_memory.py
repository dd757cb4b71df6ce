"""Memory pressure: independent tasks of which a quarter peak at 1–1.4 GB, stock Dask vs steering.

1. *Train* — replay another seed of the same generated bag
   (``memory-pressure:<train-seed>:<N>``) in ``record`` mode on roomy workers
   (one thread, 4 GB) into a fresh history, then ``daskflow model train``.
2. *Compare* — replay ``memory-pressure:<seed>:<N>`` with its true runtimes and
   peaks (``time_scale=1``, ``memory_scale=1``) on 4 workers × 2 threads with a
   2 GB memory limit each, modes alternated (default ``stock,steer,oracle``),
   ``--repeat`` rounds, a fresh cluster per run.

Prints one JSON object (every run: makespan, workers lost, pauses, failed
tasks; medians per mode; steer/stock ratio) and writes it to ``--out``.

    python benchmarks/steering_memory.py --tasks 64 --repeat 1

The same procedure serves the skewed bag (lognormal durations that grow with
the declared input size; train on another seed, 8 workers × 1 thread, scaled
so the lower bound is 8 s)::

    python benchmarks/steering_memory.py --bag skewed-bag --tasks 240 --workers 8 \
        --threads-per-worker 1 --memory-limit auto --target-seconds 8 --memory-scale 0.1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
from typing import Any


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip() or None
    except OSError:
        return None


def memory_lower_bound_s(trace, workers: int, threads_per_worker: int, usable_bytes_per_worker: float) -> dict[str, float]:
    """The issue's lower bound and two memory terms beside it (seconds; pure, from the trace's true costs).

    * ``issue`` — :func:`~daskflow.replay.simulate.lower_bound_s`: ``max(critical path, work / slots)``;
      it ignores memory.
    * ``memory_area`` — ``sum(peak x duration) / (workers x usable memory)``: the cluster cannot hold more
      byte-seconds than that per second.
    * ``exclusive`` — tasks whose peak passes half the usable memory cannot share a worker with each other:
      ``sum(their durations) / workers``.
    * ``memory_aware`` — the largest of the three.

    >>> from daskflow.replay.trace import trace_from_dict
    >>> t = trace_from_dict({"name": "t", "tasks": [
    ...     {"id": f"h{i}", "category": "h", "runtime_s": 2.0, "memory_bytes": 700, "parents": []} for i in range(4)]})
    >>> bound = memory_lower_bound_s(t, workers=1, threads_per_worker=4, usable_bytes_per_worker=1000)
    >>> bound["issue"], bound["memory_area"], bound["exclusive"], bound["memory_aware"]
    (2.0, 5.6, 8.0, 8.0)
    """
    from daskflow.replay.simulate import lower_bound_s

    issue = lower_bound_s(trace, workers * threads_per_worker)
    usable = max(float(usable_bytes_per_worker), 1.0)
    area = sum(float(t.memory_bytes or 0) * t.runtime_s for t in trace.tasks) / (workers * usable)
    exclusive = sum(t.runtime_s for t in trace.tasks if (t.memory_bytes or 0) > usable / 2) / workers
    return {"issue": issue, "memory_area": area, "exclusive": exclusive, "memory_aware": max(issue, area, exclusive)}


def random_order_list_s(trace, slots: int, samples: int = 500, seed: int = 0) -> float:
    """Median makespan of greedy list schedules of independent tasks in random order (no overhead, no memory).

    What a scheduler that cannot tell long tasks from short ones can expect:
    the tail is whatever task happens to start last. The bag's durations are
    drawn independently of its features, so no model predicts them (the
    sibling models' duration error equals the per-category mean's).

    >>> from daskflow.replay.trace import trace_from_dict
    >>> same = trace_from_dict({"name": "t", "tasks": [
    ...     {"id": f"t{i}", "category": "c", "runtime_s": 1.0, "parents": []} for i in range(8)]})
    >>> random_order_list_s(same, slots=4)
    2.0
    """
    import heapq
    import random

    if any(task.parents for task in trace.tasks):
        raise ValueError("random_order_list_s: independent tasks only (a bag)")
    durations = [task.runtime_s for task in trace.tasks]
    rng = random.Random(seed)
    makespans = []
    for _ in range(max(samples, 1)):
        order = rng.sample(durations, len(durations))
        free = [0.0] * max(slots, 1)
        for duration in order:
            heapq.heappush(free, heapq.heappop(free) + duration)
        makespans.append(max(free))
    return float(statistics.median(makespans))


class _TaskStream:
    """Distributed's task stream around one run (diagnostics): per task its worker and start / stop times."""

    def __init__(self, client) -> None:
        from distributed import get_task_stream

        self._stream = get_task_stream(client)
        self.records: list[dict[str, Any]] = []

    def __enter__(self) -> "_TaskStream":
        self._stream.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._stream.__exit__(*exc)
            self.records = list(self._stream.data)
        except Exception:  # noqa: BLE001 - diagnostics only
            self.records = []


def _bounds(trace, time_scale: float, args) -> dict[str, Any]:
    """:func:`memory_lower_bound_s` of the run's trace, usable memory = the pause threshold of a worker."""
    import dask
    from dask.utils import parse_bytes

    from daskflow.replay.trace import scale_time

    if args.memory_limit == "auto" or args.memory_scale != 1.0:
        return {}
    pause = float(dask.config.get("distributed.worker.memory.pause") or 1.0)
    usable = pause * parse_bytes(args.memory_limit)
    bounds: dict[str, Any] = memory_lower_bound_s(scale_time(trace, time_scale) if time_scale != 1.0 else trace,
                                                  args.workers, args.threads_per_worker, usable)
    bounds["usable_bytes_per_worker"] = usable
    if not any(task.parents for task in trace.tasks):
        bounds["random_order_list_s"] = random_order_list_s(scale_time(trace, time_scale) if time_scale != 1.0 else trace,
                                                            args.workers * args.threads_per_worker)
    return bounds


def _start_memory_sampler(dask_scheduler=None, every_s: float = 0.1) -> bool:
    """On the scheduler: every ``every_s`` note each worker's heartbeat memory and the steering baseline (diagnostics)."""
    import time as _time

    from tornado.ioloop import PeriodicCallback

    samples: list[list[Any]] = []
    plugin = dask_scheduler.plugins.get("daskflow-steering")
    state = getattr(plugin, "state", None)

    def sample() -> None:
        now = _time.time()
        for address, ws in dask_scheduler.workers.items():
            baseline = None
            if state is not None:
                baseline = state.memory_baseline.bytes_for(address, state.unmanaged_floor.get(address))
            samples.append([round(now, 3), address, str(ws.status), int(ws.memory.process or 0), int(ws.nbytes),
                            len(ws.processing), baseline, round(float(getattr(ws, "last_seen", 0.0) or 0.0), 3)])

    callback = PeriodicCallback(sample, every_s * 1000)
    callback.start()
    dask_scheduler._daskflow_memory_samples = (callback, samples)
    return True


def _stop_memory_sampler(dask_scheduler=None) -> list[list[Any]]:
    callback, samples = getattr(dask_scheduler, "_daskflow_memory_samples", (None, []))
    if callback is not None:
        callback.stop()
    return samples


def _dump_events(client, stream, path: pathlib.Path) -> None:
    """The run's decision events (topic ``daskflow-steering``; a fresh cluster per run) and task stream, as JSON."""
    from daskflow.contracts import STEERING_TOPIC

    try:
        events = [m for _, m in client.get_events(STEERING_TOPIC)]
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        events = [{"error": f"{type(exc).__name__}: {exc}"[:500]}]
    try:
        memory = client.run_on_scheduler(_stop_memory_sampler)
    except Exception:  # noqa: BLE001 - diagnostics only
        memory = []
    tasks = []
    for record in getattr(stream, "records", []):
        for ss in record.get("startstops", ()):
            if ss.get("action") == "compute":
                tasks.append({"key": str(record.get("key")), "worker": record.get("worker"),
                              "start": ss.get("start"), "stop": ss.get("stop")})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"events": events, "tasks": tasks, "memory": memory}, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", default="memory-pressure", choices=["memory-pressure", "skewed-bag"])
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--memory-scale", type=float, default=1.0, help="tasks hold memory_bytes x this")
    parser.add_argument("--target-seconds", type=float, default=None,
                        help="scale runtimes so the lower bound is this (default: true runtimes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--modes", default="stock,steer,oracle")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stock-repeat", type=int, default=None,
                        help="run stock only in the first N rounds (default: every round; stock runs are the long ones)")
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds for daskflow model train")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on a run after this many seconds")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--events", default=None, metavar="DIR",
                        help="write each steered run's decision events and task stream to DIR/<mode>-r<round>.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # run as a script from anywhere
    from benchmarks.replay_all import train_model
    from daskflow.replay.harness import replay_cluster, replay_on_client
    from daskflow.replay.probes import watch_counts as _watch_counts

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    from daskflow.replay.harness import resolve_trace
    from daskflow.replay.simulate import lower_bound_s

    trace = f"{args.bag}:{args.seed}:{args.tasks}"
    train_trace = f"{args.bag}:{args.train_seed}:{args.tasks}"
    slots = args.workers * args.threads_per_worker
    time_scale = args.target_seconds / lower_bound_s(resolve_trace(trace), slots) if args.target_seconds else 1.0
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="daskflow-memory-bench-") as tmp:
        history = pathlib.Path(tmp) / "history"
        models = pathlib.Path(tmp) / "models"
        manifest: dict[str, Any] = {}
        if "steer" in modes:
            print(f"recording {train_trace} for training", file=sys.stderr, flush=True)
            with replay_cluster("record", workers=args.workers, threads_per_worker=1, memory_limit="4GB",
                                history_url=str(history)) as client:
                replay_on_client(client, train_trace, "record", time_scale=time_scale, memory_scale=args.memory_scale, history_url=str(history),
                                 timeout_s=args.timeout)
            manifest = train_model(history, models, args.rounds)
            print(f"model: {manifest.get('model_version') or manifest.get('error')}", file=sys.stderr, flush=True)
        for round_index in range(args.repeat):
            for mode in modes:
                if mode == "stock" and args.stock_repeat is not None and round_index >= args.stock_repeat:
                    continue
                with replay_cluster(mode, workers=args.workers, threads_per_worker=args.threads_per_worker,
                                    memory_limit=args.memory_limit, history_url=str(pathlib.Path(tmp) / f"history-{mode}"),
                                    model_url=str(models) if mode == "steer" else None) as client:
                    before = client.run_on_scheduler(_watch_counts)
                    stream = _TaskStream(client) if args.events else contextlib.nullcontext()
                    if args.events:
                        client.run_on_scheduler(_start_memory_sampler)
                    try:
                        with stream:
                            result = replay_on_client(client, trace, mode, time_scale=time_scale,
                                                      memory_scale=args.memory_scale, timeout_s=args.timeout)
                    except TimeoutError:  # the run did not finish: report it as such, with the worker losses
                        after = client.run_on_scheduler(_watch_counts)
                        result = {"mode": mode, "trace": trace, "timed_out": True, "makespan_s": None,
                                  "makespan_over_lower_bound": None, "failed_tasks": args.tasks,
                                  "workers_lost": after["workers_removed"] - before["workers_removed"],
                                  "worker_pauses": after["worker_pauses"] - before["worker_pauses"]}
                    finally:
                        if args.events:
                            _dump_events(client, stream, pathlib.Path(args.events) / f"seed{args.seed}-{mode}-r{round_index}.json")
                result["round"] = round_index
                runs.append(result)
                print(f"round {round_index} {mode}: makespan {result['makespan_s']} s, workers lost "
                      f"{result['workers_lost']}, pauses {result['worker_pauses']}, failed tasks {result['failed_tasks']}",
                      file=sys.stderr, flush=True)

    def median(mode: str, field: str) -> float | None:
        values = [r[field] for r in runs if r["mode"] == mode and r.get(field) is not None]
        return statistics.median(values) if values else None

    summary = {
        mode: {
            "makespan_s": median(mode, "makespan_s"),
            "makespan_over_lower_bound": median(mode, "makespan_over_lower_bound"),
            "workers_lost": sum(r["workers_lost"] for r in runs if r["mode"] == mode),
            "worker_pauses": sum(r["worker_pauses"] for r in runs if r["mode"] == mode),
            "failed_tasks": sum(r["failed_tasks"] for r in runs if r["mode"] == mode),
            "timed_out_runs": sum(1 for r in runs if r["mode"] == mode and r.get("timed_out")),
        }
        for mode in modes
    }
    out = {
        "benchmark": f"steering_memory:{args.bag}",
        "time_scale": time_scale,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "trace": trace,
        "workers": args.workers,
        "threads_per_worker": args.threads_per_worker,
        "memory_limit": args.memory_limit,
        "lower_bounds": _bounds(resolve_trace(trace), time_scale, args),
        "model": {k: manifest.get(k) for k in ("model_version", "metrics", "error") if k in manifest},
        "summary": summary,
        "steer_over_stock": (summary["steer"]["makespan_s"] / summary["stock"]["makespan_s"])
        if "steer" in summary and "stock" in summary and summary["stock"]["makespan_s"] else None,
        "runs": runs,
    }
    text = json.dumps(out, default=str)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
