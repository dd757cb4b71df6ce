"""Self-healing on a synthetic pipeline with known laws: drift within a run, demotion, retrain, promote/reject, rollback.

Pipeline: ``load`` costs 1e-6 s per input byte, ``agg`` 2 s flat. From run 3 on a code change makes ``agg`` cost x2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from daskflow.learning.corrector import OnlineCorrector
from daskflow.learning.drift import detect_drift
from daskflow.learning.history import append_history
from daskflow.learning.predictor import Predictor
from daskflow.learning.registry import ModelRegistry
from daskflow.learning.retrain import maybe_retrain, retrain_trigger
from daskflow.learning.training import median_ape

pytestmark = pytest.mark.timeout(180)

T0 = 1_700_000_000.0


def pipeline_run(run: int, agg_factor: float = 1.0, tasks: int = 60, seed: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(run if seed is None else seed)
    rows = []
    for i in range(tasks):
        category = "agg" if i % 3 == 0 else "load"
        size = int(10 ** rng.uniform(5, 7))
        duration = (2.0 * agg_factor if category == "agg" else 1e-6 * size) * rng.lognormal(0, 0.1)
        stop = T0 + run * 3600 + i
        rows.append({"run_id": f"run-{run}", "recorded_at": stop, "stop_s": stop, "key": f"{category}-{run}-{i}",
                     "category": category, "kind": "asset", "input_bytes": size, "outcome": "success",
                     "duration_s": duration, "peak_memory_bytes": (3.0 * size if category == "load" else 5e7) * rng.lognormal(0, 0.1)})
    return pd.DataFrame(rows)


def served(frame: pd.DataFrame, predictor: Predictor) -> pd.DataFrame:
    """What the recorder writes: each row with the prediction the steering plugin served for it."""
    predictions = predictor.predict(frame)
    return frame.assign(predicted_duration_s=predictions.duration_s, predicted_peak_memory_bytes=predictions.peak_memory_bytes,
                        model_version=predictor.model_version)


def test_retrain_trigger_reasons():
    assert retrain_trigger(pd.DataFrame({"run_id": ["a"] * 10}), True, []) is None
    assert retrain_trigger(pd.DataFrame({"run_id": ["a"] * 10}), False, []).startswith("no model yet")
    assert "drift detected: agg" in retrain_trigger(pd.DataFrame({"run_id": []}), True, [{"category": "agg", "target": "duration", "shift": 2.0}])


def test_x2_change_detected_within_the_run_and_served_from_the_run_since(tmp_path):
    models, history = str(tmp_path / "models"), str(tmp_path / "history")
    append_history(pd.concat([pipeline_run(1), pipeline_run(2)]).to_dict("records"), history)
    first = maybe_retrain(models, history, now=1.0, subprocess_training=False)
    assert first["decision"] == "promote" and first["reason"] == "no current model"
    predictor = Predictor.load(models)

    run3 = pipeline_run(3, agg_factor=2.0)
    corrector = OnlineCorrector.from_predictor(predictor)
    p50 = predictor.predict(run3).duration_s
    events, planned = [], []
    for i, row in run3.iterrows():  # the steering adapter: plan each task with the correction so far, then observe it
        planned.append(corrector.correct([row["category"]], p50[i:i + 1], now=row["stop_s"])[0])
        event = corrector.observe(row["category"], p50[i], row["duration_s"], now=row["stop_s"])
        events.append(event) if event else None
    assert [e["category"] for e in events] == ["agg"] and events[0]["direction"] == "slower"
    assert events[0]["observed"] <= 8  # of 20 agg tasks in the run
    assert "agg" in corrector.drifted()
    agg = (run3["category"] == "agg").to_numpy()
    late = agg & (np.arange(len(run3)) > 40)
    assert median_ape(np.array(planned)[late], run3["duration_s"].to_numpy()[late]) < 0.15  # served from the run's own tasks
    assert median_ape(p50[late], run3["duration_s"].to_numpy()[late]) > 0.4  # the model alone is off by ~x2
    # the same detection from the recorded history rows (what `daskflow model drift` and the retrainer see)
    found = detect_drift(served(run3, predictor), predictor.composite.drift_baselines, predictor.model_version)
    assert [(e["category"], e["target"], e["run_id"]) for e in found] == [("agg", "duration", "run-3")]


def test_drift_retrains_rejects_a_candidate_that_cannot_know_and_promotes_after_the_next_run(tmp_path):
    models, history = str(tmp_path / "models"), str(tmp_path / "history")
    append_history(pd.concat([pipeline_run(1), pipeline_run(2)]).to_dict("records"), history)
    v1 = maybe_retrain(models, history, now=1.0, subprocess_training=False)["version"]
    predictor = Predictor.load(models)
    append_history(served(pipeline_run(3, agg_factor=2.0), predictor).to_dict("records"), history)
    after3 = maybe_retrain(models, history, now=2.0, subprocess_training=False)
    assert after3["trigger"].startswith("drift detected: agg")
    assert after3["decision"] == "reject"  # its held-out twin never saw the change: it cannot beat the current model
    append_history(served(pipeline_run(4, agg_factor=2.0), Predictor.load(models)).to_dict("records"), history)
    after4 = maybe_retrain(models, history, now=3.0, config=None, subprocess_training=False)
    registry = ModelRegistry(models)
    current = Predictor.load(models)
    assert registry.current != v1 and current.model_version != v1, (after3, after4)
    run5 = pipeline_run(5, agg_factor=2.0)
    agg = (run5["category"] == "agg").to_numpy()
    healed = current.predict(run5).duration_s
    assert median_ape(healed[agg], run5["duration_s"].to_numpy()[agg]) < 0.15  # learned the new normal only
    kinds = [e["event"] for e in registry.read_events()]
    assert "drift" in kinds and "training" in kinds and kinds.count("promote") >= 2


def test_a_worse_candidate_is_kept_as_rejected_and_rollback_restores_predictions_exactly(tmp_path):
    models, history = str(tmp_path / "models"), str(tmp_path / "history")
    append_history(pd.concat([pipeline_run(1), pipeline_run(2), pipeline_run(3)]).to_dict("records"), history)
    v1 = maybe_retrain(models, history, now=1.0, subprocess_training=False)["version"]
    probe = pipeline_run(9)
    before = Predictor.load(models).predict(probe)
    # a newest run that is pure noise (costs unrelated to size) makes a worse candidate
    noisy = pipeline_run(4)
    noisy["duration_s"] = np.random.default_rng(0).permutation(noisy["duration_s"].to_numpy())
    append_history(noisy.to_dict("records"), history)
    registry = ModelRegistry(models)
    from daskflow.learning.history import read_history
    from daskflow.learning.retrain import train_and_register

    outcome = train_and_register(read_history(history), models, "manual", now=2.0)
    if outcome["decision"] == "reject":
        assert registry.current == v1 and {v["version"]: v["status"] for v in registry.list_versions()}[outcome["version"]] == "rejected"
    else:  # promoted anyway: roll it back
        registry.rollback("regression", now=3.0)
    after = Predictor.load(models).predict(probe)
    assert after.model_version == v1
    assert np.array_equal(after.duration_s, before.duration_s) and np.array_equal(after.p90_duration_s, before.p90_duration_s)
    assert np.array_equal(after.peak_memory_bytes, before.peak_memory_bytes)


def test_retraining_runs_in_a_subprocess_and_skips_without_a_trigger(tmp_path):
    models, history = str(tmp_path / "models"), str(tmp_path / "history")
    append_history(pipeline_run(1).to_dict("records"), history)
    first = maybe_retrain(models, history, now=1.0)  # subprocess (the default)
    assert first["decision"] == "promote", first
    assert Predictor.load(models).model_version == first["version"]
    again = maybe_retrain(models, history, now=2.0)
    assert again["decision"] == "skip" and "no trigger" in again["reason"]
    broken = maybe_retrain(str(tmp_path / "m2"), str(tmp_path / "empty-history"), now=3.0)
    assert broken["decision"] == "skip"
