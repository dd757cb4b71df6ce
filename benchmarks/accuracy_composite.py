"""Held-out accuracy of the composite predictor (issue 12) straight from the traces, next to the per-category mean.

Same folds, rows and time scales as ``benchmarks/accuracy.py --source trace``
(leave one instance of an application out, train on the others). Per fold:

* ``mean``: the per-category mean of the training rows (Dask's per-prefix estimate),
* ``composite``: :func:`daskflow.learning.composite.fit_composite` (cleaned rows,
  model / scaling law / blend / mean selected per category on an inner split),
* ``online``: the composite corrected by the tasks of the same category that
  came earlier in the held-out trace (:mod:`daskflow.learning.online`; trace
  order stands in for finishing order - no replay here),
* p90 coverage of the composite (and of the online-corrected p90).

Usage::

    python benchmarks/accuracy_composite.py --workloads ../shared/workloads [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

try:
    from benchmarks.accuracy import (
        DEFAULT_WORKLOADS,
        _ape,
        collect_trace_history,
        instances_by_application,
    )
except ImportError:  # run as a script without the repository root on the path
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from accuracy import (
        DEFAULT_WORKLOADS,
        _ape,
        collect_trace_history,
        instances_by_application,
    )

from daskflow.learning.composite import CompositeConfig, fit_composite
from daskflow.learning.online import simulate_online_quantiles
from daskflow.learning.quantiles import coverage

COLUMNS = {"duration": "duration_s", "memory": "peak_memory_bytes"}
TARGET = {"duration": "duration", "memory": "peak_memory"}


def online_corrected(rows: pd.DataFrame, point: np.ndarray, upper: np.ndarray, column: str,
                     priors: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's p50/p90 corrected by the earlier rows of its category (trace order stands in for finishing order)."""
    order = pd.to_numeric(rows["recorded_at"], errors="coerce").to_numpy(dtype="float64")
    actual = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper_log = np.log(upper / point)
    return simulate_online_quantiles(rows["category"].astype(str).tolist(), order, point, actual, upper_log, priors=priors)


