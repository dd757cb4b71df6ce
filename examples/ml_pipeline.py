"""ML example: feature assets, an XGBoost model asset and a checked evaluation.

    daskflow run examples/ml_pipeline.py

Graph::

    raw_measurements ──> features ──> train_set ──> model ──> evaluation ──> model_card
                                  └─> test_set ─────────────────┘

The model is stored safely, never pickled: ``model`` returns the booster in
XGBoost's own JSON format as a string and is stored with ``io="json"``;
``evaluation`` loads it back with ``xgboost.Booster.load_model``. The blocking
check on ``evaluation`` (accuracy above a floor) gates ``model_card``, the
asset a deployment would read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from daskflow import CheckResult, asset, asset_check

N_SAMPLES = 3_000
FEATURES = ["temperature", "vibration", "load", "load_x_vibration", "temperature_z"]
MIN_ACCURACY = 0.75


@asset(code_version="1")
def raw_measurements() -> pd.DataFrame:
    """Simulated machine sensor readings with a failure label."""
    rng = np.random.default_rng(42)
    temperature = rng.normal(70, 10, N_SAMPLES)
    vibration = rng.gamma(2.0, 1.5, N_SAMPLES)
    load = rng.uniform(0, 1, N_SAMPLES)
    risk = 0.08 * (temperature - 70) + 0.9 * vibration * load - 1.2 + rng.normal(0, 0.5, N_SAMPLES)
    return pd.DataFrame({"machine_id": np.arange(N_SAMPLES) % 50, "temperature": temperature,
                         "vibration": vibration, "load": load, "failed": (risk > 0).astype("int64")})


@asset(code_version="1")
def features(raw_measurements: pd.DataFrame) -> pd.DataFrame:
    """Model inputs: raw signals plus an interaction and a per-machine standardised temperature."""
    df = raw_measurements.copy()
    df["load_x_vibration"] = df["load"] * df["vibration"]
    per_machine = df.groupby("machine_id")["temperature"]
    df["temperature_z"] = (df["temperature"] - per_machine.transform("mean")) / per_machine.transform("std")
    df["split"] = np.where(np.arange(len(df)) % 5 == 0, "test", "train")
    return df


@asset(code_version="1")
def train_set(features: pd.DataFrame) -> pd.DataFrame:
    return features[features["split"] == "train"].reset_index(drop=True)


@asset(code_version="1")
def test_set(features: pd.DataFrame) -> pd.DataFrame:
    return features[features["split"] == "test"].reset_index(drop=True)


@asset(code_version="1", io="json", tags={"resource": "cpu-heavy"})
def model(train_set: pd.DataFrame) -> str:
    """A gradient-boosted classifier, returned as XGBoost JSON (safe to store and load)."""
    import xgboost as xgb

    dtrain = xgb.DMatrix(train_set[FEATURES], label=train_set["failed"])
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "nthread": 1, "seed": 0}
    booster = xgb.train(params, dtrain, num_boost_round=40)
    return booster.save_raw(raw_format="json").decode()


def load_booster(model_json: str):
    """Rebuild the booster from the stored JSON string."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model_json.encode()))
    return booster


@asset(code_version="1", io="json")
def evaluation(model: str, test_set: pd.DataFrame) -> dict:
    """Accuracy, log loss and positive rate on the held-out test set."""
    import xgboost as xgb

    probability = load_booster(model).predict(xgb.DMatrix(test_set[FEATURES]))
    label = test_set["failed"].to_numpy()
    clipped = np.clip(probability, 1e-7, 1 - 1e-7)
    return {
        "accuracy": float(((probability > 0.5) == label).mean()),
        "log_loss": float(-(label * np.log(clipped) + (1 - label) * np.log(1 - clipped)).mean()),
        "positive_rate": float(label.mean()),
        "test_rows": int(len(label)),
    }


@asset_check(asset=evaluation, blocking=True)
def accurate_enough(evaluation: dict) -> CheckResult:
    """Blocking: only publish a model card for a model above the accuracy floor."""
    accuracy = evaluation["accuracy"]
    return CheckResult(passed=accuracy >= MIN_ACCURACY, message=f"accuracy {accuracy:.3f} (floor {MIN_ACCURACY})")


@asset(code_version="1", io="json")
def model_card(evaluation: dict, model: str) -> dict:
    """What a deployment reads: metrics plus the model size, published only when the check passes."""
    return {"metrics": evaluation, "features": FEATURES, "model_json_bytes": len(model.encode())}
