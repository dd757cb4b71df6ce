"""Replay every workload trace under stock Dask, steering and the oracle, alternated in one run.

For each trace T (default: every ``*.json`` in ``../shared/workloads``, or the
traces/generated bags given on the command line):

1. *Train on other instances only.* The other instances of T's application
   (same ``application`` field, different trace) are replayed in ``record``
   mode into a history dataset used for T alone, at T's own time scale (so the
   learned durations are in the units T is replayed in), then
   ``daskflow model train`` builds T's model. Other instances whose lower
   bound would exceed ``--max-record-seconds`` at that scale are skipped (the
   smallest one is always kept).
2. *Alternate the modes.* ``stock``, ``steer`` (with T's model) and
   ``oracle`` (true costs as predictions) run back to back, ``--repeat``
   rounds. One stock cluster and one oracle cluster serve all traces (Dask's
   per-prefix estimates are reset before every run); steer gets a cluster per
   trace because its model differs.

Writes ``results.json`` (every run's result object) and ``results.md`` (the
table: steer/stock, steer/oracle, stock/LB, steer/LB, oracle/LB, simulated/LB,
prediction error; geometric-mean row) into ``--out`` and prints the table.

    python benchmarks/replay_all.py --workers 8 --threads-per-worker 1
    python benchmarks/replay_all.py ../shared/workloads/montage-*.json --modes stock,steer
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any

from daskflow.replay.harness import replay_cluster, replay_on_client, resolve_trace
from daskflow.replay.simulate import lower_bound_s
from daskflow.replay.trace import Trace

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_WORKLOADS = REPO.parent / "shared" / "workloads"


def _log(message: str) -> None:
    print(f"[replay_all {dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _stem(trace: Trace) -> str:
    return pathlib.Path(trace.source).stem if trace.source and not trace.source.startswith("generated") else trace.name


def training_instances(target: Trace, pool: list[Trace], slots: int, time_scale: float, max_record_seconds: float) -> list[Trace]:
    """Other instances of the target's application, short enough to record at ``time_scale``."""
    others = [t for t in pool if t.application == target.application and _stem(t) != _stem(target)]
    if not others:
        return []
    bounds = {id(t): lower_bound_s(t, slots) * time_scale for t in others}
    chosen = [t for t in others if bounds[id(t)] <= max_record_seconds]
    return chosen or [min(others, key=lambda t: bounds[id(t)])]


def train_model(history_dir: pathlib.Path, model_dir: pathlib.Path, rounds: int) -> dict[str, Any]:
    """``daskflow model train`` in a subprocess; returns the manifest (or an error)."""
    command = [sys.executable, "-m", "daskflow.cli", "model", "train", "--history", str(history_dir),
               "--out", str(model_dir), "--rounds", str(rounds), "--json"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:]}
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    try:
        return json.loads(lines[-1]) if lines else {"error": "no JSON from daskflow model train"}
    except json.JSONDecodeError as exc:
        return {"error": f"unreadable manifest JSON: {exc}"}


