"""Predictor: batched predictions, quality flags, safe fallback, hot reload, oracle."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from daskflow.learning.predictor import OraclePredictor, Predictor
from daskflow.learning.training import train_models
from tests.learning.test_training import synthetic_history

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "models"
    train_models(synthetic_history(runs=2, tasks=80), str(out), rounds=30)
    return out


def test_batch_predict_model_rows_and_quality_flags(model_dir):
    predictor = Predictor.load(str(model_dir), default_duration_s=0.5, default_peak_memory_bytes=7)
    records = [
        {"category": "parse", "kind": "replay", "input_bytes": 10**8, "n_dependencies": 1, "worker_threads": 1},
        {"category": "parse", "kind": "replay", "input_bytes": 10**5, "n_dependencies": 1, "worker_threads": 1},
        {"category": "unknown-category", "input_bytes": 10**8},
    ]
    predictions = predictor.predict(records)
    assert len(predictions) == 3 and predictions.model_version == predictor.model_version
    assert list(predictions.quality) == ["model", "model", "default"]
    assert list(predictions.memory_quality) == ["model", "model", "default"]
    # duration grows with declared input size (true: 2e-8 s/byte)
    assert predictions.duration_s[0] == pytest.approx(2.0, rel=0.3)
    assert predictions.duration_s[1] < 0.1 * predictions.duration_s[0]
    assert predictions[2].duration_s == 0.5 and predictions[2].peak_memory_bytes == 7
    # the unknown category now has observations: per-category mean
    predictor.observe("unknown-category", 3.0, 100.0)
    predictor.observe("unknown-category", 5.0, None)
    again = predictor.predict(records[2:])
    assert again.quality[0] == "prefix-mean" and again.duration_s[0] == pytest.approx(4.0)
    assert again.peak_memory_bytes[0] == pytest.approx(100.0)


def test_missing_model_warns_once_and_predicts_baseline(tmp_path):
    with pytest.warns(RuntimeWarning, match="no model at"):
        predictor = Predictor.load(str(tmp_path / "absent"), default_duration_s=0.5, reload_interval_s=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would fail here
        predictor.maybe_reload()
        predictions = predictor.predict([{"category": "a"}, {"category": "b"}])
    assert not predictor.has_model and predictor.model_version is None
    assert list(predictions.quality) == ["default", "default"]
    assert list(predictions.duration_s) == [0.5, 0.5]


@pytest.mark.parametrize("damage", ["manifest-garbage", "booster-garbage", "booster-truncated", "feature-mismatch"])
def test_corrupt_model_warns_and_falls_back_without_raising(model_dir, tmp_path, damage):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in model_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((broken / "manifest.json").read_text())
    if damage == "manifest-garbage":
        (broken / "manifest.json").write_text("{not json")
    elif damage == "booster-garbage":
        for entry in manifest["targets"].values():
            entry.pop("sha256", None)  # so the garbage reaches XGBoost itself
        (broken / "manifest.json").write_text(json.dumps(manifest))
        (broken / "duration.ubj").write_bytes(b"\x80\x04garbage")
    elif damage == "booster-truncated":
        blob = (broken / "duration.ubj").read_bytes()
        (broken / "duration.ubj").write_bytes(blob[: len(blob) // 2])
    else:
        manifest["feature_columns"] = ["something", "else"]
        (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="unusable"):
        predictor = Predictor.load(str(broken), default_duration_s=0.25)
    assert not predictor.has_model
    predictions = predictor.predict([{"category": "parse", "input_bytes": 10}])
    assert predictions.quality[0] == "default" and predictions.duration_s[0] == 0.25


def test_hot_reload_on_manifest_change_is_throttled(tmp_path):
    out = tmp_path / "models"
    first = train_models(synthetic_history(runs=2, tasks=40, seed=1), str(out), rounds=10)
    predictor = Predictor.load(str(out), reload_interval_s=3600)
    assert predictor.model_version == first["model_version"]
    second = train_models(synthetic_history(runs=2, tasks=50, seed=2), str(out), rounds=15)
    assert second["model_version"] != first["model_version"]
    assert predictor.maybe_reload() is False  # throttled
    assert predictor.model_version == first["model_version"]
    predictor.reload_interval_s = 0
    assert predictor.maybe_reload() is True
    assert predictor.model_version == second["model_version"]
    assert predictor.maybe_reload() is False  # unchanged manifest: no reload
    assert predictor.predict([{"category": "parse", "input_bytes": 10**6}]).quality[0] == "model"


def test_a_broken_replacement_keeps_the_current_model(model_dir, tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    for path in model_dir.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    predictor = Predictor.load(str(out), reload_interval_s=0)
    version = predictor.model_version
    (out / "manifest.json").write_text("{half written")
    with pytest.warns(RuntimeWarning, match="keeping model"):
        assert predictor.maybe_reload() is False
    assert predictor.model_version == version and predictor.has_model


def test_predict_a_dataframe_of_history_rows(model_dir):
    history = synthetic_history(runs=1, tasks=20, seed=5)
    predictions = Predictor.load(str(model_dir)).predict(history)
    assert len(predictions) == 20 and set(predictions.quality) == {"model"}
    assert np.all(predictions.duration_s > 0)


def test_oracle_reads_true_costs_and_falls_back():
    oracle = OraclePredictor(url="memory://none", default_duration_s=0.5)
    predictions = oracle.predict([{"category": "a", "true_duration_s": 2.5, "true_peak_memory_bytes": 1e6}, {"category": "a"}])
    assert list(predictions.quality) == ["oracle", "default"]
    assert predictions.duration_s[0] == 2.5 and predictions.peak_memory_bytes[0] == 1e6
    assert predictions.model_version == "oracle"


def test_unknown_worker_resources_are_served_as_the_typical_training_worker(model_dir):
    """Steering predicts before placement: records without worker fields get the training worker's values."""
    predictor = Predictor.load(str(model_dir))
    assert predictor.manifest["feature_defaults"] == {"worker_threads": 1.0}
    with_worker = {"category": "parse", "kind": "replay", "input_bytes": 10**7, "n_dependencies": 1, "worker_threads": 1}
    without = {k: v for k, v in with_worker.items() if k != "worker_threads"}
    both = predictor.predict([with_worker, without])
    assert both.duration_s[0] == both.duration_s[1] and both.peak_memory_bytes[0] == both.peak_memory_bytes[1]


def test_a_boosters_only_model_serves_a_default_p90_of_twice_the_p50(tmp_path):
    train_models(synthetic_history(runs=2, tasks=40), str(tmp_path / "b"), rounds=5, composite=False)
    predictor = Predictor.load(str(tmp_path / "b"))
    assert predictor.composite is None
    predicted = predictor.predict([{"category": "parse", "input_bytes": 10**6}, {"category": "nothing"}])
    assert list(predicted.quality) == ["model", "default"] and list(predicted.source) == ["model", "default"]
    assert np.allclose(predicted.p90_duration_s, 2 * predicted.duration_s)
    assert predicted[0].p90_peak_memory_bytes == pytest.approx(2 * predicted[0].peak_memory_bytes)