def evaluate(history: pd.DataFrame, runs: dict[str, dict], config: CompositeConfig) -> list[dict[str, Any]]:
    from daskflow.learning.training import category_means

    by_app: dict[str, list[str]] = defaultdict(list)
    for run_id, info in runs.items():
        by_app[info["application"]].append(run_id)
    folds = []
    for app, run_ids in by_app.items():
        for held_out in run_ids:
            train = history[history["run_id"].isin([r for r in run_ids if r != held_out])].reset_index(drop=True)
            test = history[(history["run_id"] == held_out) & (history["outcome"] == "success")].reset_index(drop=True)
            composite = fit_composite(train, config)
            served = composite.predict(test)
            means = category_means(train)
            fold: dict[str, Any] = {"application": app, "held_out": runs[held_out]["trace"], "test_rows": len(test), "_ape": {}}
            for label, column in COLUMNS.items():
                if label == "memory" and not runs[held_out]["has_memory"]:
                    continue
                actual = pd.to_numeric(test[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                base = np.array([means.get(str(c), {}).get(column, np.nan) for c in test["category"]], dtype="float64")
                result = served[TARGET[label]]
                online_point, online_upper = online_corrected(test, result["p50"], result["p90"], column, composite.online_priors.get(TARGET[label]))
                fold["_ape"][label] = {"mean": _ape(base, actual), "composite": _ape(result["p50"], actual), "online": _ape(online_point, actual)}
                fold[f"{label}_p90_coverage"] = coverage(result["p90"], actual)
                fold[f"{label}_online_p90_coverage"] = coverage(online_upper, actual)
                fold[f"{label}_sources"] = {str(k): int(v) for k, v in zip(*np.unique(result["source"].astype(str), return_counts=True))}
                fold["_cover"] = fold.get("_cover", {}) | {label: (result["p90"], online_upper, actual)}
                for name, errors in fold["_ape"][label].items():
                    fold[f"{label}_{name}_median_ape"] = float(np.median(errors)) if len(errors) else None
                base_error = fold[f"{label}_mean_median_ape"]
                for name in ("composite", "online"):
                    value = fold[f"{label}_{name}_median_ape"]
                    fold[f"{label}_{name}_ratio"] = value / base_error if value is not None and base_error else None
            folds.append(fold)
            print(f"  {app} {fold['held_out']}: duration {fold.get('duration_composite_ratio')}, online {fold.get('duration_online_ratio')}", file=sys.stderr)
    return folds


def summarize(folds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in COLUMNS:
        parts = [f["_ape"][label] for f in folds if label in f["_ape"]]
        if not parts:
            continue
        pooled = {name: float(np.median(np.concatenate([p[name] for p in parts]))) for name in ("mean", "composite", "online")}
        out[f"pooled_{label}_mean_median_ape"] = pooled["mean"]
        for name in ("composite", "online"):
            out[f"pooled_{label}_{name}_median_ape"] = pooled[name]
            out[f"pooled_{label}_{name}_ratio"] = pooled[name] / pooled["mean"] if pooled["mean"] > 0 else None
            ratios = [f[f"{label}_{name}_ratio"] for f in folds if f.get(f"{label}_{name}_ratio")]
            out[f"geomean_{label}_{name}_ratio"] = float(math.exp(np.mean(np.log(ratios)))) if ratios else None
            out[f"worst_{label}_{name}_ratio"] = max(ratios) if ratios else None
        covers = [f["_cover"][label] for f in folds if label in f.get("_cover", {})]
        out[f"pooled_{label}_p90_coverage"] = coverage(np.concatenate([c[0] for c in covers]), np.concatenate([c[2] for c in covers]))
        out[f"pooled_{label}_online_p90_coverage"] = coverage(np.concatenate([c[1] for c in covers]), np.concatenate([c[2] for c in covers]))
    return out


def markdown(folds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    header = ("| application | held-out | rows | dur mean | dur composite | ratio | dur online | ratio | dur p90 cov | online p90 cov "
              "| mem mean | mem composite | ratio | mem online | ratio | mem p90 cov | online p90 cov |")
    lines = [header,
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fold in folds:
        cells = [fold["application"], fold["held_out"], str(fold["test_rows"])]
        for label in COLUMNS:
            cells += [f(fold.get(f"{label}_mean_median_ape")), f(fold.get(f"{label}_composite_median_ape")), f(fold.get(f"{label}_composite_ratio")),
                      f(fold.get(f"{label}_online_median_ape")), f(fold.get(f"{label}_online_ratio")), f(fold.get(f"{label}_p90_coverage")),
                      f(fold.get(f"{label}_online_p90_coverage"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(json.dumps(summary, indent=1))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=pathlib.Path, default=DEFAULT_WORKLOADS)
    parser.add_argument("--apps", default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--target-seconds", type=float, default=6.0)
    parser.add_argument("--memory-scale", type=float, default=0.1)
    parser.add_argument("--bytes-scale", type=float, default=0.001)
    parser.add_argument("--bag-tasks", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--no-model", action="store_true", help="scaling laws and means only (no XGBoost)")
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    apps = instances_by_application(args.workloads, bag_tasks=args.bag_tasks)
    if args.apps:
        apps = {k: v for k, v in apps.items() if k in set(args.apps.split(","))}
    started = time.perf_counter()
    history, runs = collect_trace_history(apps, args)
    folds = evaluate(history, runs, CompositeConfig(rounds=args.rounds, use_model=not args.no_model))
    summary = summarize(folds)
    print(markdown(folds, summary))
    if args.json_path:
        report = {"source": "trace", "elapsed_s": time.perf_counter() - started, "summary": summary,
                  "folds": [{k: v for k, v in fold.items() if not k.startswith("_")} for fold in folds]}
        pathlib.Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
