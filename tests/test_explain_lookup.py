"""`daskflow explain` finds any task and tells the truth without a cluster (catalog + durable audit)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from daskflow.audit import AuditStore
from daskflow.catalog import Catalog
from daskflow.cli import main
from daskflow.errors import DaskflowError
from daskflow.explain import run_summary, story_for, summarize
from daskflow.explain_lookup import resolve_target, why_no_decision

RUN = "1442602d92b74c9f8b4e9d720ada564a"
OLD = "0a0a0a0a0a0a4c9f8b4e9d720ada5640"
DAYS = ("2024-01-01", "2024-01-02")


@pytest.fixture
def catalog(daskflow_home):
    catalog = Catalog()
    for run_id in (OLD, RUN):
        catalog.start_run(run_id, pipeline="etl.py")
        catalog.log_event(run_id, "asset-success", asset_key="raw/orders", partition=DAYS[0])
        catalog.log_event(run_id, "asset-success", asset_key="raw/orders", partition=DAYS[1])
        catalog.log_event(run_id, "asset-success", asset_key="report")
        catalog.finish_run(run_id, "success")
    AuditStore(catalog).record_decisions(RUN, [
        {"key": None, "action": "priority", "reason": "critical-path", "run_id": RUN, "n_tasks": 3, "n_held": 1,
         "hold_threshold_s": 0.08, "time": 1.0},
        {"key": f"report-{RUN}", "action": "place", "reason": "finish-time", "worker": "tcp://w:1", "run_id": RUN,
         "predicted_duration_s": 2.0, "quality": "model", "model_version": "m7", "time": 2.0, "alternatives": []},
        {"key": f"raw/orders-{RUN}-{DAYS[0]}", "action": "stock", "worker": "tcp://w:2", "run_id": RUN, "time": 3.0,
         "predicted_duration_s": 0.02, "quality": "prefix-mean"},
    ])
    return catalog


def test_resolve_asset_key_run_prefix_and_full_key(catalog):
    assert resolve_target("report", catalog=catalog).key == f"report-{RUN}"  # default: the last run that ran it
    assert resolve_target("report", run=OLD[:12], catalog=catalog).key == f"report-{OLD}"
    assert resolve_target("orders", partition=DAYS[1], catalog=catalog).key == f"raw/orders-{RUN}-{DAYS[1]}"
    assert resolve_target(f"raw/orders-{RUN[:12]}-{DAYS[0]}", catalog=catalog).key == f"raw/orders-{RUN}-{DAYS[0]}"
    full = resolve_target(f"report-{OLD}", catalog=catalog)
    assert (full.run_id, full.asset, full.partition) == (OLD, "report", None)
    with pytest.raises(DaskflowError, match="ran 2 partitions in run 1442602d92b7; pass --partition, e.g. "
                                            "--partition 2024-01-01"):
        resolve_target("orders", catalog=catalog)
    with pytest.raises(DaskflowError, match="no partition '2024-02-01'"):
        resolve_target("orders", partition="2024-02-01", catalog=catalog)
    with pytest.raises(DaskflowError, match="no run with id starting 'ffff'"):
        resolve_target("report", run="ffff", catalog=catalog)
    assert resolve_target("work-3", catalog=catalog).key == "work-3"  # a raw Dask key passes through


def test_why_no_decision_says_exactly_why():
    graph = [{"key": None, "action": "priority", "reason": "critical-path", "n_tasks": 4, "n_held": 1,
              "hold_threshold_s": 0.08}]
    assert why_no_decision(graph, 0.02) == ("left to Dask: predicted 0.02 s < hold threshold 0.08 s "
                                            "(critical-path priority set; 1 of 4 tasks placed late)")
    no_threshold = [{"key": None, "action": "priority", "reason": "critical-path-only", "n_tasks": 4, "n_held": 0}]
    assert why_no_decision(no_threshold, 0.02) == (
        "left to Dask with a critical-path priority: too short or small to place late (0 of 4 tasks placed late; "
        "the threshold is not in the decision events)")
    assert why_no_decision([{"key": None, "action": "priority", "reason": "no-information"}], 0.5) == (
        "left to Dask: nothing learned yet for any task of its graph (all predictions were defaults)")
    assert why_no_decision([], None, source="audit") == (
        "no decision recorded: the durable audit has no steering rows for this run")
    assert why_no_decision([], None, state={"mode": "off"}).startswith("steering is off")


def test_explain_without_a_cluster_reads_the_audit(catalog):
    story = story_for("report", catalog=catalog)
    assert story["decisions_source"] == "audit" and story["placements"][0]["worker"] == "tcp://w:1"
    stock = story_for("orders", partition=DAYS[0], catalog=catalog)
    assert stock["stock_worker"] == "tcp://w:2" and stock["quality"] == "prefix-mean"
    assert stock["no_decision_reason"] == ("left to Dask: predicted 0.02 s < hold threshold 0.08 s "
                                           "(critical-path priority set; 1 of 3 tasks placed late)")
    result = CliRunner().invoke(main, ["explain", "orders", "-p", DAYS[0]])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"task raw/orders-{RUN}-{DAYS[0]}  (run {RUN})",
        "  (no scheduler reachable: decisions from the durable audit in the catalog)",
        "  not placed by steering: left to Dask: predicted 0.02 s < hold threshold 0.08 s (critical-path priority "
        "set; 1 of 3 tasks placed late)",
        "  predicted: duration 0.020 s, peak memory unknown  [per-category running mean, model none; as steering saw it]",
        "  where:     stock Dask placed it on tcp://w:2",
    ]
    bad = CliRunner().invoke(main, ["explain", "orders"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: asset 'raw/orders' ran 2 partitions")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_task_without_any_prediction_gets_one_computed_now_never_a_question_mark(catalog):
    story = story_for(f"report-{OLD}", catalog=catalog)
    assert story["predicted_duration_s"] is not None and story["prediction_source"] == "computed-now"
    assert story["quality"] == "default"
    text = CliRunner().invoke(main, ["explain", "report", "--run", OLD[:12]]).stdout
    assert "?" not in text
    assert "[the default, model none; computed now, not what steering saw]" in text
    assert "no decision recorded: the durable audit has no steering rows for this run" in text


def test_decisions_report_median_ape_and_the_ratio_to_the_running_mean():
    decisions = [{"key": f"k{i}", "action": "place", "predicted_duration_s": 1.0, "quality": "model"} for i in range(4)]
    rows = [{"key": f"k{i}", "category": "c", "duration_s": d, "stop_s": i} for i, d in enumerate([1.0, 1.0, 2.0, 1.0])]
    summary = summarize(decisions, rows)
    # model errors 0, 0, 0.5, 0; running mean (none), 1.0, 1.0, 1.333: errors 0, 0.5, 0.333
    assert summary["duration_median_ape"] == pytest.approx(0.0)
    assert summary["duration_baseline_median_ape"] == pytest.approx(1 / 3)
    assert summary["duration_error_ratio"] == pytest.approx(0.0)  # model errors 0, 0.5, 0 on the same 3 rows
    assert summary["prediction_quality"] == {"model": 4}


def test_decisions_cli_without_a_cluster_uses_the_last_audited_run(catalog):
    summary = run_summary(catalog=catalog)
    assert summary["run_id"] == RUN and summary["decisions"] == 3 and summary["source"] == "audit"
    result = CliRunner().invoke(main, ["decisions", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steered_tasks"] == 1
    text = CliRunner().invoke(main, ["decisions", "--run", RUN[:12]]).stdout
    assert text.splitlines()[0] == f"steering decisions for run {RUN}: 3"
    assert "    duration:    -, baseline -, ratio -" in text
