"""Self-healing: retrain when enough new history or drift exists, judge the candidate, promote or reject it.

Design note
-----------
:func:`maybe_retrain` is what a background process (the daemon, a cron job,
``daskflow model retrain``) calls - never the scheduler's event loop:

1. **Trigger** (:func:`retrain_trigger`, pure): the history recorded after the
   served model's training window holds at least
   :attr:`RetrainConfig.min_new_rows` rows of at least ``min_new_runs`` new
   runs, or drift was detected in it (:func:`~daskflow.learning.drift.detect_drift`
   on the rows the served model predicted, against its drift baselines), or
   there is no model yet. Drift events are appended to the registry's event log.
2. **Train** in a subprocess (``python -m daskflow.learning.retrain``; XGBoost
   and pandas memory stay out of the caller, a crash or a timeout cannot take
   it down): :func:`train_and_register`. Rows of a drifted category recorded
   before its change point are not trained on (:func:`forget_before_change`):
   the candidate learns the new normal, not an average of old and new.
3. **Judge**: the candidate's held-out twin (the same model fit without the
   newest run(s), :class:`~daskflow.learning.training.TrainedCandidate`) and
   the current model are both scored on those newest runs
   (:func:`~daskflow.learning.registry.evaluate_candidate`); the candidate
   (fit on everything) is registered, then promoted or kept as rejected, with
   the reason in the registry and an event each.

Everything returns a plain dict (``decision``: ``skip`` | ``promote`` |
``reject`` | ``unchanged`` | ``error``, ``reason``, ``version``, ``trigger``) for the CLI and the
model page.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class RetrainConfig:
    """Tunables (:func:`retrain_config_from_settings` reads them from ``daskflow.models.retrain.*``)."""

    min_new_rows: int = 200  # new history rows since the served model's training window ...
    min_new_runs: int = 1  # ... from at least this many new runs
    timeout_s: float = 1800.0  # the training subprocess is killed after this
    rounds: int = 200


def retrain_config_from_settings(**overrides: Any) -> RetrainConfig:
    """:class:`RetrainConfig` from ``daskflow.models.retrain.*`` (defaults in ``daskflow.yaml``); ``overrides`` win (CLI options)."""
    from dask.utils import parse_timedelta

    from daskflow import config

    values = {
        "min_new_rows": int(config.get("models.retrain.min-new-rows")),
        "min_new_runs": int(config.get("models.retrain.min-new-runs")),
        "timeout_s": float(parse_timedelta(config.get("models.retrain.timeout"))),
        "rounds": int(config.get("models.retrain.rounds")),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RetrainConfig(**values)


def retrain_trigger(new_rows: pd.DataFrame, has_model: bool, drift_events: Sequence[Mapping[str, Any]],
                    config: RetrainConfig | None = None) -> str | None:
    """Why to retrain now (a one-line reason), or None. Pure.

    >>> retrain_trigger(pd.DataFrame({"run_id": ["a"] * 5}), True, [], RetrainConfig(min_new_rows=3))
    '5 new rows from 1 new run(s)'
    >>> retrain_trigger(pd.DataFrame({"run_id": []}), True, [{"category": "load", "target": "duration", "shift": 2.0}]) is not None
    True
    """
    config = config or RetrainConfig()
    if drift_events:
        described = ", ".join(sorted({f"{e.get('category')} ({e.get('target', 'duration')} x{e.get('shift')})" for e in drift_events}))
        return f"drift detected: {described}"
    runs = new_rows["run_id"].dropna().nunique() if "run_id" in new_rows else 0
    if not has_model and len(new_rows):
        return f"no model yet; {len(new_rows)} rows of history"
    if len(new_rows) >= config.min_new_rows and runs >= config.min_new_runs:
        return f"{len(new_rows)} new rows from {runs} new run(s)"
    return None


def new_history(history: pd.DataFrame, manifest: Mapping[str, Any] | None) -> pd.DataFrame:
    """Rows recorded after the served model's training window (all rows without a model)."""
    end = ((manifest or {}).get("training_window") or {}).get("end")
    if not end or "recorded_at" not in history:
        return history
    cutoff = pd.Timestamp(end).timestamp()
    return history[pd.to_numeric(history["recorded_at"], errors="coerce").fillna(float("inf")) > cutoff]


def forget_before_change(history: pd.DataFrame, changes: Mapping[str, float]) -> pd.DataFrame:
    """Drop the rows of each drifted category recorded before its change point: the old normal no longer applies. Pure."""
    if not changes or "category" not in history:
        return history
    at = pd.to_numeric(history["stop_s"] if "stop_s" in history else history["recorded_at"], errors="coerce")
    if "recorded_at" in history:
        at = at.fillna(pd.to_numeric(history["recorded_at"], errors="coerce"))
    cutoff = history["category"].astype(str).map(lambda c: changes.get(c, float("-inf")))
    return history[~(at < cutoff)].reset_index(drop=True)


