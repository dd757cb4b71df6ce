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
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds for daskflow model train")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on a run after this many seconds")
    parser.add_argument("--out", default=None, help="write the JSON here too")
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
                with replay_cluster(mode, workers=args.workers, threads_per_worker=args.threads_per_worker,
                                    memory_limit=args.memory_limit, history_url=str(pathlib.Path(tmp) / f"history-{mode}"),
                                    model_url=str(models) if mode == "steer" else None) as client:
                    before = client.run_on_scheduler(_watch_counts)
                    try:
                        result = replay_on_client(client, trace, mode, time_scale=time_scale, memory_scale=args.memory_scale,
                                                  timeout_s=args.timeout)
                    except TimeoutError:  # the run did not finish: report it as such, with the worker losses
                        after = client.run_on_scheduler(_watch_counts)
                        result = {"mode": mode, "trace": trace, "timed_out": True, "makespan_s": None,
                                  "makespan_over_lower_bound": None, "failed_tasks": args.tasks,
                                  "workers_lost": after["workers_removed"] - before["workers_removed"],
                                  "worker_pauses": after["worker_pauses"] - before["worker_pauses"]}
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
