"""Planning is pure: plans built from plain catalog facts, with no catalog file and no cluster."""

from __future__ import annotations

import pytest

from daskflow.catalog_records import Materialization, compute_data_version
from daskflow.definitions import Definitions, asset, asset_check
from daskflow.errors import SelectionError
from daskflow.graph import build_asset_graph
from daskflow.planning import CatalogFacts, build_task_specs, plan_run, select_run, task_key
from daskflow.storage import AssetStore


@asset(code_version="1", io="json")
def raw():
    return [1, 2]


@asset(code_version="1", io="json", tags={"team": "a"})
def clean(raw):
    return raw


@asset_check(asset=clean, blocking=True)
def clean_ok(clean):
    return True


@asset(code_version="1", io="json")
def report(clean):
    return len(clean)


GRAPH = build_asset_graph(Definitions(assets=[raw, clean, clean_ok, report]))


def _materialization(asset_key: str, id: int, data_version: str, code_version: str = "1",
                     host: str = "h1", nbytes: int = 10) -> Materialization:
    return Materialization(id=id, run_id="old", asset_key=asset_key, partition=None, path=f"/d/{asset_key}",
                           format="json", rows=2, bytes=nbytes, schema=None, host=host, worker=None,
                           code_version=code_version, data_version=data_version, duration_s=0.1, created_at=0.0)


def test_a_plan_orders_nodes_and_makes_downstream_wait_for_blocking_checks():
    """raw -> clean -> [clean_ok, blocking] -> report"""
    plan = plan_run(GRAPH, select_run(GRAPH, None, None), "r1", CatalogFacts())
    assert [(n.kind, n.asset) for n in plan.nodes.values()] == [
        ("asset", "raw"), ("asset", "clean"), ("check", "clean"), ("asset", "report")]
    report_node = plan.asset_nodes[("report", None)]
    assert report_node.upstream_keys == [task_key("clean", None, "r1"), task_key("clean", None, "r1", "clean_ok")]
    assert plan.stale_skipped == [] and plan.totals() == {"raw": 1, "clean": 1, "report": 1}


def test_an_unmaterialized_outside_input_is_refused_from_facts_alone():
    with pytest.raises(SelectionError, match="'raw'.*never been materialized"):
        plan_run(GRAPH, select_run(GRAPH, "clean", None), "r1", CatalogFacts())


def test_only_stale_skips_from_the_facts_and_reads_the_stored_input():
    raw_version = compute_data_version("1", [])
    clean_version = compute_data_version("1", [raw_version])
    facts = CatalogFacts.from_latest({("raw", None): _materialization("raw", 1, raw_version, nbytes=7),
                                      ("clean", None): _materialization("clean", 2, clean_version)})
    plan = plan_run(GRAPH, select_run(GRAPH, None, None), "r2", facts, only_stale=True)
    assert [(r.asset, r.status, r.materialization_id) for r in plan.stale_skipped] == [
        ("raw", "stale-skipped", 1), ("clean", "stale-skipped", 2)]
    assert list(plan.asset_nodes) == [("report", None)]
    report_node = plan.asset_nodes[("report", None)]
    assert report_node.inputs[0][2] == [(None, ("path", ("/d/clean", "json")))]
    assert report_node.data_version == compute_data_version("1", [clean_version])


def test_task_annotations_carry_input_sizes_locations_and_tags():
    facts = CatalogFacts.from_latest({("raw", None): _materialization("raw", 1, "v", host="h9", nbytes=40)})
    plan = plan_run(GRAPH, select_run(GRAPH, "clean*", None), "r3", facts)
    specs = {t.key: t for t in build_task_specs(plan, AssetStore("/tmp/unused-store"), {"owner": "me"})}
    annotation = specs[task_key("clean", None, "r3")].annotations
    assert annotation["category"] == "clean" and annotation["kind"] == "asset"
    assert (annotation["input_bytes"], annotation["input_rows"], annotation["n_inputs"]) == (40, 2, 1)
    assert annotation["input_locations"] == [{"host": "h9", "bytes": 40}]
    assert annotation["tags"] == {"owner": "me", "team": "a"}
    check = specs[task_key("clean", None, "r3", "clean_ok")].annotations
    assert check["kind"] == "check" and check["category"] == "clean.check.clean_ok"
