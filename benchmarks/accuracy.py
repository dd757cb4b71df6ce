"""Prediction accuracy on held-out workflow instances (issue: learning).

For every application with two or more instances in ``../shared/workloads``
(and a synthetic skewed bag whose durations grow with declared input size,
three seeds), each instance is held out once: a model is trained on the
history of the OTHER instance(s) of that application and evaluated on the
held-out one. Reported per fold: median absolute percentage error (APE) of
the model and of the per-category mean baseline (what Dask does per key
prefix), for duration and peak memory, and their ratio (model / baseline).

History comes from one of two sources (``--source``):

``replay``  (default) R's harness (:mod:`daskflow.replay.harness`) in
            ``record`` mode on a real process LocalCluster: each trace task is
            a real Dask task that sleeps its scaled runtime and holds its
            scaled memory; the recorder plugin writes the history, with
            measured durations and VmHWM peaks. Truth = what was measured.
``trace``   rows generated directly from the trace JSON through the same
            record path (:func:`daskflow.learning.features.record_from_annotations`
            with the annotations the harness sends), truth = the trace's own
            scaled runtime / memory. No cluster; deterministic.

All instances of one application share ONE time scale (so durations are
comparable across instances): the largest instance's lower bound maps to
``--target-seconds``. Nothing is tuned to the traces: the model, features and
training parameters are the defaults ``daskflow model train`` uses.

Usage::

    python benchmarks/accuracy.py --source replay --workers 4 --json out.json
    python benchmarks/accuracy.py --source trace
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from daskflow.learning.features import record_from_annotations
from daskflow.learning.predictor import Predictor
from daskflow.learning.training import train_models

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_WORKLOADS = HERE.parent.parent / "shared" / "workloads"
OUTPUT_CAP_BYTES = 64 * 2**20  # the harness caps replayed outputs at this size


def instances_by_application(workloads: pathlib.Path, bag_seeds: tuple[int, ...] = (1, 2, 3), bag_tasks: int = 240) -> dict[str, list]:
    """``{application: [Trace, ...]}`` for applications with 2+ instances, plus the skewed bag."""
    from daskflow.replay.trace import load_trace, skewed_bag

    groups: dict[str, list] = defaultdict(list)
    for path in sorted(workloads.glob("*.json")):
        trace = load_trace(path)
        groups[trace.application or path.stem.split("-")[0]].append(trace)
    apps = {app: traces for app, traces in sorted(groups.items()) if len(traces) >= 2}
    if bag_seeds:
        apps["skewed-bag"] = [skewed_bag(n=bag_tasks, seed=seed) for seed in bag_seeds]
    return apps


def application_time_scale(traces: list, slots: int, target_seconds: float) -> float:
    """One factor for all instances: the largest lower bound becomes ``target_seconds``."""
    from daskflow.replay.simulate import lower_bound_s

    largest = max(lower_bound_s(trace, slots) for trace in traces)
    return target_seconds / largest if largest > 0 else 1.0


def trace_rows(trace, run_id: str, time_scale: float, memory_scale: float, bytes_scale: float) -> list[dict[str, Any]]:
    """History rows straight from a trace, built with the serving record path (``--source trace``)."""
    from daskflow.replay.trace import sanitize_category

    by_id = {task.id: task for task in trace.tasks}
    rows = []
    for index, task in enumerate(trace.tasks):
        category = sanitize_category(task.category)
        annotations = {
            "run_id": run_id, "kind": "replay", "category": category, "asset": None, "partition": None,
            "input_bytes": int(task.input_bytes * bytes_scale), "input_rows": 0, "n_inputs": len(task.parents),
        }
        dependency_bytes = sum(min(int(by_id[p].output_bytes * bytes_scale), OUTPUT_CAP_BYTES) for p in task.parents)
        row = record_from_annotations(
            f"{category}-{run_id[:8]}-{index}", annotations, n_dependencies=len(task.parents),
            dependency_bytes=dependency_bytes, worker_threads=1, worker_memory_limit_bytes=None,
        )
        row.update(
            recorded_at=float(index), outcome="success", duration_s=task.runtime_s * time_scale,
            peak_memory_bytes=None if task.memory_bytes is None else task.memory_bytes * memory_scale,
        )
        rows.append(row)
    return rows


def collect_trace_history(apps: dict[str, list], args) -> tuple[pd.DataFrame, dict[str, dict]]:
    frames, runs = [], {}
    for app, traces in apps.items():
        scale = application_time_scale(traces, args.workers, args.target_seconds)
        for trace in traces:
            run_id = f"{trace.name}"
            runs[run_id] = {"application": app, "trace": trace.name, "has_memory": _has_memory(trace), "time_scale": scale}
            frames.append(pd.DataFrame(trace_rows(trace, run_id, scale, args.memory_scale, args.bytes_scale)))
    return pd.concat(frames, ignore_index=True), runs


def collect_replay_history(apps: dict[str, list], args, history_url: str) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Replay every instance once in ``record`` mode on one cluster; the recorder writes the history."""
    from daskflow.learning.history import read_history
    from daskflow.replay.harness import replay_cluster, replay_on_client

    runs: dict[str, dict] = {}
    with replay_cluster("record", workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit, history_url=history_url) as client:
        for app, traces in apps.items():
            scale = application_time_scale(traces, args.workers, args.target_seconds)
            for trace in traces:
                started = time.perf_counter()
                result = replay_on_client(
                    client, trace, "record", time_scale=scale, memory_scale=args.memory_scale,
                    bytes_scale=args.bytes_scale, timeout_s=args.timeout,
                )
                for run_id in result["run_ids"]:
                    runs[run_id] = {"application": app, "trace": trace.name, "has_memory": _has_memory(trace),
                                    "time_scale": scale, "makespan_s": result["makespan_s"]}
                print(f"  recorded {trace.name}: {result['tasks']} tasks, makespan {result['makespan_s']:.1f} s, "
                      f"failed {result['failed_tasks']} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    history = read_history(history_url)  # the recorder flushed on close
    return history[history["run_id"].isin(runs)].reset_index(drop=True), runs


def _has_memory(trace) -> bool:
    return any(task.memory_bytes for task in trace.tasks)


def _ape(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    mask = np.isfinite(actual) & (actual > 0) & np.isfinite(predicted)
    return np.abs(predicted[mask] - actual[mask]) / actual[mask]


def evaluate_folds(history: pd.DataFrame, runs: dict[str, dict], rounds: int, workdir: pathlib.Path) -> list[dict[str, Any]]:
    """Leave-one-instance-out per application: train on the others, score the held-out instance."""
    folds = []
    by_app: dict[str, list[str]] = defaultdict(list)
    for run_id, info in runs.items():
        by_app[info["application"]].append(run_id)
    for app, run_ids in by_app.items():
        for held_out in run_ids:
            train = history[history["run_id"].isin([r for r in run_ids if r != held_out])]
            test = history[(history["run_id"] == held_out) & (history["outcome"] == "success")]
            model_dir = workdir / f"model-{app}-{len(folds)}"
            manifest = train_models(train, str(model_dir), rounds=rounds)
            predictor = Predictor.load(str(model_dir))
            model = predictor.predict(test)
            base = predictor.predict_baseline(test)
            duration = pd.to_numeric(test["duration_s"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            memory = pd.to_numeric(test["peak_memory_bytes"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            fold = {
                "application": app, "held_out": runs[held_out]["trace"],
                "trained_on": sorted({runs[r]["trace"] for r in run_ids if r != held_out}),
                "train_rows": len(train), "test_rows": len(test), "model_version": manifest["model_version"],
                "unseen_category_rows": int((np.asarray(model.quality) != "model").sum()),
                "_ape": {"duration": (_ape(model.duration_s, duration), _ape(base.duration_s, duration))},
            }
            if runs[held_out]["has_memory"]:
                fold["_ape"]["memory"] = (_ape(model.peak_memory_bytes, memory), _ape(base.peak_memory_bytes, memory))
            for target, (m, b) in fold["_ape"].items():
                fold[f"{target}_median_ape"] = float(np.median(m)) if len(m) else None
                fold[f"baseline_{target}_median_ape"] = float(np.median(b)) if len(b) else None
                fold[f"{target}_ratio"] = (fold[f"{target}_median_ape"] / fold[f"baseline_{target}_median_ape"]
                                           if len(m) and np.median(b) > 0 else None)
            folds.append(fold)
    return folds


def summarize(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled median APE over all held-out rows (model vs baseline), overall and for the input-size-driven bag."""
    out: dict[str, Any] = {}
    for target in ("duration", "memory"):
        model = [f["_ape"][target][0] for f in folds if target in f["_ape"]]
        base = [f["_ape"][target][1] for f in folds if target in f["_ape"]]
        if model:
            m, b = float(np.median(np.concatenate(model))), float(np.median(np.concatenate(base)))
            out[f"pooled_{target}_median_ape"], out[f"pooled_baseline_{target}_median_ape"] = m, b
            out[f"pooled_{target}_ratio"] = m / b if b > 0 else None
        ratios = [f[f"{target}_ratio"] for f in folds if f.get(f"{target}_ratio")]
        out[f"geomean_{target}_ratio"] = float(math.exp(np.mean(np.log(ratios)))) if ratios else None
    return out


def markdown(folds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [
        "| application | held-out instance | trained on | test rows | duration APE model | baseline | ratio | memory APE model | baseline | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fold in folds:
        lines.append(
            f"| {fold['application']} | {fold['held_out']} | {', '.join(fold['trained_on'])} | {fold['test_rows']} | "
            f"{f(fold.get('duration_median_ape'))} | {f(fold.get('baseline_duration_median_ape'))} | {f(fold.get('duration_ratio'))} | "
            f"{f(fold.get('memory_median_ape'))} | {f(fold.get('baseline_memory_median_ape'))} | {f(fold.get('memory_ratio'))} |"
        )
    lines.append("")
    lines.append(
        f"Pooled over all held-out rows: duration median APE {f(summary.get('pooled_duration_median_ape'))} vs baseline "
        f"{f(summary.get('pooled_baseline_duration_median_ape'))} (ratio {f(summary.get('pooled_duration_ratio'))}); memory "
        f"{f(summary.get('pooled_memory_median_ape'))} vs {f(summary.get('pooled_baseline_memory_median_ape'))} "
        f"(ratio {f(summary.get('pooled_memory_ratio'))}). Geometric mean of per-fold ratios: duration "
        f"{f(summary.get('geomean_duration_ratio'))}, memory {f(summary.get('geomean_memory_ratio'))}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("replay", "trace"), default="replay")
    parser.add_argument("--workloads", type=pathlib.Path, default=DEFAULT_WORKLOADS)
    parser.add_argument("--apps", default=None, help="comma-separated applications (default: all with 2+ instances, and skewed-bag)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (1 thread each); also the slots for time scaling")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--target-seconds", type=float, default=6.0, help="lower bound of each application's largest instance")
    parser.add_argument("--memory-scale", type=float, default=0.1)
    parser.add_argument("--bytes-scale", type=float, default=0.001)
    parser.add_argument("--bag-tasks", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", dest="json_path", default=None, help="write all results to this JSON file")
    args = parser.parse_args(argv)

    apps = instances_by_application(args.workloads, bag_tasks=args.bag_tasks)
    if args.apps:
        wanted = set(args.apps.split(","))
        apps = {k: v for k, v in apps.items() if k in wanted}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="daskflow-accuracy-") as tmp:
        workdir = pathlib.Path(tmp)
        if args.source == "replay":
            history, runs = collect_replay_history(apps, args, str(workdir / "history"))
        else:
            history, runs = collect_trace_history(apps, args)
        folds = evaluate_folds(history, runs, args.rounds, workdir)
    summary = summarize(folds)
    report = {
        "source": args.source, "workers": args.workers, "target_seconds": args.target_seconds,
        "memory_scale": args.memory_scale, "bytes_scale": args.bytes_scale, "rounds": args.rounds,
        "elapsed_s": time.perf_counter() - started, "summary": summary,
        "folds": [{k: v for k, v in fold.items() if not k.startswith("_")} for fold in folds],
    }
    print(markdown(folds, summary))
    if args.json_path:
        pathlib.Path(args.json_path).write_text(json.dumps(report, indent=2))
    print(json.dumps({"source": args.source, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
