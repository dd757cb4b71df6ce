"""Prediction accuracy on held-out workflow instances (issue: learning).

For every application with two or more instances in ``../shared/workloads``
(and a synthetic skewed bag whose durations grow with declared input size,
three seeds), each instance is held out once: a model is trained on the
history of the OTHER instance(s) of that application and evaluated on the
held-out one. Reported per fold: median absolute percentage error (APE) of
the model and of the per-category mean baseline (what Dask does per key
prefix), for duration and peak memory, and their ratio (model / baseline);
and per *application fold* (:func:`by_application`: every held-out row of
the application pooled, each instance predicted by the model trained on
the others).

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

``--predictor composite`` (default) trains what ``daskflow model train``
serves since manifest format 2 (cleaned rows, boosters + per-category
scaling laws, per-category selection by held-out error, calibrated p90);
``--predictor booster`` the boosters alone (format 1, the previous model).
Besides the served p50 the report gives the p90 coverage and the *online*
numbers: the held-out run replayed in its finishing order (trace order for
``--source trace``) through :class:`daskflow.learning.corrector.OnlineCorrector`,
the API the steering plugin calls - each task predicted with what the
finished tasks of its category said so far (the in-run correction and the
online selection among corrected / served / training mean); "planned" is the
per-category factor view of the same corrector that the steering policy plans
with.

All instances of one application share ONE time scale (so durations are
comparable across instances): the largest instance's lower bound maps to
``--target-seconds``. Nothing is tuned to the traces: the model, features and
training parameters are the defaults ``daskflow model train`` uses.

Usage::

    python benchmarks/accuracy.py --source replay --workers 4 --json out.json
    python benchmarks/accuracy.py --source trace
    python benchmarks/accuracy.py --source replay --save-history DIR   # then, without replaying:
    python benchmarks/accuracy.py --source saved --history DIR
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
from daskflow.learning.quantiles import coverage
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
    from daskflow.learning.features import graph_positions
    from daskflow.replay.trace import sanitize_category

    by_id = {task.id: task for task in trace.tasks}
    positions = graph_positions({task.id: task.parents for task in trace.tasks})  # what the harness annotates
    rows = []
    for index, task in enumerate(trace.tasks):
        category = sanitize_category(task.category)
        annotations = {
            "run_id": run_id, "kind": "replay", "category": category, "asset": None, "partition": None,
            "input_bytes": int(task.input_bytes * bytes_scale), "input_rows": 0, "n_inputs": len(task.parents),
            **positions[task.id],
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


def save_history(directory: pathlib.Path, history: pd.DataFrame, runs: dict[str, dict]) -> None:
    """Keep what a run collected (``history.parquet``, ``runs.json``) so it can be evaluated again without replaying."""
    directory.mkdir(parents=True, exist_ok=True)
    history.to_parquet(directory / "history.parquet.tmp", index=False)
    (directory / "history.parquet.tmp").replace(directory / "history.parquet")
    (directory / "runs.json").write_text(json.dumps(runs, indent=1, default=str))


def load_saved_history(directory: pathlib.Path, apps: dict[str, list]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The history and runs :func:`save_history` kept, restricted to ``apps``."""
    runs = {run_id: info for run_id, info in json.loads((directory / "runs.json").read_text()).items() if info["application"] in apps}
    history = pd.read_parquet(directory / "history.parquet")
    return history[history["run_id"].isin(runs)].reset_index(drop=True), runs


def _has_memory(trace) -> bool:
    return any(task.memory_bytes for task in trace.tasks)


