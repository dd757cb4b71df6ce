"""Features: one module, identical for training (history rows) and serving (annotations)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from daskflow.learning.features import (
    FEATURE_COLUMNS,
    category_levels,
    feature_frame,
    partition_features,
    record_from_annotations,
)
from daskflow.learning.history import append_history, read_history

pytestmark = pytest.mark.timeout(60)

ANNOTATIONS = {
    "run_id": "run-1",
    "kind": "asset",
    "category": "daily_sales",
    "asset": "daily_sales",
    "partition": "2024-03-05",
    "input_bytes": 123_456,
    "input_rows": 1000,
    "n_inputs": 2,
    "tags": {"team": "x"},
}


def serve_record(category: str = "daily_sales", **overrides) -> dict:
    annotations = dict(ANNOTATIONS, category=category, **overrides)
    return record_from_annotations(
        f"{category}-run-1", annotations, n_dependencies=2, dependency_bytes=5000,
        worker_threads=1, worker_memory_limit_bytes=2**30,
    )


def test_train_and_serve_features_identical_through_parquet(tmp_path):
    """The row a recorder writes, read back from Parquet, gives exactly the serving features."""
    served = serve_record()
    row = dict(served, recorded_at=1_700_000_000.0, duration_s=1.5, outcome="success", tags=ANNOTATIONS["tags"])
    append_history([row], str(tmp_path / "history"))
    history = read_history(str(tmp_path / "history"))
    levels = category_levels(history)
    train = feature_frame(history, categories=levels)
    serve = feature_frame([served], categories=levels)
    assert list(train.columns) == list(FEATURE_COLUMNS)
    pd.testing.assert_frame_equal(train, serve)
    assert train.loc[0, "category"] == "daily_sales"
    assert train.loc[0, "log_input_bytes"] == pytest.approx(math.log1p(123_456))


def test_unseen_category_is_missing_not_another_level():
    frame = feature_frame([serve_record("daily_sales"), serve_record("never_seen")], categories=["daily_sales", "other"])
    assert list(frame["category"].cat.categories) == ["daily_sales", "other"]
    assert frame["category"].isna().tolist() == [False, True]
    # codes stay stable: the level list, not the data, decides them
    assert frame["category"].cat.codes.tolist() == [0, -1]


def test_partition_features_dates_numbers_and_other_keys():
    year, month, day, dow, number, _bucket = partition_features("2024-03-05")
    assert (year, month, day, dow) == (2024, 3, 5, 1)  # a Tuesday
    assert math.isnan(number)
    assert partition_features("17")[4] == 17.0
    other = partition_features("eu-west")
    assert all(math.isnan(v) for v in other[:5]) and 0 <= other[5] < 1024
    assert partition_features("eu-west")[5] == other[5]  # stable hash


def test_plain_dask_task_is_categorised_by_key_prefix():
    record = record_from_annotations("inc-0123abcd", None, n_dependencies=0)
    assert record["category"] == "inc"
    assert record["kind"] == "dask"
    frame = feature_frame([record])
    assert frame.loc[0, "category"] == "inc"
    assert np.isnan(frame.loc[0, "log_input_bytes"])


def test_feature_frame_of_empty_input_has_the_columns():
    frame = feature_frame([], categories=["a"])
    assert list(frame.columns) == list(FEATURE_COLUMNS) and len(frame) == 0
