"""Training: recovers duration = f(input bytes) far better than the per-category mean; saves UBJ + manifest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from daskflow.learning.training import (
    TrainingError,
    median_ape,
    split_rows,
    train_models,
)

pytestmark = pytest.mark.timeout(120)


def synthetic_history(runs: int = 3, tasks: int = 150, with_memory: bool = True, seed: int = 0) -> pd.DataFrame:
    """Two categories whose duration grows linearly with declared input bytes (plus 10 % noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(runs):
        for i in range(tasks):
            category = ("parse", "aggregate")[i % 2]
            input_bytes = int(10 ** rng.uniform(4, 9))
            scale = 2e-8 if category == "parse" else 5e-8
            rows.append(
                {
                    "run_id": f"run-{run}", "recorded_at": 1_700_000_000.0 + run * 3600 + i, "key": f"{category}-{run}-{i}",
                    "category": category, "kind": "replay", "input_bytes": input_bytes, "n_dependencies": 1,
                    "worker_threads": 1, "outcome": "success",
                    "duration_s": scale * input_bytes * rng.lognormal(0, 0.1),
                    "peak_memory_bytes": 3 * input_bytes * rng.lognormal(0, 0.1) if with_memory else None,
                }
            )
    return pd.DataFrame(rows)


def test_model_recovers_size_dependent_duration_and_beats_baseline(tmp_path):
    out = tmp_path / "models"
    manifest = train_models(synthetic_history(), str(out), rounds=100)
    metrics = manifest["metrics"]
    assert metrics["split"] == "by-run"
    assert metrics["rows_test"] == 150 and metrics["rows_train"] == 300
    # Error well below the per-category mean (which is off by orders of magnitude here).
    assert metrics["duration_median_ape"] < 0.25
    assert metrics["duration_median_ape"] < 0.1 * metrics["baseline_duration_median_ape"]
    assert metrics["memory_median_ape"] < 0.1 * metrics["baseline_memory_median_ape"]


def test_model_dir_is_ubj_boosters_plus_manifest(tmp_path):
    out = tmp_path / "models"
    manifest = train_models(synthetic_history(runs=2, tasks=60), str(out), rounds=20)
    assert sorted(p.name for p in out.iterdir()) == ["duration.ubj", "manifest.json", "peak_memory.ubj"]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["model_version"] == manifest["model_version"]
    assert on_disk["category_levels"] == ["aggregate", "parse"]
    assert on_disk["rows"] == 120 and on_disk["runs"] == 2
    assert on_disk["training_window"]["start"].startswith("2023-11-14")
    assert set(on_disk["baseline"]["category_means"]) == {"aggregate", "parse"}
    for name in ("duration.ubj", "peak_memory.ubj"):
        blob = (out / name).read_bytes()
        assert blob[:1] == b"{"  # UBJSON object, not a pickle (b"\x80")
        booster = xgb.Booster()
        booster.load_model(bytearray(blob))
        assert booster.num_boosted_rounds() == 20


def test_history_without_memory_trains_duration_only(tmp_path):
    manifest = train_models(synthetic_history(runs=2, tasks=40, with_memory=False), str(tmp_path / "m"), rounds=10)
    assert manifest["targets"]["peak_memory"]["file"] is None
    assert manifest["targets"]["duration"]["file"] == "duration.ubj"
    assert manifest["metrics"]["memory_median_ape"] is None
    assert not (tmp_path / "m" / "peak_memory.ubj").exists()


def test_split_holds_out_the_newest_run_and_random_without_runs():
    history = synthetic_history(runs=4, tasks=10)
    train, test, kind = split_rows(history)
    assert kind == "by-run"
    assert set(history[test]["run_id"]) == {"run-3"} and not (train & test).any()
    no_runs = history.drop(columns=["run_id"])
    train, test, kind = split_rows(no_runs)
    assert kind == "random" and 0 < test.sum() < len(no_runs)


def test_empty_history_raises_training_error_naming_the_fix(tmp_path):
    failed = synthetic_history(runs=1, tasks=4).assign(outcome="error")
    with pytest.raises(TrainingError, match="daskflow bench replay"):
        train_models(failed, str(tmp_path / "m"))


def test_median_ape_ignores_zero_truths():
    assert median_ape(np.array([1.0, 5.0]), np.array([0.0, 4.0])) == pytest.approx(0.25)
    assert median_ape(np.array([1.0]), np.array([0.0])) is None


def test_category_where_the_model_loses_on_held_out_rows_is_served_by_its_mean(tmp_path):
    """'shifty' follows input bytes in the training runs but not in the held-out run: its mean wins there."""
    from daskflow.learning.predictor import Predictor

    history = synthetic_history(runs=3, tasks=120)
    shifty = (history["category"] == "aggregate") & (history["run_id"] == "run-2")
    trained = (history["category"] == "aggregate") & (history["run_id"] != "run-2")
    # the newest run (held out) no longer depends on size: every task takes the category's mean
    history.loc[shifty, "duration_s"] = history.loc[trained, "duration_s"].mean()
    history["category"] = history["category"].replace({"aggregate": "shifty"})
    out = tmp_path / "models"
    manifest = train_models(history, str(out), rounds=50)
    assert manifest["baseline_categories"]["duration"] == ["shifty"]
    assert manifest["baseline_categories"]["peak_memory"] == []  # memory still follows size everywhere
    predictor = Predictor.load(str(out))
    rows = [{"category": c, "kind": "replay", "input_bytes": 10**8, "n_dependencies": 1} for c in ("parse", "shifty")]
    predicted = predictor.predict(rows)
    assert list(predicted.quality) == ["model", "prefix-mean"]
    assert list(predicted.memory_quality) == ["model", "model"]
    assert predicted.duration_s[1] == pytest.approx(predictor.baseline_for("shifty")[0])


def test_cold_start_one_recorded_run_gives_useful_predictions(tmp_path):
    """One run of history: the held-out split degrades to random, and the next run is predicted far better than the defaults."""
    from daskflow.learning.predictor import Predictor

    manifest = train_models(synthetic_history(runs=1, tasks=60), str(tmp_path / "m"), rounds=20)
    assert manifest["runs"] == 1 and manifest["metrics"]["split"] == "random" and manifest["metrics"]["rows_test"] > 0
    predictor = Predictor.load(str(tmp_path / "m"))
    nxt = synthetic_history(runs=1, tasks=60, seed=9)
    predicted = predictor.predict(nxt)
    assert set(predicted.quality) == {"model"}
    assert median_ape(predicted.duration_s, nxt["duration_s"].to_numpy()) < 0.3
    # tiny history (< 10 rows): no held-out split at all, still a model
    tiny = train_models(synthetic_history(runs=1, tasks=6), str(tmp_path / "tiny"), rounds=5)
    assert tiny["metrics"]["split"] == "none" and tiny["metrics"]["rows_test"] == 0
    assert Predictor.load(str(tmp_path / "tiny")).predict(nxt.head(3)).duration_s.shape == (3,)


def test_held_out_p90_coverage_is_reported_and_plausible(tmp_path):
    manifest = train_models(synthetic_history(runs=3, tasks=120), str(tmp_path / "m"), rounds=30)
    metrics = manifest["metrics"]
    assert 0.75 <= metrics["duration_p90_coverage"] <= 1.0
    assert 0.75 <= metrics["memory_p90_coverage"] <= 1.0


def test_excluded_rows_do_not_train_memory(tmp_path):
    """Peaks measured at the worker's limit (a worker being killed) are cleaned out, not learned (the 1.05 GB lesson)."""
    from daskflow.learning.predictor import Predictor

    history = synthetic_history(runs=2, tasks=100)
    history["worker_memory_limit_bytes"] = 2e9
    killed = history.index % 3 == 0
    history.loc[killed, "peak_memory_bytes"] = 1.99e9
    train_models(history, str(tmp_path / "m"), rounds=20)
    predictor = Predictor.load(str(tmp_path / "m"))
    clean = synthetic_history(runs=1, tasks=60, seed=4)
    assert median_ape(predictor.predict(clean).peak_memory_bytes, clean["peak_memory_bytes"].to_numpy()) < 0.3
    assert predictor.manifest["composite"]["hygiene"]["peak_memory"]["at-worker-limit"] >= int(killed.sum())