def _ape(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    mask = np.isfinite(actual) & (actual > 0) & np.isfinite(predicted)
    return np.abs(predicted[mask] - actual[mask]) / actual[mask]


def online_replay(test: pd.DataFrame, predictor: Predictor, predictions: Any, config: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per target ``(p50, p90, planned)`` of every held-out row, from the rows of its category that finished before it.

    ``p50``: :meth:`OnlineCorrector.correct` (exact; a category served by its training mean gets the mean);
    ``planned``: the served p50 times :meth:`OnlineCorrector.factor`, the per-category factor the steering
    policy plans with (the same unless a model-served category switched to its mean). ``config``: a :class:`~daskflow.learning.corrector.CorrectorConfig` (default: its defaults, those of ``daskflow.yaml``).
    """
    from daskflow.learning.corrector import OnlineCorrector

    corrector = OnlineCorrector.from_predictor(predictor, config)
    stop = pd.to_numeric(test["stop_s"], errors="coerce") if "stop_s" in test else pd.Series(np.nan, index=test.index)
    order_key = stop.fillna(pd.to_numeric(test["recorded_at"], errors="coerce")).to_numpy(dtype="float64")
    categories = test["category"].astype(str).tolist()
    out = {}
    for target, column, p50, p90 in (("duration", "duration_s", predictions.duration_s, predictions.p90_duration_s),
                                     ("peak_memory", "peak_memory_bytes", predictions.peak_memory_bytes, predictions.p90_peak_memory_bytes)):
        actual = pd.to_numeric(test[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        ratio = np.where(p50 > 0, p90 / np.where(p50 > 0, p50, 1.0), 2.0)
        point, upper, planned = p50.copy(), p90.copy(), p50.copy()
        for i in np.argsort(order_key, kind="stable"):
            now = float(order_key[i])
            point[i] = corrector.correct([categories[i]], p50[i:i + 1], now, target)[0]
            planned[i] = p50[i] * corrector.factor(categories[i], now, target)
            upper[i] = corrector.upper([categories[i]], point[i:i + 1], ratio[i:i + 1], target)[0]
            if np.isfinite(actual[i]) and actual[i] > 0:
                corrector.observe(categories[i], float(p50[i]), float(actual[i]), now, target)
        out[target] = (point, upper, planned)
    return out


def evaluate_folds(history: pd.DataFrame, runs: dict[str, dict], rounds: int, workdir: pathlib.Path,
                   predictor_kind: str = "composite", corrector_config: Any = None) -> list[dict[str, Any]]:
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
            manifest = train_models(train, str(model_dir), rounds=rounds, composite=predictor_kind == "composite")
            predictor = Predictor.load(str(model_dir))
            model = predictor.predict(test)
            base = per_category_mean(train, test, predictor.predict_baseline(test))
            online = online_replay(test, predictor, model, corrector_config)
            duration = pd.to_numeric(test["duration_s"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            memory = pd.to_numeric(test["peak_memory_bytes"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            fold = {
                "application": app, "held_out": runs[held_out]["trace"],
                "trained_on": sorted({runs[r]["trace"] for r in run_ids if r != held_out}),
                "train_rows": len(train), "test_rows": len(test), "model_version": manifest["model_version"],
                "unseen_category_rows": int((np.asarray(model.quality) != "model").sum()),
                "sources": {str(k): int(v) for k, v in zip(*np.unique(np.asarray(model.source, dtype=str), return_counts=True))},
                "_ape": {"duration": (_ape(model.duration_s, duration), _ape(base["duration_s"], duration), _ape(online["duration"][0], duration),
                                      _ape(online["duration"][2], duration))},
                "_cover": {"duration": (model.p90_duration_s, online["duration"][1], duration)},
            }
            if runs[held_out]["has_memory"]:
                fold["_ape"]["memory"] = (_ape(model.peak_memory_bytes, memory), _ape(base["peak_memory_bytes"], memory),
                                          _ape(online["peak_memory"][0], memory), _ape(online["peak_memory"][2], memory))
                fold["_cover"]["memory"] = (model.p90_peak_memory_bytes, online["peak_memory"][1], memory)
            for target, (m, b, o, planned) in fold["_ape"].items():
                fold[f"{target}_median_ape"] = float(np.median(m)) if len(m) else None
                fold[f"baseline_{target}_median_ape"] = float(np.median(b)) if len(b) else None
                fold[f"online_{target}_median_ape"] = float(np.median(o)) if len(o) else None
                ok = len(m) and np.median(b) > 0
                fold[f"{target}_ratio"] = fold[f"{target}_median_ape"] / fold[f"baseline_{target}_median_ape"] if ok else None
                fold[f"online_{target}_ratio"] = fold[f"online_{target}_median_ape"] / fold[f"baseline_{target}_median_ape"] if ok else None
                fold[f"planned_{target}_ratio"] = float(np.median(planned)) / fold[f"baseline_{target}_median_ape"] if ok and len(planned) else None
                if ok and len(o) == len(b):
                    fold[f"online_{target}_paired"] = paired_noise(o, b)
                upper, online_upper, actual = fold["_cover"][target]
                fold[f"{target}_p90_coverage"] = coverage(upper, actual)
                fold[f"online_{target}_p90_coverage"] = coverage(online_upper, actual)
            folds.append(fold)
            print(f"  {app} {fold['held_out']}: duration {fold.get('duration_ratio')}, online {fold.get('online_duration_ratio')}, "
                  f"memory {fold.get('memory_ratio')}, online {fold.get('online_memory_ratio')}", file=sys.stderr)
    return folds


def paired_noise(online: np.ndarray, baseline: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """How far a fold's online ratio is from noise: a paired sign test of the rows and a bootstrap interval of the ratio.

    ``closer`` / ``farther``: rows where the online estimate's APE is below / above the baseline's (equal rows
    left out), ``p_two_sided`` their sign test; ``ratio_90``: the 5 % and 95 % quantiles of the ratio of
    median APEs over ``resamples`` bootstrap resamples of the fold's rows (seeded: deterministic).
    """
    from math import comb

    closer, farther = int((online < baseline).sum()), int((online > baseline).sum())
    n, k = closer + farther, min(closer, farther)
    p = min(1.0, 2.0 * sum(comb(n, i) for i in range(k + 1)) / 2.0**n) if n else 1.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(online), size=(resamples, len(online)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.median(online[idx], axis=1) / np.median(baseline[idx], axis=1)
    ratios = ratios[np.isfinite(ratios)]
    interval = [float(np.quantile(ratios, 0.05)), float(np.quantile(ratios, 0.95))] if len(ratios) else None
    return {"closer": closer, "farther": farther, "p_two_sided": p, "ratio_90": interval}


def per_category_mean(train: pd.DataFrame, test: pd.DataFrame, defaults: Any) -> dict[str, np.ndarray]:
    """The baseline: each held-out row predicted by the arithmetic mean of its category in the (raw) training rows.

    Dask's per-prefix estimate; a category the training rows lack gets what the served predictor
    answers for it (``defaults``: its baseline predictions), so both are scored on the same rows.
    """
    out = {}
    for column in ("duration_s", "peak_memory_bytes"):
        means = pd.to_numeric(train[column], errors="coerce").groupby(train["category"].astype(str)).mean()
        values = test["category"].astype(str).map(means).to_numpy(dtype="float64", na_value=np.nan)
        out[column] = np.where(np.isfinite(values), values, np.asarray(getattr(defaults, column), dtype="float64"))
    return out


def summarize(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled median APE over all held-out rows (model, online, baseline), ratios, worst fold, p90 coverage."""
    out: dict[str, Any] = {}
    for target in ("duration", "memory"):
        model = [f["_ape"][target][0] for f in folds if target in f["_ape"]]
        base = [f["_ape"][target][1] for f in folds if target in f["_ape"]]
        online = [f["_ape"][target][2] for f in folds if target in f["_ape"]]
        planned = [f["_ape"][target][3] for f in folds if target in f["_ape"]]
        if model:
            m, b, o, pl = (float(np.median(np.concatenate(x))) for x in (model, base, online, planned))
            out[f"pooled_planned_{target}_ratio"] = pl / b if b > 0 else None
            out[f"pooled_{target}_median_ape"], out[f"pooled_baseline_{target}_median_ape"] = m, b
            out[f"pooled_online_{target}_median_ape"] = o
            out[f"pooled_{target}_ratio"] = m / b if b > 0 else None
            out[f"pooled_online_{target}_ratio"] = o / b if b > 0 else None
            covers = [f["_cover"][target] for f in folds if target in f["_cover"]]
            out[f"pooled_{target}_p90_coverage"] = coverage(np.concatenate([c[0] for c in covers]), np.concatenate([c[2] for c in covers]))
            out[f"pooled_online_{target}_p90_coverage"] = coverage(np.concatenate([c[1] for c in covers]), np.concatenate([c[2] for c in covers]))
        for prefix in ("", "online_", "planned_"):
            ratios = [f[f"{prefix}{target}_ratio"] for f in folds if f.get(f"{prefix}{target}_ratio")]
            out[f"geomean_{prefix}{target}_ratio"] = float(math.exp(np.mean(np.log(ratios)))) if ratios else None
            out[f"worst_{prefix}{target}_ratio"] = max(ratios) if ratios else None
    applications = by_application(folds)
    out["applications"] = applications
    for target in ("duration", "memory"):
        for prefix in ("", "online_", "planned_"):
            ratios = [a[f"{prefix}{target}_ratio"] for a in applications.values() if a.get(f"{prefix}{target}_ratio")]
            out[f"worst_application_{prefix}{target}_ratio"] = max(ratios) if ratios else None
    return out


def by_application(folds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per application, its held-out folds' rows pooled: median APE ratios (model, online, planned) to the mean's.

    An application fold is every held-out row of the application (each
    instance predicted by the model trained on the others), scored as one
    sample: a per-instance fold of 64-104 rows moves its median ratio by a
    few percent between recordings of the same code.

    >>> ape = lambda *v: np.array(v, dtype=float)
    >>> folds = [{"application": "a", "_ape": {"duration": (ape(1, 2), ape(2, 2), ape(1, 1), ape(1, 1))}},
    ...          {"application": "a", "_ape": {"duration": (ape(3), ape(2), ape(3), ape(3))}}]
    >>> out = by_application(folds)["a"]
    >>> out["rows"], out["instances"], out["duration_ratio"], out["online_duration_ratio"]
    (3, 2, 1.0, 0.5)
    """
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fold in folds:
        grouped[fold["application"]].append(fold)
    out: dict[str, dict[str, Any]] = {}
    for app, members in grouped.items():
        entry: dict[str, Any] = {"instances": len(members)}
        for target in ("duration", "memory"):
            arrays = [f["_ape"][target] for f in members if target in f["_ape"]]
            if not arrays:
                continue
            model, base, online, planned = (np.concatenate([a[i] for a in arrays]) for i in range(4))
            entry.setdefault("rows", len(base))
            b = float(np.median(base)) if len(base) else 0.0
            for prefix, values in (("", model), ("online_", online), ("planned_", planned)):
                entry[f"{prefix}{target}_ratio"] = float(np.median(values)) / b if b > 0 and len(values) else None
        out[app] = entry
    return out


def markdown(folds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [
        ("| application | held-out instance | trained on | test rows | duration APE model | baseline | ratio | online | ratio | p90 cov "
         "| online p90 cov | memory APE model | baseline | ratio | online | ratio | p90 cov | online p90 cov |"),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fold in folds:
        cells = [fold["application"], fold["held_out"], ", ".join(fold["trained_on"]), str(fold["test_rows"])]
        for t in ("duration", "memory"):
            cells += [f(fold.get(f"{t}_median_ape")), f(fold.get(f"baseline_{t}_median_ape")), f(fold.get(f"{t}_ratio")),
                      f(fold.get(f"online_{t}_median_ape")), f(fold.get(f"online_{t}_ratio")), f(fold.get(f"{t}_p90_coverage")),
                      f(fold.get(f"online_{t}_p90_coverage"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Pooled over all held-out rows: duration median APE {f(summary.get('pooled_duration_median_ape'))} vs baseline "
        f"{f(summary.get('pooled_baseline_duration_median_ape'))} (ratio {f(summary.get('pooled_duration_ratio'))}); memory "
        f"{f(summary.get('pooled_memory_median_ape'))} vs {f(summary.get('pooled_baseline_memory_median_ape'))} "
        f"(ratio {f(summary.get('pooled_memory_ratio'))}). Geometric mean of per-fold ratios: duration "
        f"{f(summary.get('geomean_duration_ratio'))}, memory {f(summary.get('geomean_memory_ratio'))}."
    )
    lines.append(
        f"Online (corrected by the run's finished tasks): duration {f(summary.get('pooled_online_duration_median_ape'))} "
        f"(ratio {f(summary.get('pooled_online_duration_ratio'))}), memory {f(summary.get('pooled_online_memory_median_ape'))} "
        f"(ratio {f(summary.get('pooled_online_memory_ratio'))}). Worst fold ratio: duration {f(summary.get('worst_duration_ratio'))} "
        f"(online {f(summary.get('worst_online_duration_ratio'))}), memory {f(summary.get('worst_memory_ratio'))} "
        f"(online {f(summary.get('worst_online_memory_ratio'))}). p90 coverage: duration {f(summary.get('pooled_duration_p90_coverage'))} "
        f"(online {f(summary.get('pooled_online_duration_p90_coverage'))}), memory {f(summary.get('pooled_memory_p90_coverage'))} "
        f"(online {f(summary.get('pooled_online_memory_p90_coverage'))})."
    )
    for fold in folds:
        for t in ("duration", "memory"):
            ratio, paired = fold.get(f"online_{t}_ratio"), fold.get(f"online_{t}_paired")
            if ratio is not None and ratio > 1.0 and paired:
                interval = paired["ratio_90"] or [math.nan, math.nan]
                lines.append(f"Online {t} worse than the mean on {fold['held_out']}: {ratio:.3f} (rows closer {paired['closer']}, "
                             f"farther {paired['farther']}, sign test p = {paired['p_two_sided']:.2g}; bootstrap 90 % "
                             f"interval of the ratio {interval[0]:.3f}-{interval[1]:.3f}).")
    applications = summary.get("applications") or {}
    if applications:
        lines.append("")
        lines.append("| application (held-out rows pooled) | instances | rows | duration ratio | online | planned "
                     "| memory ratio | online | planned |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for app, entry in applications.items():
            cells = [app, str(entry["instances"]), str(entry.get("rows", 0))]
            cells += [f(entry.get(f"{p}{t}_ratio")) for t in ("duration", "memory") for p in ("", "online_", "planned_")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append(
            f"Worst application fold: duration {f(summary.get('worst_application_duration_ratio'))} (online "
            f"{f(summary.get('worst_application_online_duration_ratio'))}), memory "
            f"{f(summary.get('worst_application_memory_ratio'))} (online {f(summary.get('worst_application_online_memory_ratio'))}).")
    lines.append(
        f"Planned (served p50 x the per-category factor the steering policy plans with): duration ratio "
        f"{f(summary.get('pooled_planned_duration_ratio'))} (worst fold {f(summary.get('worst_planned_duration_ratio'))}), memory "
        f"{f(summary.get('pooled_planned_memory_ratio'))} (worst fold {f(summary.get('worst_planned_memory_ratio'))})."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("replay", "trace", "saved"), default="replay",
                        help="saved: the history a former run kept with --save-history (no replay; evaluation only)")
    parser.add_argument("--save-history", type=pathlib.Path, default=None,
                        help="keep the collected history and run table in this directory (history.parquet, runs.json)")
    parser.add_argument("--history", type=pathlib.Path, default=None, help="with --source saved: the directory --save-history wrote")
    parser.add_argument("--predictor", choices=("composite", "booster"), default="composite",
                        help="composite: what `daskflow model train` serves (format 2); booster: the boosters alone (format 1)")
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
    parser.add_argument("--no-online-selection", action="store_true",
                        help="the in-run correction without online selection (steering.online.selection.enabled: false)")
    args = parser.parse_args(argv)

    apps = instances_by_application(args.workloads, bag_tasks=args.bag_tasks)
    if args.apps:
        wanted = set(args.apps.split(","))
        apps = {k: v for k, v in apps.items() if k in wanted}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="daskflow-accuracy-") as tmp:
        workdir = pathlib.Path(tmp)
        if args.source == "saved":
            if args.history is None:
                parser.error("--source saved needs --history DIR (written by an earlier run with --save-history DIR)")
            history, runs = load_saved_history(args.history, apps)
        elif args.source == "replay":
            history, runs = collect_replay_history(apps, args, str(workdir / "history"))
        else:
            history, runs = collect_trace_history(apps, args)
        if args.save_history is not None:
            save_history(args.save_history, history, runs)
        from dataclasses import replace

        from daskflow.learning.corrector import corrector_config_from_settings

        corrector_config = corrector_config_from_settings()  # what the steering plugin reads
        if args.no_online_selection:
            corrector_config = replace(corrector_config, selection=replace(corrector_config.selection, enabled=False))
        folds = evaluate_folds(history, runs, args.rounds, workdir, args.predictor, corrector_config)
    summary = summarize(folds)
    report = {
        "source": args.source, "predictor": args.predictor, "online_selection": not args.no_online_selection, "workers": args.workers, "target_seconds": args.target_seconds,
        "memory_scale": args.memory_scale, "bytes_scale": args.bytes_scale, "rounds": args.rounds,
        "elapsed_s": time.perf_counter() - started, "summary": summary,
        "folds": [{k: v for k, v in fold.items() if not k.startswith("_")} for fold in folds],
    }
    print(markdown(folds, summary))
    if args.json_path:
        pathlib.Path(args.json_path).write_text(json.dumps(report, indent=2))
    print(json.dumps({"source": args.source, "predictor": args.predictor, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
