"""The durable audit in the catalog file: decisions, stock placements, policy checks, retention, the report."""

from __future__ import annotations

import sqlite3

import pytest

from daskflow.audit import AuditStore, audit_report, migrate_audit, stock_decisions
from daskflow.catalog import Catalog
from daskflow.placement_rules import parse_rules, rules_for, task_constraints

RULES = parse_rules([{"match": {"classification": "pii"}, "allow": {"resources": ["secure"]}}])


def _decision(key, action="place", worker="tcp://10.0.0.5:1", run_id="r1", **extra):
    return {"key": key, "run_id": run_id, "action": action, "reason": "finish-time", "worker": worker,
            "predicted_duration_s": 1.5, "predicted_peak_memory_bytes": 10_000, "quality": "model",
            "model_version": "m-7", "alternatives": [{"worker": "tcp://10.0.0.7:1", "finish_s": 2.0}],
            "time": 100.0, **extra}


@pytest.fixture
def catalog(tmp_path):
    return Catalog(tmp_path / "catalog.sqlite")


def test_migration_is_idempotent_and_commits_nothing_itself(tmp_path):
    conn = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    migrate_audit(conn)
    migrate_audit(conn)
    assert conn.in_transaction  # a migration step: the caller commits
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'audit_%'").fetchone()[0] == 0
    conn.execute("BEGIN IMMEDIATE")
    migrate_audit(conn)
    conn.execute("COMMIT")
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {
        "audit_runs", "audit_decisions", "audit_policy"}


def test_decisions_survive_in_the_catalog_file_and_come_back_as_the_events_explain_reads(catalog):
    AuditStore(catalog).record_decisions("r1", [_decision("a"), _decision("b", action="hold", worker=None),
                                                _decision(None, action="priority", worker=None)])
    reopened = AuditStore(catalog.path)  # a new process after the cluster stopped
    story = reopened.decisions_for(key="a")
    assert story == [_decision("a")]
    assert [d["action"] for d in reopened.decisions_for(run_id="r1")] == ["place", "hold", "priority"]
    assert reopened.decisions_for(run_id="other") == []


def test_decisions_of_another_run_are_not_filed_under_this_one(catalog):
    store = AuditStore(catalog)
    assert store.record_decisions("r1", [_decision("a"), _decision("x", run_id="r2"), {"key": "c", "action": "place"}]) == 2
    assert [d["key"] for d in store.decisions_for(run_id="r1")] == ["a", "c"]
    assert store.decisions_for(run_id="r1")[1]["run_id"] == "r1"  # a decision without run_id takes the run's


def test_tasks_the_plugin_left_alone_are_recorded_as_placed_by_stock_dask(catalog):
    decisions = [_decision("a"), _decision("b", action="priority", worker=None)]
    stock = stock_decisions("r1", {"a": "tcp://10.0.0.5:1", "b": "tcp://10.0.0.7:1"}, decisions, now=5.0)
    assert stock == [{"key": "b", "run_id": "r1", "action": "stock", "reason": None, "worker": "tcp://10.0.0.7:1",
                      "time": 5.0}]
    store = AuditStore(catalog)
    store.record_decisions("r1", decisions + stock)
    report = store.report("r1")
    by_key = {t["key"]: t for t in report["tasks"]}
    assert by_key["a"]["decided_by"] == "daskflow-steering" and by_key["a"]["decision"]["model_version"] == "m-7"
    assert by_key["b"]["decided_by"] == "stock Dask" and by_key["b"]["worker"] == "tcp://10.0.0.7:1"
    assert report["counts"] == {"place": 1, "priority": 1, "stock": 1}


