"""Training the duration and peak-memory models from the task history.

Design note
-----------
Two XGBoost regressors, one per target, on the features of
:mod:`daskflow.learning.features`:

* ``duration``: ``log(duration_s + 1e-3)`` (seconds; the floor keeps
  microsecond tasks from dominating),
* ``peak_memory``: ``log1p(peak_memory_bytes)``.

Log targets make the squared loss a *relative* loss, which is what scheduling
needs (a 2x error on a 1 s task matters as much as on a 100 s task) and what
we report (median absolute percentage error, APE).

Evaluation: rows are split into train/test - by run when the history has two
or more runs (the most recent runs are held out, so the test set is a run the
model never saw), otherwise randomly (20 %). The held-out error of the model is
compared with the per-category mean baseline (what Dask itself does per key
prefix), computed by the very :class:`~daskflow.learning.predictor.Predictor`
that serves, so unseen categories are judged exactly as they will be served.
The final boosters are then refit on all rows.

Since manifest format 2 the served model is the *composite*
(:mod:`~daskflow.learning.composite`): history rows are cleaned first
(:mod:`~daskflow.learning.cleaning`), the boosters are trained next to
per-category scaling laws, and per category the candidate with the lowest
error on an inner held-out split serves, with a calibrated p90. The outer
held-out metrics above are those of the composite (fit on the training rows
only, scored through the very predictor that serves).

Output: a model directory (any fsspec URL) with ``duration.ubj``,
``peak_memory.ubj`` (XGBoost's own UBJSON format, never pickle) and
``manifest.json`` (feature list, category levels, model version, rows,
metrics, training window, per-category baseline means, the categories served
by their mean because the model lost to it on held-out rows, file checksums).
Boosters are written first, the manifest last (atomically on local disk), so a
reader that sees a manifest sees its boosters; checksums in the manifest let a
reader detect a half-replaced directory and retry.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from daskflow.errors import TrainingError
from daskflow.formatting import finite_float
from daskflow.learning.features import (
    FEATURE_COLUMNS,
    KIND_LEVELS,
    category_levels,
    feature_frame,
)
from daskflow.learning.manifest import (
    MANIFEST_FORMAT,  # one definition, shared with the reader
)
from daskflow.learning.metrics import median_ape

WORKER_FEATURE_COLUMNS = ("worker_threads", "worker_memory_limit_bytes")
DURATION_FLOOR_S = 1e-3


@dataclass(frozen=True)
class Target:
    name: str  # "duration" | "peak_memory"
    column: str  # history column
    file: str  # booster file in the model dir

    def transform(self, values: np.ndarray) -> np.ndarray:
        if self.name == "duration":
            return np.log(np.clip(values, 0, None) + DURATION_FLOOR_S)
        return np.log1p(np.clip(values, 0, None))

    def inverse(self, values: np.ndarray) -> np.ndarray:
        if self.name == "duration":
            return np.clip(np.exp(values) - DURATION_FLOOR_S, 0, None)
        return np.clip(np.expm1(values), 0, None)


TARGETS: tuple[Target, ...] = (
    Target("duration", "duration_s", "duration.ubj"),
    Target("peak_memory", "peak_memory_bytes", "peak_memory.ubj"),
)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "eta": 0.1,
    "max_depth": 6,
    "min_child_weight": 1.0,
    "lambda": 1.0,
    "tree_method": "hist",
    "max_cat_to_onehot": 1,
    "nthread": 1,  # OpenMP spinning on busy shared cores costs far more than it gains
    "seed": 0,
}
DEFAULT_ROUNDS = 200


def usable_rows(history: pd.DataFrame) -> pd.DataFrame:
    """Successful tasks with a measured duration (the training rows)."""
    frame = history
    if "outcome" in frame:
        frame = frame[frame["outcome"].fillna("success") == "success"]
    frame = frame[pd.to_numeric(frame["duration_s"], errors="coerce").notna()]
    return frame.reset_index(drop=True)


def split_rows(frame: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Boolean train/test masks and the split kind (``by-run``, ``random`` or ``none``)."""
    n = len(frame)
    runs = frame["run_id"].dropna().astype(str) if "run_id" in frame else pd.Series([], dtype=str)
    distinct = runs.unique()
    if len(distinct) >= 2:
        stamp = frame["recorded_at"] if "recorded_at" in frame else pd.Series(np.arange(n))
        order = (
            pd.DataFrame({"run": frame["run_id"].astype(str), "t": pd.to_numeric(stamp, errors="coerce")})
            .groupby("run")["t"].min().sort_values(kind="stable")
        )
        sizes = frame["run_id"].astype(str).value_counts()
        held: list[str] = []
        for run in reversed(order.index.tolist()[1:]):  # newest first; always keep the oldest for training
            held.append(run)
            if sizes[held].sum() >= test_fraction * n:
                break
        test = frame["run_id"].astype(str).isin(held).to_numpy()
        return ~test, test, "by-run"
    if n < 10:
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool), "none"
    rng = np.random.default_rng(seed)
    test = rng.random(n) < test_fraction
    if test.all() or not test.any():
        test = np.zeros(n, dtype=bool)
        test[: max(1, n // 5)] = True
    return ~test, test, "random"


def category_means(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per-category arithmetic means (Dask's per-prefix baseline) with counts."""
    out: dict[str, dict[str, Any]] = {}
    if not len(frame):
        return out
    grouped = frame.assign(category=frame["category"].astype(str)).groupby("category")
    durations = grouped["duration_s"].agg(["mean", "count"])
    memory = pd.to_numeric(frame["peak_memory_bytes"], errors="coerce").groupby(frame["category"].astype(str)).agg(["mean", "count"])
    for category, row in durations.iterrows():
        entry = {"duration_s": float(row["mean"]), "duration_count": int(row["count"])}
        if category in memory.index and memory.loc[category, "count"] > 0:
            entry["peak_memory_bytes"] = float(memory.loc[category, "mean"])
            entry["peak_memory_count"] = int(memory.loc[category, "count"])
        out[str(category)] = entry
    return out


def worker_feature_defaults(frame: pd.DataFrame) -> dict[str, float]:
    """Most common worker threads / memory limit in training: what serving assumes when the worker is not yet known.

    The steering plugin predicts before a task is placed, so its records lack
    worker resources; filling them with the typical training worker keeps
    serving features equal to training features on a homogeneous cluster.
    """
    out: dict[str, float] = {}
    for column in WORKER_FEATURE_COLUMNS:
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce").dropna()
            if len(values):
                out[column] = float(values.mode().iloc[0])
    return out


def fit_booster(frame: pd.DataFrame, target: Target, levels: list[str], params: Mapping[str, Any] | None = None, rounds: int = DEFAULT_ROUNDS,
                weight_column: str | None = None):
    """One booster for ``target`` on the rows of ``frame`` that have it; ``None`` when none do.

    ``weight_column``: per-row weights (the cleaning's down-weighting of retried / lower-bound rows), if present.
    """
    import xgboost as xgb

    values = pd.to_numeric(frame[target.column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    mask = np.isfinite(values)
    if mask.sum() < 2:
        return None
    features = feature_frame(frame[mask], categories=levels)
    weight = None
    if weight_column and weight_column in frame:
        weight = pd.to_numeric(frame[weight_column], errors="coerce").fillna(1.0).to_numpy(dtype="float64")[mask]
    dtrain = xgb.DMatrix(features, label=target.transform(values[mask]), weight=weight, enable_categorical=True)
    return xgb.train(dict(DEFAULT_PARAMS, **dict(params or {})), dtrain, num_boost_round=rounds)


def train_models(
    history: pd.DataFrame,
    out_url: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    test_fraction: float = 0.2,
    storage_options: Mapping[str, Any] | None = None,
    composite: bool = True,
) -> dict[str, Any]:
    """Train, evaluate and save the models; returns the manifest.

    ``history`` is a history DataFrame (:func:`daskflow.learning.history.read_history`).
    ``out_url`` defaults to ``daskflow.models.url`` (``<home>/models``).
    ``composite`` (default): clean the rows and fit the composite predictor
    (:mod:`~daskflow.learning.composite`: boosters, scaling laws, per-category
    selection, p90 spread, online priors, drift baselines; manifest format 2);
    ``False``: the boosters alone (format-1 behaviour, kept for comparison).
    Works from a single run: the held-out split is then random (20 %), and
    with fewer than 10 rows there is none (metrics say ``split: none``).
    Raises :class:`TrainingError` when there are no usable rows.
    """
    if out_url is None:
        from daskflow import config

        out_url = config.models_url()
    candidate = fit_candidate(history, params=params, rounds=rounds, test_fraction=test_fraction, composite=composite)
    save_model(candidate.manifest, candidate.boosters, out_url, storage_options=storage_options)
    return candidate.manifest


@dataclass
class TrainedCandidate:
    """A trained model before it is saved: its manifest and boosters, plus the held-out evidence.

    ``held_predictor`` is the same kind of model fit WITHOUT the held-out rows (the newest
    run(s)), ``held_rows`` those rows (cleaned targets): what the registry judges a candidate
    on against the current model (:func:`~daskflow.learning.registry.evaluate_candidate`).
    """

    manifest: dict[str, Any]
    boosters: dict[str, Any]
    held_predictor: Any | None
    held_rows: pd.DataFrame


def fit_candidate(history: pd.DataFrame, *, params: Mapping[str, Any] | None = None, rounds: int = DEFAULT_ROUNDS,
                  test_fraction: float = 0.2, composite: bool = True) -> TrainedCandidate:
    """Train and evaluate (see :func:`train_models`), without saving."""
    frame = usable_rows(history)
    if not len(frame):
        raise TrainingError(
            f"history with {len(history)} rows has no successful task with a duration to train on; "
            "run some pipelines (or `daskflow bench replay --mode record`) with the recorder enabled first"
        )
    train_mask, test_mask, split = split_rows(frame, test_fraction)
    metrics: dict[str, Any] = {"split": split, "rows_train": int(train_mask.sum()), "rows_test": int(test_mask.sum())}
    trainer = _train_composite if composite else _train_boosters
    manifest, boosters, held, held_rows = trainer(frame, train_mask, test_mask, metrics, params, rounds)
    stamps = pd.to_numeric(frame.get("recorded_at"), errors="coerce") if "recorded_at" in frame else pd.Series([], dtype=float)
    manifest.update(
        rows=len(frame),
        runs=int(frame["run_id"].nunique()) if "run_id" in frame else 0,
        metrics=metrics,
        training_window={"start": _iso(stamps.min()), "end": _iso(stamps.max())},
        params=dict(DEFAULT_PARAMS, **dict(params or {})),
        rounds=int(rounds),
    )
    return TrainedCandidate(manifest, boosters, held, held_rows)


def _train_composite(frame: pd.DataFrame, train_mask: np.ndarray, test_mask: np.ndarray, metrics: dict[str, Any],
                     params: Mapping[str, Any] | None, rounds: int) -> tuple[dict[str, Any], dict[str, Any], Any, pd.DataFrame]:
    from daskflow.learning.cleaning import clean_history
    from daskflow.learning.composite import CompositeConfig, fit_composite

    config = CompositeConfig(rounds=rounds, params=dict(params) if params else None)
    held, test = None, frame.iloc[:0]
    if test_mask.any():
        held = fit_composite(frame[train_mask].reset_index(drop=True), config).predictor()
        test = clean_history(frame[test_mask].reset_index(drop=True))
        for target, column in (("duration", "duration_s"), ("peak_memory", "peak_memory_bytes")):
            test[column] = np.where(test[f"use_{target}"], pd.to_numeric(test[column], errors="coerce"), np.nan)  # judge on clean rows
        metrics.update(evaluate(held, test))
    final = fit_composite(frame, config)
    return final.manifest(), final.boosters, held, test


def _train_boosters(frame: pd.DataFrame, train_mask: np.ndarray, test_mask: np.ndarray, metrics: dict[str, Any],
                    params: Mapping[str, Any] | None, rounds: int) -> tuple[dict[str, Any], dict[str, Any], Any, pd.DataFrame]:
    from daskflow.learning.predictor import Predictor

    levels = category_levels(frame)
    held, test = None, frame.iloc[:0]
    if test_mask.any():
        train, test = frame[train_mask], frame[test_mask]
        levels_train = category_levels(train)
        boosters = {t.name: fit_booster(train, t, levels_train, params, rounds) for t in TARGETS}
        held_manifest = dict(_manifest_core(levels_train, category_means(train), boosters), feature_defaults=worker_feature_defaults(train))
        held = Predictor.from_parts(held_manifest, boosters)
        metrics.update(evaluate(held, test))
        fallback = baseline_categories(held, test)
    else:
        fallback = {}
    boosters = {t.name: fit_booster(frame, t, levels, params, rounds) for t in TARGETS}
    manifest = _manifest_core(levels, category_means(frame), boosters)
    manifest["feature_defaults"] = worker_feature_defaults(frame)
    manifest["baseline_categories"] = fallback
    return manifest, boosters, held, test


def evaluate(predictor: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """Median APE of ``predictor`` and of its per-category baseline on ``rows``, per target.

    Keys: ``duration_median_ape``, ``baseline_duration_median_ape``,
    ``duration_ape_ratio`` (model / baseline; < 1 is better), the same for
    ``memory``, and ``rows_evaluated``.
    """
    predictions = predictor.predict(rows)
    baseline = predictor.predict_baseline(rows)
    out: dict[str, Any] = {"rows_evaluated": len(rows)}
    for label, column, pred, base in (
        ("duration", "duration_s", predictions.duration_s, baseline.duration_s),
        ("memory", "peak_memory_bytes", predictions.peak_memory_bytes, baseline.peak_memory_bytes),
    ):
        actual = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan) if column in rows else np.full(len(rows), np.nan)
        model_error = median_ape(pred, actual)
        base_error = median_ape(base, actual)
        out[f"{label}_median_ape"] = model_error
        out[f"baseline_{label}_median_ape"] = base_error
        out[f"{label}_ape_ratio"] = (model_error / base_error) if (model_error is not None and base_error) else None
        out[f"{label}_rows"] = int((np.isfinite(actual) & (actual > 0)).sum())
        upper = predictions.p90_duration_s if label == "duration" else predictions.p90_peak_memory_bytes
        ok = np.isfinite(actual) & (actual > 0) & np.isfinite(upper)
        out[f"{label}_p90_coverage"] = float(np.mean(actual[ok] <= upper[ok])) if ok.any() else None
    return out


#: A category is served by its mean instead of the model when the model lost on at least this many held-out rows.
MIN_FALLBACK_ROWS = 3


def baseline_categories(predictor: Any, rows: pd.DataFrame) -> dict[str, list[str]]:
    """Per target, the categories where the model's held-out median APE is worse than the category mean's.

    The served predictor answers those categories with the mean (quality
    ``prefix-mean``), so a model is never knowingly worse than the baseline
    for a category. Categories with fewer than :data:`MIN_FALLBACK_ROWS`
    held-out rows keep the model (too little evidence either way).
    """
    predictions = predictor.predict(rows)
    baseline = predictor.predict_baseline(rows)
    categories = rows["category"].astype(str).to_numpy() if "category" in rows else np.array([""] * len(rows))
    out: dict[str, list[str]] = {}
    for target, column, pred, base in (
        ("duration", "duration_s", predictions.duration_s, baseline.duration_s),
        ("peak_memory", "peak_memory_bytes", predictions.peak_memory_bytes, baseline.peak_memory_bytes),
    ):
        if column not in rows:
            continue
        actual = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        losers = []
        for category in sorted(set(categories)):
            mask = (categories == category) & np.isfinite(actual) & (actual > 0)
            if mask.sum() < MIN_FALLBACK_ROWS:
                continue
            model_error = median_ape(pred[mask], actual[mask])
            base_error = median_ape(base[mask], actual[mask])
            if model_error is not None and base_error is not None and model_error > base_error:
                losers.append(category)
        out[target] = losers
    return out


def _manifest_core(levels: list[str], means: dict[str, dict[str, Any]], boosters: Mapping[str, Any]) -> dict[str, Any]:
    import xgboost as xgb

    return {
        "format": MANIFEST_FORMAT,
        "feature_columns": list(FEATURE_COLUMNS),
        "category_levels": list(levels),
        "kind_levels": list(KIND_LEVELS),
        "targets": {
            t.name: {"column": t.column, "file": t.file if boosters.get(t.name) is not None else None, "transform": "log(y+0.001)" if t.name == "duration" else "log1p(y)"}
            for t in TARGETS
        },
        "baseline": {"category_means": means},
        "xgboost_version": xgb.__version__,
    }


def save_model(manifest: dict[str, Any], boosters: Mapping[str, Any], out_url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write boosters (UBJ) then ``manifest.json`` (last, atomic on local disk) to ``out_url``."""
    import fsspec.core

    fs, root = fsspec.core.url_to_fs(str(out_url), **dict(storage_options or {}))
    fs.makedirs(root, exist_ok=True)
    blobs: dict[str, bytes] = {}
    for target in TARGETS:
        booster = boosters.get(target.name)
        if booster is not None:
            blobs[target.name] = bytes(booster.save_raw(raw_format="ubj"))
    digest = hashlib.sha256(b"".join(blobs[k] for k in sorted(blobs))).hexdigest()[:12]
    now = _dt.datetime.now(_dt.timezone.utc)
    manifest["model_version"] = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}"
    manifest["created_at"] = now.isoformat()
    for target in TARGETS:
        entry = manifest["targets"][target.name]
        if target.name in blobs:
            entry["sha256"] = hashlib.sha256(blobs[target.name]).hexdigest()
            _write_atomic(fs, posixpath.join(root, target.file), blobs[target.name])
        else:
            entry["file"] = None
    _write_atomic(fs, posixpath.join(root, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True, default=_json_default).encode())
    return manifest


def _write_atomic(fs, path: str, data: bytes) -> None:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        temp = posixpath.join(posixpath.dirname(path), f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
        with fs.open(temp, "wb") as f:
            f.write(data)
        fs.mv(temp, path)
    else:  # object stores publish an object only once its upload is complete
        with fs.open(path, "wb") as f:
            f.write(data)


def _iso(seconds: Any) -> str | None:
    value = finite_float(seconds)
    return None if value is None else _dt.datetime.fromtimestamp(value, _dt.timezone.utc).isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if not np.isfinite(value) else float(value)
    return str(value)
