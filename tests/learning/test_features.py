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


def test_graph_positions_depth_and_fan_out_of_a_diamond():
    r"""
        a
       / \
      b   c
       \ / \
        d   e      (f: a parent outside the graph is ignored)
    """
    from daskflow.learning.features import graph_positions

    positions = graph_positions({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["c", "f-outside"]})
    assert {k: v["depth"] for k, v in positions.items()} == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 2}
    assert {k: v["n_dependents"] for k, v in positions.items()} == {"a": 2, "b": 1, "c": 2, "d": 0, "e": 0}


def test_replay_harness_annotates_graph_positions():
    from daskflow.daskgraph import annotations_of
    from daskflow.replay.harness import _build_specs
    from daskflow.replay.trace import trace_from_dict

    trace = trace_from_dict({"name": "t", "tasks": [
        {"id": "x", "category": "load", "runtime_s": 1.0, "parents": []},
        {"id": "y", "category": "fit", "runtime_s": 1.0, "parents": ["x"]},
        {"id": "z", "category": "fit", "runtime_s": 1.0, "parents": ["x"]}]})
    specs, keys, _ = _build_specs(trace, "run-1", 1.0, 1.0)
    by_key = {spec.key: annotations_of(spec.annotations) or spec.annotations for spec in specs}
    assert (by_key[keys[0]]["depth"], by_key[keys[0]]["n_dependents"]) == (0, 2)
    assert (by_key[keys[1]]["depth"], by_key[keys[1]]["n_dependents"]) == (1, 0)


def test_planner_annotates_graph_positions():
    """first -> second -> [second_ok, blocking] -> third"""
    from daskflow.definitions import Definitions, asset, asset_check
    from daskflow.graph import build_asset_graph
    from daskflow.planning import (
        CatalogFacts,
        build_task_specs,
        plan_run,
        select_run,
        task_key,
    )
    from daskflow.storage import AssetStore

    @asset(io="json")
    def first():
        return 1

    @asset(io="json")
    def second(first):
        return first

    @asset_check(asset=second, blocking=True)
    def second_ok(second):
        return True

    @asset(io="json")
    def third(second):
        return second

    graph = build_asset_graph(Definitions(assets=[first, second, second_ok, third]))
    plan = plan_run(graph, select_run(graph, None, None), "r1", CatalogFacts())
    specs = {t.key: t.annotations for t in build_task_specs(plan, AssetStore("/tmp/unused-store"), {})}
    position = {key: (a["depth"], a["n_dependents"]) for key, a in specs.items()}
    assert position[task_key("first", None, "r1")] == (0, 1)
    assert position[task_key("second", None, "r1")] == (1, 2)  # the check and third
    assert position[task_key("second", None, "r1", "second_ok")] == (2, 1)
    assert position[task_key("third", None, "r1")] == (3, 0)
