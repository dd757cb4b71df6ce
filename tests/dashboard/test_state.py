"""Pure tests of the dashboard's bounded aggregates, lineage layout and JSON cleaning."""

from __future__ import annotations

import json
import math

import pytest

from scheduler_plugins.dashboard.assets import layout_lineage
from scheduler_plugins.dashboard.extension import dumps
from scheduler_plugins.dashboard.state import (
    OTHER_CATEGORY,
    DashboardState,
    absolute_percentage_error,
    format_alternatives,
    recent_decisions,
    steering_summary,
)

pytestmark = pytest.mark.timeout(30)


def row(category="load", duration_s=1.0, predicted=None, peak=100, predicted_peak=None, outcome="success", key="k"):
    return {
        "key": key,
        "category": category,
        "duration_s": duration_s,
        "predicted_duration_s": predicted,
        "peak_memory_bytes": peak,
        "predicted_peak_memory_bytes": predicted_peak,
        "outcome": outcome,
        "recorded_at": 1.0,
    }


def test_new_rows_sees_each_row_once_in_a_bounded_deque():
    from collections import deque

    recent = deque(maxlen=3)
    state = DashboardState()
    a, b, c, d = (row(key=x) for x in "abcd")
    recent.extend([a, b])
    assert state.new_rows(recent) == [a, b]
    assert state.new_rows(recent) == []
    recent.extend([c, d])  # a evicted; b is still there
    assert state.new_rows(recent) == [c, d]


def test_new_rows_after_the_last_seen_row_was_evicted_takes_everything():
    from collections import deque

    recent = deque(maxlen=2)
    state = DashboardState()
    recent.append(row(key="a"))
    state.new_rows(recent)
    recent.extend([row(key="b"), row(key="c")])
    assert [r["key"] for r in state.new_rows(recent)] == ["b", "c"]


def test_category_means_and_predicted_pairs():
    state = DashboardState()
    state.ingest([row(duration_s=1.0, predicted=1.5, predicted_peak=200), row(duration_s=3.0, predicted=2.5), row(category="x", duration_s=2.0)])
    payload = state.predictions_payload()
    by_category = {c["category"]: c for c in payload["categories"]}
    assert by_category["load"]["count"] == 2
    assert by_category["load"]["mean_duration_s"] == pytest.approx(2.0)
    assert by_category["load"]["mean_predicted_duration_s"] == pytest.approx(2.0)
    assert by_category["load"]["mean_predicted_peak_memory_bytes"] == pytest.approx(200)
    assert by_category["x"]["predicted_count"] == 0
    assert len(payload["points"]) == 3


def test_errored_rows_and_rows_without_duration_are_skipped():
    state = DashboardState()
    assert state.ingest([row(outcome="error"), row(duration_s=None)]) == 0
    assert state.rows_seen == 0


def test_points_and_categories_are_bounded():
    state = DashboardState(max_points=10, max_categories=3)
    state.ingest(row(category=f"c{i}", predicted=1.0) for i in range(100))
    assert len(state.points) == 10
    assert len(state.categories) == 4  # 3 + "(other)"
    assert state.categories[OTHER_CATEGORY].count == 97


def test_baseline_is_the_running_mean_before_each_row():
    state = DashboardState(window=10)
    # durations 1, 3: baseline for the second row is 1.0 (mean of rows before it)
    state.ingest([row(duration_s=1.0, predicted=1.0), row(duration_s=3.0, predicted=3.0)])
    (model_1, baseline_1), (model_2, baseline_2) = state.scored
    assert model_1 == model_2 == 0.0
    assert baseline_1 == pytest.approx(absolute_percentage_error(0.5, 1.0))  # Dask's 0.5 s default first
    assert baseline_2 == pytest.approx(absolute_percentage_error(1.0, 3.0))


def test_drift_warning_when_model_stops_beating_the_baseline():
    good = DashboardState(window=20)
    # steady 1 s tasks: baseline converges to 1.0, model is perfect
    good.ingest(row(duration_s=1.0, predicted=1.0) for _ in range(20))
    assert good.close_tick() is not None
    assert good.drift()["warning"] is False

    drifting = DashboardState(window=20)
    drifting.ingest(row(duration_s=1.0, predicted=4.0) for _ in range(20))  # model 300% off, baseline ~0
    verdict = drifting.drift()
    assert verdict["warning"] is True
    assert verdict["model_error"] > verdict["baseline_error"]
    assert "retrain" in verdict["message"]


