"""Drift benchmark (issue 12): a code change doubles one asset's cost; detection, demotion, retraining, promotion.

A small real pipeline (``load [16 partitions] -> transform [16] -> summary``,
sleep-based costs so the truth is known) runs on an embedded LocalCluster
(2 worker processes x 1 thread, the daskflow preload: recorder + steering) in
a fresh daskflow home, several times in a row; a fresh cluster per run, as
``daskflow run`` does:

1. run 1 at the original cost (no model yet); then ``maybe_retrain``
   (``daskflow model retrain``) trains and promotes the first model;
2. the "code change": ``transform`` costs 2x (``code_version`` bumped); run 2
   is steered with the old model - the steering plugin should detect the
   drift within the run and plan ``transform`` from the run's own tasks from
   then on; ``maybe_retrain`` after the run (trigger: the drift);
3. runs 3 and 4 at the new cost, each followed by ``maybe_retrain``: the
   retrained model is promoted once it beats the old one on the most recent
   held-out run.

Reported per run: the served model version, the median APE of ``transform``
durations as *served* (the model's p50, from the recorder's history rows) and
as *planned* at placement (the p50 x the in-run correction, from the steering
plugin's ``place`` events), the other assets' served error, the drift alarm
(which ``transform`` task in finishing order raised it, the estimated shift),
and what the retrainer did afterwards.

    python benchmarks/drift.py [--runs 4] [--partitions 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

LOAD_S = 0.15
TRANSFORM_S = 0.3  # x2 = 0.6 s: not the 0.5 s default a model that never saw the category predicts
SUMMARY_S = 0.1


def build_definitions(transform_factor: float, partitions: int) -> Any:
    """The pipeline; ``transform_factor`` is the code change (2.0: twice the work, code_version 2)."""
    from daskflow import Definitions, StaticPartitions, asset

    keys = StaticPartitions([f"p{i:02d}" for i in range(partitions)])
    transform_s = TRANSFORM_S * transform_factor

    @asset(partitions=keys, code_version="1", io="json")
    def load(context):
        time.sleep(LOAD_S)
        return [context.partition, 1]

    @asset(partitions=keys, code_version="1" if transform_factor == 1.0 else "2", io="json")
    def transform(load):
        time.sleep(transform_s)
        return load

    @asset(code_version="1", io="json")
    def summary(transform):
        time.sleep(SUMMARY_S)
        return len(transform)

    return Definitions(assets=[load, transform, summary])


def _median_ape(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    ok = np.isfinite(predicted) & np.isfinite(actual) & (actual > 0)
    return float(np.median(np.abs(predicted[ok] - actual[ok]) / actual[ok])) if ok.any() else None


def run_once(definitions: Any, workers: int, history_url: str) -> dict[str, Any]:
    """One run on a fresh embedded cluster: the run's history rows, the steering decisions, the plugin summary."""
    from distributed import Client, LocalCluster

    from daskflow import materialize
    from daskflow.contracts import SCHEDULER_PRELOAD, STEERING_PLUGIN, STEERING_TOPIC
    from daskflow.learning.history import read_history

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]}) as cluster, Client(cluster) as client:
        result = materialize(definitions, client=client, progress=False)
        decisions = [msg for _, msg in client.get_events(STEERING_TOPIC)]
        plugin = cluster.scheduler.plugins.get(STEERING_PLUGIN)
        summary = plugin.summary() if plugin is not None else {}
    history = read_history(history_url)  # the recorder flushed when the cluster closed
    rows = history[history["run_id"] == result.run_id]
    return {"run_id": result.run_id, "ok": result.ok, "rows": rows, "decisions": decisions, "summary": summary}