def geometric_mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trace: median makespan per mode and the ratios."""
    by_trace: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for result in results:
        if "error" in result and "makespan_s" not in result:
            continue
        by_trace.setdefault(result["trace"], {}).setdefault(result["mode"], []).append(result)
    rows = []
    for trace, modes in by_trace.items():
        first = next(iter(modes.values()))[0]
        span = {mode: statistics.median(r["makespan_s"] for r in runs) for mode, runs in modes.items()}
        every = [r for runs in modes.values() for r in runs]
        steer_runs = modes.get("steer", [])
        row = {
            "trace": trace,
            "tasks": first["tasks"],
            "lower_bound_s": statistics.median(r["lower_bound_s"] for r in every),
            "simulated_over_lb": statistics.median(r["simulated_list_makespan_s"] / r["lower_bound_s"] for r in every),
            # each run against its own lower bound (computed from the slots connected when it started)
            **{f"{mode}_over_lb": statistics.median(r["makespan_s"] / r["lower_bound_s"] for r in runs)
               for mode, runs in modes.items()},
            "steer_over_stock": span["steer"] / span["stock"] if {"steer", "stock"} <= span.keys() else None,
            "steer_over_oracle": span["steer"] / span["oracle"] if {"steer", "oracle"} <= span.keys() else None,
            "oracle_over_stock": span["oracle"] / span["stock"] if {"oracle", "stock"} <= span.keys() else None,
            "workers_lost": {mode: sum(r["workers_lost"] for r in runs) for mode, runs in modes.items()},
            "failed_tasks": {mode: sum(r["failed_tasks"] for r in runs) for mode, runs in modes.items()},
        }
        for name in ("duration_median_ape", "baseline_duration_median_ape", "memory_median_ape", "baseline_memory_median_ape"):
            values = [r[name] for r in steer_runs if r.get(name) is not None]
            row[name] = statistics.median(values) if values else None
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def f(value: Any, spec: str = ".3f") -> str:
        return "–" if value is None else format(value, spec)

    columns = ["steer_over_stock", "steer_over_oracle", "oracle_over_stock", "stock_over_lb", "steer_over_lb",
               "oracle_over_lb", "simulated_over_lb"]
    header = ("| trace | tasks | steer/stock | steer/oracle | oracle/stock | stock/LB | steer/LB | oracle/LB | "
              "simulated/LB | workers lost (stock/steer) | duration APE model / baseline | memory APE model / baseline |")
    lines = [
        (f"Replay: {meta['workers']} workers x {meta['threads_per_worker']} threads, lower bound scaled to "
        f"{meta['target_seconds']} s, memory-scale {meta['memory_scale']}, bytes-scale {meta['bytes_scale']}, "
        f"repeat {meta['repeat']} (median), {meta['date']}, commit {meta['commit']}."),
        "",
        header,
        "|---|" + "---:|" * (header.count("|") - 2),
    ]
    for row in rows:
        lost = row["workers_lost"]
        lines.append(
            f"| {row['trace']} | {row['tasks']} | " + " | ".join(f(row.get(c)) for c in columns)
            + f" | {lost.get('stock', '–')}/{lost.get('steer', '–')}"
            + f" | {f(row['duration_median_ape'], '.2f')} / {f(row['baseline_duration_median_ape'], '.2f')}"
            + f" | {f(row['memory_median_ape'], '.2f')} / {f(row['baseline_memory_median_ape'], '.2f')} |"
        )
    geo = [f(geometric_mean([row.get(c) for row in rows])) for c in columns]
    lines.append("| **geometric mean** | | " + " | ".join(f"**{g}**" for g in geo) + " | | | |")
    return "\n".join(lines)


def _commit() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="*", help="trace files or generated bags (default: every trace in ../shared/workloads)")
    parser.add_argument("--pool", default=str(DEFAULT_WORKLOADS), help="directory of traces to draw training instances from")
    parser.add_argument("--modes", default="stock,steer,oracle", help="comma-separated, run in this order per trace")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--memory-limit", default="auto")
    parser.add_argument("--target-seconds", type=float, default=8.0)
    parser.add_argument("--memory-scale", type=float, default=0.01)
    parser.add_argument("--bytes-scale", type=float, default=0.001)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of alternating modes per trace")
    parser.add_argument("--max-record-seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=200, help="boosting rounds for daskflow model train")
    parser.add_argument("--out", default=None, help="output directory (default: .daskflow/bench/replay-<UTC stamp>)")
    args = parser.parse_args(argv)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = pathlib.Path(args.out or REPO / ".daskflow" / "bench" / f"replay-{stamp}").absolute()
    out.mkdir(parents=True, exist_ok=True)
    pool_dir = pathlib.Path(args.pool)
    pool = [resolve_trace(str(p)) for p in sorted(pool_dir.glob("*.json"))] if pool_dir.is_dir() else []
    targets = [resolve_trace(spec) for spec in args.traces] if args.traces else list(pool)
    known = {_stem(t) for t in pool}
    pool += [t for t in targets if _stem(t) not in known]
    slots = args.workers * args.threads_per_worker
    meta = {
        "workers": args.workers, "threads_per_worker": args.threads_per_worker, "memory_limit": args.memory_limit,
        "target_seconds": args.target_seconds, "memory_scale": args.memory_scale, "bytes_scale": args.bytes_scale,
        "repeat": args.repeat, "modes": modes, "date": stamp, "commit": _commit(), "out": str(out),
    }
    common = {"memory_scale": args.memory_scale, "bytes_scale": args.bytes_scale}
    cluster_args = {"workers": args.workers, "threads_per_worker": args.threads_per_worker, "memory_limit": args.memory_limit}
    results: list[dict[str, Any]] = []
    models: dict[str, Any] = {}

    with contextlib.ExitStack() as shared:
        clients: dict[str, Any] = {}

        def shared_client(mode: str):
            if mode not in clients:
                _log(f"starting the {mode} cluster")
                clients[mode] = shared.enter_context(
                    replay_cluster(mode, history_url=str(out / f"history-{mode}"), **cluster_args)
                )
            return clients[mode]

        for target in targets:
            stem = _stem(target)
            time_scale = args.target_seconds / lower_bound_s(target, slots)
            model_dir = out / "models" / stem
            history_dir = out / "history" / stem
            if "steer" in modes:
                train = training_instances(target, pool, slots, time_scale, args.max_record_seconds)
                _log(f"{stem}: recording {[_stem(t) for t in train]} at time scale {time_scale:.4g}")
                if train:
                    try:
                        with replay_cluster("record", history_url=str(history_dir), **cluster_args) as client:
                            for other in train:
                                record = replay_on_client(client, other, "record", time_scale=time_scale,
                                                          history_url=str(history_dir), **common)
                                record["trained_for"] = stem
                                results.append(record)
                    except Exception as exc:  # noqa: BLE001 - steer then runs without a model
                        _log(f"{stem}: recording failed: {type(exc).__name__}: {exc}")
                    models[stem] = train_model(history_dir, model_dir, args.rounds)
                    models[stem]["trained_on"] = [_stem(t) for t in train]
                    if "error" in models[stem]:
                        _log(f"{stem}: training failed: {models[stem]['error'][-300:]}")
                else:
                    models[stem] = {"error": f"no other instance of application {target.application!r}"}
            with contextlib.ExitStack() as per_target:
                steer_client = None
                if "steer" in modes:
                    steer_client = per_target.enter_context(
                        replay_cluster("steer", history_url=str(out / "history-steer" / stem), model_url=str(model_dir),
                                       **cluster_args)
                    )
                for round_index in range(args.repeat):
                    for mode in modes:
                        client = steer_client if mode == "steer" else shared_client(mode)
                        started = time.perf_counter()
                        try:
                            result = replay_on_client(client, target, mode, time_scale=time_scale, **common)
                        except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
                            result = {"trace": target.name, "mode": mode, "error": f"{type(exc).__name__}: {exc}"}
                        result["round"] = round_index
                        results.append(result)
                        _log(f"{stem} {mode}: makespan {result.get('makespan_s', float('nan')):.2f} s = "
                             f"{result.get('makespan_over_lower_bound', float('nan')):.3f} x LB "
                             f"({time.perf_counter() - started:.0f} s wall)")
            rows = summarize([r for r in results if r.get("mode") != "record"])
            (out / "results.json").write_text(json.dumps({"meta": meta, "models": models, "summary": rows, "runs": results},
                                                         indent=1, default=str))
            (out / "results.md").write_text(markdown_table(rows, meta) + "\n")

    rows = summarize([r for r in results if r.get("mode") != "record"])
    table = markdown_table(rows, meta)
    print(table)
    _log(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