def test_no_drift_verdict_without_enough_data():
    state = DashboardState(window=50)
    state.ingest(row(duration_s=1.0, predicted=9.0) for _ in range(5))
    assert state.drift()["warning"] is False
    assert "not enough" in state.drift()["message"]


def test_quality_series_gets_a_point_only_when_new_rows_were_scored():
    state = DashboardState(window=5)
    state.ingest([row(predicted=1.0)])
    assert state.close_tick(now=10.0)["time"] == 10.0
    assert state.close_tick(now=11.0) is None
    state.ingest([row(predicted=None)])  # unscored row
    assert state.close_tick(now=12.0) is None
    assert [p["time"] for p in state.quality_payload()["series"]] == [10.0]


class FakeScheduler:
    def __init__(self, plugins):
        self.plugins = plugins


class FakeSteering:
    mode = "shadow"
    model_version = "v7"
    fallback_count = 3

    def __init__(self, n):
        from collections import deque

        self.decisions = deque(({"key": f"k{i}", "reason": "finish-time"} for i in range(n)), maxlen=1000)


def test_steering_summary_and_decisions_without_and_with_plugin():
    empty = FakeScheduler({})
    assert steering_summary(empty)["mode"] == "absent"
    assert recent_decisions(empty, 10) == []
    scheduler = FakeScheduler({"daskflow-steering": FakeSteering(500)})
    assert steering_summary(scheduler) == {"present": True, "mode": "shadow", "model_version": "v7", "fallback_count": 3, "recorder": False}
    decisions = recent_decisions(scheduler, 3)
    assert [d["key"] for d in decisions] == ["k499", "k498", "k497"]  # newest first, bounded


def test_format_alternatives():
    alternatives = [{"worker": "tcp://a:1", "score": 0.5}, {"worker": "tcp://b:2", "score": 1.25}, {"worker": "c"}]
    assert format_alternatives(alternatives, limit=2) == "tcp://a:1 0.5 | tcp://b:2 1.25 | +1"
    assert format_alternatives(None) == ""


def test_layout_lineage_layers_by_longest_path():
    """
    raw -> clean -> report
       \\________/
    """
    positions = layout_lineage(["raw", "clean", "report", "other"], [("raw", "clean"), ("clean", "report"), ("raw", "report")])
    assert positions["raw"][0] == 0 and positions["clean"][0] == 1 and positions["report"][0] == 2
    assert positions["other"][0] == 0
    assert positions["raw"][1] != positions["other"][1]


def test_layout_lineage_survives_a_cycle():
    positions = layout_lineage(["a", "b"], [("a", "b"), ("b", "a")])
    assert set(positions) == {"a", "b"}


def test_json_dumps_is_strict_json():
    import numpy as np

    text = dumps({"a": float("nan"), "b": (1, np.float64(2.5)), "c": object, "d": {1: math.inf}})
    assert json.loads(text) == {"a": None, "b": [1, 2.5], "c": str(object), "d": {"1": None}}


def test_peak_memory_is_scored_against_its_own_running_mean():
    state = DashboardState(window=10)
    state.ingest([
        row(peak=4096, predicted_peak=4096),  # baseline before: 0 bytes -> error 1.0
        row(peak=8192, predicted_peak=4096),  # baseline before: 4096 -> error 0.5
        row(peak=8192, predicted_peak=None),  # not scored, but updates the mean
    ])  # fmt: skip
    assert list(state.scored_memory) == [(0.0, 1.0), (0.5, 0.5)]
    assert state.memory_baseline["load"] == (3, pytest.approx(6826.666, rel=1e-4))
    point = state.close_tick(now=1.0)
    assert point["memory_model_error"] == pytest.approx(0.25) and point["memory_baseline_error"] == pytest.approx(0.75)
    assert point["model_error"] is None  # no duration predictions in these rows