def test_the_report_says_what_ran_where_on_which_data_under_which_rule_decided_by_which_model(catalog):
    run = catalog.start_run(pipeline="clinic.py")
    rid = run.run_id
    up = catalog.record_materialization(rid, "patients", {"path": "/d/patients/x/r.parquet", "format": "parquet",
                                                          "rows": 3, "bytes": 10, "host": "10.0.0.5",
                                                          "worker": "tcp://10.0.0.5:1"}, code_version="v1")
    catalog.record_materialization(rid, "counts", {"path": "/d/counts/x/r.parquet", "format": "parquet", "rows": 1,
                                                   "bytes": 5, "host": "10.0.0.7", "worker": "tcp://10.0.0.7:1"},
                                   code_version="v1", upstream_ids=[up], duration_s=0.25)
    catalog.finish_run(rid, "success")
    matching = rules_for({"classification": "pii"}, RULES)
    store = AuditStore(catalog)
    store.record_policy_checks(rid, [
        {"key": f"patients-{rid}", "kind": "asset", "asset": "patients", "partition": None,
         "tags": {"classification": "pii"}, "rules": [r.describe() for r in matching],
         "constraints": task_constraints(matching), "allowed_workers": ["tcp://10.0.0.5:1"], "outcome": "constrained"},
        {"key": f"counts-{rid}", "kind": "asset", "asset": "counts", "partition": None, "tags": {}},
    ])
    store.record_decisions(rid, [_decision(f"patients-{rid}", run_id=rid),
                                 *stock_decisions(rid, {f"counts-{rid}": "tcp://10.0.0.7:1"}, [], now=1.0)])
    report = audit_report(rid, catalog.path)
    assert report["run"]["pipeline"] == "clinic.py" and report["run"]["status"] == "success"
    assert report["model_versions"] == ["m-7"]
    patients, counts = report["tasks"]
    assert patients["asset"] == "patients" and patients["worker"] == "tcp://10.0.0.5:1"
    assert patients["rules"] == ["rule 0 (classification=pii -> resources [secure])"]
    assert patients["constraints"]["allow_other_workers"] is False and patients["policy_outcome"] == "constrained"
    assert patients["decision"]["predicted_duration_s"] == 1.5 and patients["decided_by"] == "daskflow-steering"
    assert counts["policy_outcome"] == "unrestricted" and counts["decided_by"] == "stock Dask"
    assert counts["inputs"] == [{"asset": "patients", "partition": None, "path": "/d/patients/x/r.parquet",
                                 "data_version": catalog.get_materialization(up).data_version}]
    assert counts["duration_s"] == 0.25 and counts["path"] == "/d/counts/x/r.parquet"


def test_retention_keeps_the_newest_max_runs(catalog):
    store = AuditStore(catalog, max_runs=3)
    for i in range(5):
        store.record_decisions(f"r{i}", [_decision("k", run_id=f"r{i}")])
        store.record_policy_checks(f"r{i}", [{"key": "k", "asset": "a"}])
    assert store.runs() == ["r4", "r3", "r2"]
    assert {d["run_id"] for d in store.decisions_for()} == {"r2", "r3", "r4"}
    assert {c["run_id"] for c in store.policy_checks()} == {"r2", "r3", "r4"}


def test_max_runs_comes_from_config(catalog):
    import dask.config

    with dask.config.set({"daskflow.audit.max-runs": 7}):
        assert AuditStore(catalog).max_runs == 7


def test_the_audit_tables_live_beside_the_catalogs_own(catalog):
    catalog.start_run(run_id="r1", pipeline="p")
    AuditStore(catalog).record_decisions("r1", [_decision("a")])
    assert catalog.get_run("r1").pipeline == "p"  # the catalog still opens and reads its file
    Catalog(catalog.path).start_run(run_id="r2")
    assert len(AuditStore(catalog.path).decisions_for()) == 1


def test_an_audit_store_on_an_unwritable_path_is_a_one_line_catalog_error(tmp_path):
    from daskflow.errors import CatalogError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CatalogError, match="cannot open the catalog") as info:
        AuditStore(blocker / "catalog.sqlite").record_decisions("r1", [_decision("a")])
    assert "\n" not in str(info.value)


def test_the_report_reads_as_text_for_the_cli(catalog):
    from daskflow.audit import format_audit_report

    store = AuditStore(catalog)
    store.record_policy_checks("r1", [{"key": "p-r1", "kind": "asset", "asset": "patients", "partition": "2024",
                                       "rules": ["rule 0 (classification=pii -> resources [secure])"],
                                       "outcome": "constrained"}])
    store.record_decisions("r1", [_decision("p-r1")])
    text = format_audit_report(store.report("r1"))
    assert "patients[2024] (asset) on tcp://10.0.0.5:1; placed by daskflow-steering (model m-7, place: finish-time)" \
        in text
    assert "policy: constrained by rule 0 (classification=pii -> resources [secure])" in text
    assert "predicted 1.5 s vs actual ?" in text


def test_an_existing_version_1_catalog_gains_the_audit_tables(tmp_path):
    import pathlib
    import shutil

    fixture = pathlib.Path(__file__).parent / "fixtures" / "catalog_v1.sqlite"
    if not fixture.exists():
        pytest.skip("no version-1 catalog fixture")
    path = tmp_path / "catalog.sqlite"
    shutil.copy(fixture, path)
    before = {r.run_id for r in Catalog(path).runs()}
    store = AuditStore(path)
    store.record_decisions("r1", [_decision("a")])
    assert [d["key"] for d in store.decisions_for(run_id="r1")] == ["a"]
    assert {r.run_id for r in Catalog(path).runs()} == before  # the catalog's rows are untouched
