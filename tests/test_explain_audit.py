"""The explain side of the audit: one-line answers for unknown names, stock-only runs, short thresholds."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from daskflow.audit import AuditStore
from daskflow.catalog import Catalog
from daskflow.cli import main
from daskflow.errors import DaskflowError
from daskflow.explain import story_for
from daskflow.explain_lookup import resolve_target, unknown_target, why_no_decision

RUN = "2442602d92b74c9f8b4e9d720ada564a"   # steered: a priority decision with the thresholds
OFF = "3a0a0a0a0a0a4c9f8b4e9d720ada5640"   # steering off: only the stock rows the client wrote


@pytest.fixture
def catalog(daskflow_home):
    catalog = Catalog()
    for run_id in (OFF, RUN):
        catalog.start_run(run_id, pipeline="etl.py")
        catalog.log_event(run_id, "asset-success", asset_key="daily_revenue", partition="2024-01-01")
        catalog.finish_run(run_id, "success")
    store = AuditStore(catalog)
    store.record_decisions(OFF, [{"key": f"daily_revenue-{OFF}-2024-01-01", "action": "stock",
                                  "worker": "tcp://w:2", "run_id": OFF, "time": 1.0}])
    store.record_decisions(RUN, [{"key": None, "action": "priority", "reason": "critical-path", "run_id": RUN,
                                  "n_tasks": 2, "n_held": 1, "hold_threshold_s": 0.005,
                                  "memory_floor_bytes": None, "time": 1.0}])
    return catalog


def test_unknown_asset_is_one_line_with_the_closest_name(catalog):
    result = CliRunner().invoke(main, ["explain", "daily_revenu"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        (f"error: no asset, task or run 'daily_revenu' is known in {catalog.path}; did you mean 'daily_revenue'? "
         "list them with `daskflow runs`")]
    with pytest.raises(DaskflowError, match=r"no asset 'daily_revenu' in run 2442602d92b7; did you mean "
                                            r"'daily_revenue'\?"):
        resolve_target(f"daily_revenu-{RUN[:12]}-2024-01-01", catalog=catalog)
    assert "did you mean" not in str(unknown_target("zzz", catalog))


def test_a_run_with_steering_off_is_placed_by_stock_dask(catalog):
    story = story_for("daily_revenue", run_id=OFF[:12], partition="2024-01-01", catalog=catalog)
    assert story["no_decision_reason"] == ("placed by stock Dask (no steering decision for its run: steering off "
                                           "or not installed)")
    assert story["stock_worker"] == "tcp://w:2"


def test_short_thresholds_are_not_rounded_to_zero():
    graph = [{"key": None, "action": "priority", "reason": "critical-path", "n_tasks": 2, "n_held": 1,
              "hold_threshold_s": 0.005, "memory_floor_bytes": None}]
    assert why_no_decision(graph, 0.0014).startswith("left to Dask: predicted 0.0014 s < hold threshold 0.005 s (")
    assert why_no_decision(graph, 1.234).startswith("left to Dask although predicted 1.23 s >= hold threshold 0.005 s")
