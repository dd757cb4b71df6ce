"""The asset catalog, asset detail, partition grid and run timeline data (pure, and on a real SQLite catalog)."""

from __future__ import annotations

import pytest

from scheduler_plugins.dashboard.catalog_views import (
    CatalogViews,
    partition_status,
    with_live_data,
)
from scheduler_plugins.dashboard.run_timeline import (
    critical_path,
    run_ids_of,
    run_timeline,
)
from tests.dashboard.helpers import DAYS, make_partitioned_catalog

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def views(tmp_path):
    runs = make_partitioned_catalog(tmp_path)
    return CatalogViews(tmp_path / "catalog.sqlite", cache_s=0.0), runs


def test_partition_grid_shows_every_status(views):
    reader, _ = views
    detail = reader.asset("daily_revenue", running={("daily_revenue", DAYS[1])})
    statuses = {cell["partition"]: cell["status"] for cell in detail["partitions"]}
    assert statuses == {
        DAYS[0]: "materialized", DAYS[1]: "running", DAYS[2]: "check-failed", DAYS[3]: "failed",
        DAYS[4]: "stale", DAYS[5]: "missing", DAYS[6]: "stale",
    }
    assert detail["running"] == [DAYS[1]]


def test_asset_detail_history_checks_neighbourhood_versions(views):
    reader, (first, second) = views
    detail = reader.asset("daily_revenue", predictions={
        f"daily_revenue-{second}-{DAYS[0]}": {"predicted_duration_s": 0.25, "peak_memory_bytes": 4096}})
    assert len(detail["history"]) == 9 and detail["history"][-1]["run_id"] == second
    newest_day0 = [p for p in detail["history"] if p["run_id"] == second and p["partition"] == DAYS[0]][0]
    assert newest_day0["predicted_duration_s"] == 0.25 and newest_day0["peak_memory_bytes"] == 4096
    assert [(c["partition"], c["passed"]) for c in detail["checks"]] == [(DAYS[2], 0), (DAYS[0], 1)]
    assert detail["upstream"] == ["raw_orders"] and detail["downstream"] == []
    assert detail["latest"]["code_version"] == "2"
    assert reader.asset("raw_orders")["downstream"] == ["daily_revenue"]
    assert reader.asset("nothing")["note"] == "asset 'nothing' has no materializations in this catalog"


def test_catalog_is_one_pipeline_at_a_time(views, tmp_path):
    reader, (first, second) = views
    payload = reader.catalog()
    assert payload["pipeline"] == "daily" and payload["pipelines"] == ["daily"]
    by_asset = {a["asset"]: a for a in payload["assets"]}
    assert set(by_asset) == {"daily_revenue", "raw_orders"}
    assert by_asset["daily_revenue"]["status"] == "failed"  # a partition failed in the newest run
    assert by_asset["daily_revenue"]["partitions"] == 6 and by_asset["daily_revenue"]["code_version"] == "2"
    assert reader.catalog("other")["assets"] == []
    empty = CatalogViews(tmp_path / "nowhere.sqlite").catalog()
    assert empty["assets"] == [] and "no catalog" in empty["note"]


def test_partition_status_precedence():
    assert partition_status(materialized=True, failed_after=True, check_failed=True, stale=True, running=True) == "running"
    assert partition_status(materialized=True, failed_after=True, check_failed=True, stale=True, running=False) == "failed"
    assert partition_status(materialized=True, failed_after=False, check_failed=True, stale=True, running=False) == "check-failed"
    assert with_live_data({"asset": "a", "partitions": [], "history": []}, set(), {})["partitions"] == []


def test_run_timeline_lanes_predictions_stragglers_decisions_and_critical_path(views):
    reader, (first, _) = views
    parents = reader.run_inputs(first)
    key = lambda asset, day: f"{asset}-{first}-{day}"
    assert parents[key("daily_revenue", DAYS[0])] == [key("raw_orders", DAYS[0])]
    rows = [
        {"key": key("raw_orders", DAYS[0]), "run_id": first, "worker": "w1", "start_s": 100.0, "stop_s": 101.0,
         "predicted_duration_s": 1.0, "category": "raw_orders"},
        {"key": key("raw_orders", DAYS[1]), "run_id": first, "worker": "w2", "start_s": 100.0, "stop_s": 100.5,
         "predicted_duration_s": 0.5, "category": "raw_orders"},
        {"key": key("daily_revenue", DAYS[0]), "run_id": first, "worker": "w2", "start_s": 101.0, "stop_s": 104.0,
         "predicted_duration_s": 1.0, "category": "daily_revenue"},
        {"key": "other-run", "run_id": "zzz", "worker": "w1", "start_s": 0.0, "stop_s": 1.0},
    ]
    decisions = [{"key": key("daily_revenue", DAYS[0]), "action": "place", "worker": "w2", "time": 101.0,
                  "reason": "finish-time"}]
    timeline = run_timeline(rows, decisions, first, parents)
    assert timeline["workers"] == ["w1", "w2"] and len(timeline["tasks"]) == 3
    by_key = {t["key"]: t for t in timeline["tasks"]}
    late = by_key[key("daily_revenue", DAYS[0])]
    assert (late["start"], late["stop"], late["predicted_stop"], late["straggler"]) == (1.0, 4.0, 2.0, True)
    assert timeline["critical_path"] == [key("daily_revenue", DAYS[0]), key("raw_orders", DAYS[0])]
    assert not by_key[key("raw_orders", DAYS[1])]["critical"]
    assert timeline["decisions"] == [{"key": key("daily_revenue", DAYS[0]), "time": 1.0, "worker": "w2",
                                      "action": "place", "reason": "finish-time"}]
    assert run_ids_of(rows) == [first, "zzz"]
    assert critical_path({}, {}) == []
    assert run_timeline(rows, [], "none")["note"].startswith("no finished tasks")