def describe_run(index: int, factor: float, run: dict[str, Any]) -> dict[str, Any]:
    rows = run["rows"]
    rows = rows[rows["outcome"].fillna("success") == "success"] if "outcome" in rows else rows
    category = rows["category"].astype(str)
    actual = rows["duration_s"].to_numpy(dtype="float64", na_value=np.nan)
    served = rows["predicted_duration_s"].to_numpy(dtype="float64", na_value=np.nan)
    is_transform = (category == "transform").to_numpy()
    actual_by_key = dict(zip(rows["key"].astype(str), actual))
    placed = [d for d in run["decisions"] if d.get("action") == "place" and str(d.get("key", "")).startswith("transform")]
    planned = np.array([d["predicted_duration_s"] * (d.get("calibration") or 1.0) for d in placed], dtype="float64")
    planned_actual = np.array([actual_by_key.get(str(d["key"]), np.nan) for d in placed], dtype="float64")
    alarms = [d for d in run["decisions"] if d.get("action") == "drift"]
    drift = [d for d in alarms if d.get("target") == "duration" and d.get("category") == "transform"]
    other_alarms = sorted({f"{d.get('category')} {d.get('target')}" for d in alarms if d not in drift})
    order = rows[is_transform].sort_values("stop_s" if "stop_s" in rows else "recorded_at")["key"].astype(str).tolist()
    alarm = drift[0] if drift else None
    versions = sorted({str(v) for v in rows["model_version"].dropna()}) if "model_version" in rows else []
    return {
        "run": index, "transform_cost_x": factor, "run_id": run["run_id"], "ok": run["ok"], "model_version": versions or None,
        "transform_tasks": int(is_transform.sum()),
        "transform_served_median_ape": _median_ape(served[is_transform], actual[is_transform]),
        "transform_planned_median_ape": _median_ape(planned, planned_actual),
        "other_served_median_ape": _median_ape(served[~is_transform], actual[~is_transform]),
        "drift_detected": alarm is not None,
        "drift_at_task": (order.index(str(alarm["key"])) + 1) if alarm is not None and str(alarm["key"]) in order else None,
        "drift_shift": alarm.get("shift") if alarm else None,
        "drift_events": len(drift),
        "other_alarms": other_alarms,
        "demoted": sorted(run["summary"].get("drifted") or []),
        "fallbacks": run["summary"].get("fallback_count"),
    }


def markdown(report: list[dict[str, Any]]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

    header = ("| run | transform cost | served model | transform APE served (p50) | planned (in-run corrected) | other assets served | "
              "drift alarm (transform task #, shift) | other alarms | demoted | retrain after the run |")
    lines = [header, "|---:|---:|---|---:|---:|---:|---|---|---|---|"]
    for r in report:
        alarm = f"task {r['drift_at_task']} of {r['transform_tasks']}, x{r['drift_shift']}" if r["drift_detected"] else "none"
        retrain = r.get("retrain") or {}
        lines.append(f"| {r['run']} | {r['transform_cost_x']:g}x | {', '.join(r['model_version'] or ['none'])} | "
                     f"{f(r['transform_served_median_ape'])} | {f(r['transform_planned_median_ape'])} | {f(r['other_served_median_ape'])} | "
                     f"{alarm} | {', '.join(r['other_alarms']) or '-'} | {', '.join(r['demoted']) or '-'} | {retrain.get('decision', '-')}: {retrain.get('reason', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)

    home = pathlib.Path(tempfile.mkdtemp(prefix="daskflow-drift-"))
    os.environ["DASKFLOW_HOME"] = str(home)  # the worker processes and the training subprocess see it too
    import dask

    from daskflow import config
    from daskflow.learning.registry import ModelRegistry
    from daskflow.learning.retrain import maybe_retrain

    settings = {"daskflow.home": str(home), "daskflow.dashboard.enabled": False, "daskflow.steering.mode": "steer",
                "daskflow.models.reload-interval": "0s", "daskflow.models.retrain.min-new-rows": 10}
    report = []
    started = time.perf_counter()
    with dask.config.set(settings):
        models_url, history_url = config.models_url(), config.history_url()
        for index in range(1, args.runs + 1):
            factor = 1.0 if index == 1 else 2.0
            run = run_once(build_definitions(factor, args.partitions), args.workers, history_url)
            row = describe_run(index, factor, run)
            row["retrain"] = {k: v for k, v in maybe_retrain(models_url, history_url).items() if k in ("decision", "reason", "version", "trigger")}
            report.append(row)
            print(f"run {index}: {json.dumps(row, default=str)}", file=sys.stderr)
        events = ModelRegistry(models_url).read_events()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    out = {"commit": commit, "load_average": os.getloadavg(), "seconds": round(time.perf_counter() - started, 1),
           "runs": report, "registry_events": [{k: e.get(k) for k in ("event", "version", "category", "target", "shift", "reason")} for e in events]}
    print(markdown(report))
    print(json.dumps(out, indent=1, default=str))
    if args.json_path:
        pathlib.Path(args.json_path).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