def change_points(drift_events: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Category -> the latest change point among its drift events."""
    out: dict[str, float] = {}
    for event in drift_events:
        if event.get("changed_at") is not None:
            out[str(event["category"])] = max(out.get(str(event["category"]), float("-inf")), float(event["changed_at"]))
    return out


def train_and_register(history: pd.DataFrame, models_url: str, reason: str, now: float | None = None,
                       rounds: int = 200, changes: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Fit a candidate on ``history``, register it, judge it against the current model, promote or reject it.

    ``changes``: drifted category -> change point; their rows before it are not trained on
    (:func:`forget_before_change`), so the candidate learns the new normal only.
    """
    from daskflow.learning.predictor import Predictor
    from daskflow.learning.registry import ModelRegistry, evaluate_candidate
    from daskflow.learning.training import fit_candidate, save_model

    history = forget_before_change(history, changes or {})
    registry = ModelRegistry(models_url)
    current_version = registry.current
    candidate = fit_candidate(history, rounds=rounds)
    with tempfile.TemporaryDirectory(prefix="daskflow-candidate-") as tmp:
        save_model(candidate.manifest, candidate.boosters, tmp)
        version = registry.register(tmp, reason=reason, now=now)
    if version == current_version:  # the same boosters trained within the same second: nothing new to judge
        return {"decision": "unchanged", "reason": "the candidate is identical to the served model", "version": version,
                "previous": current_version, "trigger": reason, "metrics": {}, "manifest": candidate.manifest}
    current = Predictor.load(models_url, reload_interval_s=0) if current_version else None
    judged = candidate.held_predictor if candidate.held_predictor is not None else None
    if judged is None:  # no held-out rows (a tiny first history): only a first model can be promoted
        verdict_decision, verdict_reason = ("promote", "no current model") if current is None else ("reject", "not enough evidence: no held-out rows")
        metrics: dict[str, Any] = {}
    else:
        verdict = evaluate_candidate(judged, current, candidate.held_rows, registry.config)
        verdict_decision, verdict_reason, metrics = verdict.decision, verdict.reason, verdict.metrics
    if verdict_decision == "promote":
        registry.promote(version, f"{reason}; {verdict_reason}", now=now)
    else:
        registry.reject(version, verdict_reason, now=now)
    return {"decision": verdict_decision, "reason": verdict_reason, "version": version, "previous": current_version,
            "trigger": reason, "metrics": metrics, "manifest": candidate.manifest}


def maybe_retrain(models_url: str | None = None, history_url: str | None = None, now: float | None = None, *,
                  config: RetrainConfig | None = None, subprocess_training: bool = True) -> dict[str, Any]:
    """Check the trigger; when it fires, train in a subprocess and promote or reject (see the module note)."""
    from daskflow import config as daskflow_config
    from daskflow.learning.drift import detect_drift, drift_config_from_settings
    from daskflow.learning.history import read_history
    from daskflow.learning.predictor import Predictor
    from daskflow.learning.registry import ModelRegistry

    config = config or retrain_config_from_settings()
    models_url = daskflow_config.models_url(models_url)
    history_url = daskflow_config.history_url(history_url)
    history = read_history(history_url)
    registry = ModelRegistry(models_url)
    current = Predictor.load(models_url, reload_interval_s=0) if registry.current else None
    manifest = current.manifest if current is not None and current.has_model else None
    fresh = new_history(history, manifest)
    baselines = current.composite.drift_baselines if current is not None and current.composite is not None else None
    drift_events = detect_drift(fresh, baselines, model_version=current.model_version if manifest else None,
                                config=drift_config_from_settings()) if manifest else []
    logged = {_drift_identity(e) for e in registry.read_events() if e.get("event") == "drift"}
    for event in drift_events:  # the steering plugin already logged the alarms it raised in the run
        if _drift_identity(event) not in logged:
            registry.append_event(event)
            logged.add(_drift_identity(event))
    trigger = retrain_trigger(fresh, manifest is not None, drift_events, config)
    if trigger is None:
        return {"decision": "skip", "reason": f"no trigger: {len(fresh)} new rows, no drift", "version": None, "trigger": None,
                "drift": drift_events}
    changes = change_points(drift_events)
    if not subprocess_training:
        outcome = train_and_register(history, models_url, trigger, now, config.rounds, changes)
    else:
        outcome = _train_in_subprocess(models_url, history_url, trigger, now, config, changes)
    outcome["drift"] = drift_events
    return outcome


def _drift_identity(event: Mapping[str, Any]) -> tuple:
    """One drift of one model: the same category and target in the same run (whoever detected it)."""
    return (event.get("model_version"), event.get("run_id"), event.get("category"), event.get("target", "duration"))


def _train_in_subprocess(models_url: str, history_url: str, trigger: str, now: float | None, config: RetrainConfig,
                         changes: Mapping[str, float]) -> dict[str, Any]:
    command = [sys.executable, "-m", "daskflow.learning.retrain", "--models", models_url, "--history", history_url,
               "--reason", trigger, "--rounds", str(config.rounds), "--changes", json.dumps(dict(changes))]
    command += ["--now", repr(float(now))] if now is not None else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=config.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"decision": "error", "reason": f"training timed out after {config.timeout_s:.0f} s", "version": None, "trigger": trigger}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"decision": "error", "reason": f"training subprocess exited {done.returncode}: {tail}", "version": None, "trigger": trigger}
    return json.loads(lines[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daskflow.learning.retrain --models URL --history URL --reason TEXT``: one JSON line on stdout."""
    import argparse

    from daskflow.errors import DaskflowError
    from daskflow.learning.history import read_history
    from daskflow.learning.training import _json_default

    parser = argparse.ArgumentParser(prog="python -m daskflow.learning.retrain")
    parser.add_argument("--models", required=True)
    parser.add_argument("--history", required=True)
    parser.add_argument("--reason", default="retrain")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--now", type=float, default=None)
    parser.add_argument("--changes", default="{}", help="JSON: drifted category -> change point (unix seconds)")
    args = parser.parse_args(argv)
    try:
        outcome = train_and_register(read_history(args.history), args.models, args.reason, args.now, args.rounds, json.loads(args.changes))
    except DaskflowError as exc:
        print(f"daskflow retrain: {exc}", file=sys.stderr)
        return 1
    outcome.pop("manifest", None)
    print(json.dumps(outcome, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
