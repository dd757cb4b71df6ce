"""Tests for daskflow.catalog: round trips, lineage, data versions, staleness, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
import sqlite3
import threading

import pyarrow as pa
import pytest

from daskflow.catalog import (
    SCHEMA_VERSION,
    Catalog,
    CheckResultRow,
    Materialization,
    RunRecord,
    compute_data_version,
    data_locations_schema,
)
from daskflow.errors import CatalogError
from daskflow.storage import AssetStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        yield catalog


def _stored(path: str, rows: int = 1, host: str = "host-a", worker: str | None = None) -> dict:
    return {"path": path, "format": "parquet", "rows": rows, "bytes": 10 * rows, "schema": "v: int64",
            "host": host, "worker": worker}


# -- runs and events ---------------------------------------------------------------
def test_run_round_trip_and_history_newest_first(catalog):
    first = catalog.start_run(pipeline="etl", selection="+orders", partitions=["2024-01-01"], tags={"team": "x"})
    second = catalog.start_run(run_id="explicit", pipeline="ml")
    assert isinstance(first, RunRecord) and first.status == "running" and first.finished_at is None
    assert catalog.get_run(first.run_id) == first
    done = catalog.finish_run(first.run_id, "success")
    assert done.status == "success" and done.finished_at >= done.started_at and done.duration_s >= 0
    assert done.partitions == ["2024-01-01"] and done.tags == {"team": "x"} and done.selection == "+orders"
    assert [r.run_id for r in catalog.runs()] == ["explicit", first.run_id]
    assert [r.run_id for r in catalog.runs(limit=1)] == ["explicit"]
    assert [r.run_id for r in catalog.runs(pipeline="etl")] == [first.run_id]
    assert [r.run_id for r in catalog.runs(status="running")] == [second.run_id]
    assert catalog.get_run("nope") is None


def test_duplicate_run_and_unknown_run_are_clear_errors(catalog):
    catalog.start_run(run_id="r1")
    with pytest.raises(CatalogError, match="run 'r1' already exists"):
        catalog.start_run(run_id="r1")
    with pytest.raises(CatalogError, match="run 'ghost' is not in the catalog"):
        catalog.finish_run("ghost", "success")


def test_events_keep_order_payload_and_filter_by_kind(catalog):
    run = catalog.start_run()
    catalog.log_event(run.run_id, "asset-start", asset_key="a", partition="p1")
    catalog.log_event(run.run_id, "asset-failure", "boom", asset_key="a", partition="p1",
                      payload={"traceback": "Traceback...", "attempt": 2})
    catalog.log_events([{"run_id": run.run_id, "kind": "run-finish", "message": "done"}])
    catalog.log_event("other-run", "asset-start")
    events = catalog.events(run.run_id)
    assert [e.kind for e in events] == ["asset-start", "asset-failure", "run-finish"]
    assert events[1].payload == {"traceback": "Traceback...", "attempt": 2}
    assert events[1].message == "boom" and events[1].partition == "p1"
    assert [e.kind for e in catalog.events(run.run_id, kind="asset-failure")] == ["asset-failure"]


# -- materializations --------------------------------------------------------------
def test_materialization_round_trip_from_a_real_stored_object(catalog, tmp_path):
    store = AssetStore(str(tmp_path / "data"))
    run = catalog.start_run()
    stored = store.write("orders", pa.table({"v": [1, 2, 3]}), partition="2024-01-01", run_id=run.run_id)
    mid = catalog.record_materialization(run.run_id, "orders", stored, partition="2024-01-01",
                                         code_version="v1", duration_s=0.25)
    m = catalog.get_materialization(mid)
    assert isinstance(m, Materialization)
    assert (m.path, m.rows, m.bytes, m.schema, m.host, m.worker) == (
        stored.path, 3, stored.bytes, stored.schema, stored.host, None)
    assert m.code_version == "v1" and m.duration_s == 0.25
    assert m.data_version == compute_data_version("v1", [])
    assert catalog.latest_materialization("orders", "2024-01-01") == m
    assert catalog.latest_materialization("orders") is None  # the unpartitioned value
    assert catalog.latest_materialization("orders", any_partition=True) == m
    assert catalog.materializations(run_id=run.run_id) == [m]
    assert store.read(m.path).num_rows == 3


def test_latest_materializations_per_asset_partition(catalog):
    ids = {}
    for run in ("r1", "r2"):
        for partition in ("p1", "p2"):
            ids[run, partition] = catalog.record_materialization(run, "a", _stored(f"/{run}/{partition}"),
                                                                 partition=partition, code_version="1")
    ids["r1", None] = catalog.record_materialization("r1", "b", _stored("/b"), code_version="1")
    latest = catalog.latest_materializations()
    assert {k: m.id for k, m in latest.items()} == {
        ("a", "p1"): ids["r2", "p1"], ("a", "p2"): ids["r2", "p2"], ("b", None): ids["r1", None]}
    assert set(catalog.latest_materializations(["b"])) == {("b", None)}


def test_rejected_lineage_rolls_back_the_whole_materialization(catalog):
    with pytest.raises(CatalogError, match=r"upstream materialization ids \[999\]"):
        catalog.record_materialization("r", "a", _stored("/a"), upstream_ids=[999])
    assert catalog.materializations() == []
    with pytest.raises(CatalogError, match="has no 'path'"):
        catalog.record_materialization("r", "a", {"rows": 1})


# -- lineage -----------------------------------------------------------------------
def _diamond(catalog) -> dict[str, int]:
    """
        raw
       /   \\
    left   right
       \\   /
        report
    """
    ids = {"raw": catalog.record_materialization("r", "raw", _stored("/raw"), code_version="1")}
    ids["left"] = catalog.record_materialization("r", "left", _stored("/l"), code_version="1", upstream_ids=[ids["raw"]])
    ids["right"] = catalog.record_materialization("r", "right", _stored("/r"), code_version="1", upstream_ids=[ids["raw"]])
    ids["report"] = catalog.record_materialization("r", "report", _stored("/rep"), code_version="1",
                                                   upstream_ids=[ids["left"], ids["right"]])
    return ids


def test_lineage_upstream_and_downstream_through_a_diamond(catalog):
    ids = _diamond(catalog)
    upstream = catalog.lineage("report")
    assert [(n.materialization.asset_key, n.depth) for n in upstream] == [
        ("report", 0), ("left", 1), ("right", 1), ("raw", 2)]
    assert upstream[3].via_id == ids["left"]  # reached once, from the first path
    downstream = catalog.lineage(ids["raw"], direction="downstream")
    assert [(n.materialization.asset_key, n.depth) for n in downstream] == [
        ("raw", 0), ("left", 1), ("right", 1), ("report", 2)]
    assert [n.materialization.asset_key for n in catalog.lineage("report", depth=1)] == ["report", "left", "right"]
    assert catalog.upstream_ids(ids["report"]) == sorted([ids["left"], ids["right"]])


def test_lineage_of_unknown_things_is_a_clear_error(catalog):
    with pytest.raises(CatalogError, match="asset 'nope' has no materialization"):
        catalog.lineage("nope")
    with pytest.raises(CatalogError, match="materialization 5 is not in the catalog"):
        catalog.lineage(5)
    catalog.record_materialization("r", "a", _stored("/a"))
    with pytest.raises(CatalogError, match="direction 'sideways'"):
        catalog.lineage("a", direction="sideways")


# -- data versions and staleness ---------------------------------------------------
def test_data_version_is_stable_order_free_and_sensitive_to_code_and_inputs():
    assert compute_data_version("v1", ["b", "a"]) == compute_data_version("v1", ("a", "b"))
    assert compute_data_version("v1", {"x": "a", "y": "b"}) == compute_data_version("v1", ["b", "a"])
    assert compute_data_version("v1", ["a"]) != compute_data_version("v2", ["a"])
    assert compute_data_version("v1", ["a"]) != compute_data_version("v1", ["b"])
    # the documented formula, so versions stay comparable across processes and releases
    document = json.dumps(["v1", sorted(["b", "a"])]).encode()
    assert compute_data_version("v1", ["a", "b"]) == hashlib.sha256(document).hexdigest()[:16]
    assert len(compute_data_version(None, ["a"])) == 16


def test_recorded_data_versions_chain_through_lineage(catalog):
    ids = _diamond(catalog)
    raw, left, right, report = (catalog.get_materialization(ids[k]) for k in ("raw", "left", "right", "report"))
    assert left.data_version == compute_data_version("1", [raw.data_version])
    assert report.data_version == compute_data_version("1", [left.data_version, right.data_version])
    # no code version: the run id stands in, so every run is new data
    a = catalog.record_materialization("run-a", "x", _stored("/x1"))
    b = catalog.record_materialization("run-b", "x", _stored("/x2"))
    assert catalog.get_materialization(a).data_version != catalog.get_materialization(b).data_version


def test_staleness_reasons(catalog):
    assert catalog.is_stale("a", None, "1", []) == (True, "a was never materialized")
    raw = catalog.get_materialization(catalog.record_materialization("r1", "raw", _stored("/raw"), code_version="1"))
    catalog.record_materialization("r1", "a", _stored("/a"), partition="p", code_version="1", upstream_ids=[raw.id])
    stale, reason = catalog.is_stale("a", "p", "1", [raw.data_version])
    assert not stale and reason.startswith("a[p]: up to date")
    stale, reason = catalog.is_stale("a", "p", "2", [raw.data_version])
    assert stale and reason == "a[p]: code version changed from '1' to '2'"
    raw2 = catalog.get_materialization(catalog.record_materialization("r2", "raw", _stored("/raw2"), code_version="2"))
    stale, reason = catalog.is_stale("a", "p", "1", [raw2.data_version])
    assert stale and "upstream data changed" in reason
    stale, reason = catalog.is_stale("a", "p", None, [raw.data_version])
    assert stale and "no code_version" in reason


# -- checks ------------------------------------------------------------------------
def test_check_results_round_trip(catalog):
    catalog.record_check_result("r1", "orders", "not_empty", True, partition="p", blocking=True)
    catalog.record_check_result("r1", "orders", "fresh", False, message="3 days old", metadata={"age_days": 3})
    catalog.record_check_result("r2", "orders", "fresh", True)
    results = catalog.check_results("r1")
    assert all(isinstance(r, CheckResultRow) for r in results)
    assert [(r.check_name, r.passed, r.blocking, r.partition) for r in results] == [
        ("not_empty", True, True, "p"), ("fresh", False, False, None)]
    assert results[1].message == "3 days old" and results[1].metadata == {"age_days": 3}
    assert len(catalog.check_results(asset_key="orders")) == 3


# -- data locations ----------------------------------------------------------------
def test_data_locations_is_an_arrow_table_of_latest_locations(catalog):
    assert catalog.data_locations().schema.equals(data_locations_schema())
    assert catalog.data_locations().num_rows == 0
    catalog.record_materialization("r1", "a", _stored("/old", rows=1, host="h1"), partition="p1")
    newest = catalog.record_materialization("r2", "a", _stored("/new", rows=5, host="h2", worker="tcp://w:1"),
                                            partition="p1")
    catalog.record_materialization("r2", "b", _stored("/b", rows=2))
    table = catalog.data_locations()
    assert isinstance(table, pa.Table)
    assert table.schema.equals(data_locations_schema())
    assert table.column_names == ["asset_key", "partition", "path", "rows", "bytes", "host", "worker",
                                  "materialization_id", "created_at"]
    assert table.to_pylist()[0] | {"created_at": None} == {
        "asset_key": "a", "partition": "p1", "path": "/new", "rows": 5, "bytes": 50, "host": "h2",
        "worker": "tcp://w:1", "materialization_id": newest, "created_at": None}
    assert table.column("asset_key").to_pylist() == ["a", "b"]
    assert catalog.data_locations(["b"]).column("path").to_pylist() == ["/b"]


# -- file, schema version, defaults ------------------------------------------------
def test_default_path_wal_mode_and_schema_version(daskflow_home):
    catalog = Catalog()
    assert catalog.path == daskflow_home / "catalog.sqlite"
    catalog.start_run()
    with sqlite3.connect(catalog.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    catalog.close()
    with pytest.raises(CatalogError, match="newer than this daskflow understands"):
        Catalog(catalog.path).runs()


def test_pickled_catalog_reopens_the_same_file(catalog):
    run = catalog.start_run()
    clone = pickle.loads(pickle.dumps(catalog))
    assert clone.path == catalog.path and clone.get_run(run.run_id) == run


# -- concurrency -------------------------------------------------------------------
RUNS_PER_WRITER = 40


def _writer(path: str, writer: int, errors) -> None:
    try:
        catalog = Catalog(path)
        for i in range(RUNS_PER_WRITER):
            run = catalog.start_run(run_id=f"w{writer}-r{i}", pipeline="concurrent")
            catalog.log_event(run.run_id, "run-start")
            upstream = catalog.record_materialization(run.run_id, "raw", _stored(f"/raw/{writer}/{i}"),
                                                      partition=f"w{writer}", code_version="1")
            catalog.record_materialization(run.run_id, "report", _stored(f"/rep/{writer}/{i}"),
                                           partition=f"w{writer}", code_version="1", upstream_ids=[upstream])
            catalog.record_check_result(run.run_id, "report", "ok", True, partition=f"w{writer}")
            catalog.finish_run(run.run_id, "success")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        errors.put(f"writer {writer}: {exc!r}")
        raise


def test_concurrent_processes_write_runs_without_lock_errors(tmp_path):
    path = str(tmp_path / "shared.sqlite")  # brand new file: processes also race to create it
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    writers = [context.Process(target=_writer, args=(path, w, errors)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=50)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [p.exitcode for p in writers] == [0, 0, 0, 0]
    catalog = Catalog(path)
    runs = catalog.runs(limit=None)
    assert len(runs) == 4 * RUNS_PER_WRITER and {r.status for r in runs} == {"success"}
    assert len(catalog.materializations()) == 2 * 4 * RUNS_PER_WRITER
    assert len(catalog.check_results()) == 4 * RUNS_PER_WRITER
    assert catalog.data_locations(["report"]).num_rows == 4
    for node in (catalog.lineage("report")):
        if node.depth == 1:  # each report read the raw written in its own run
            assert node.materialization.run_id == catalog.get_materialization(node.via_id).run_id


def test_threads_share_one_catalog(catalog):
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                run = catalog.start_run(run_id=f"t{t}-{i}")
                catalog.log_event(run.run_id, "tick")
                catalog.finish_run(run.run_id, "success")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(catalog.runs(limit=None)) == 80


def test_a_forked_child_uses_its_own_connection(catalog):
    catalog.start_run(run_id="parent")  # the parent's connection is open now
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: catalog.start_run(run_id="child"))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert {r.run_id for r in catalog.runs()} == {"parent", "child"}
    catalog.start_run(run_id="parent-again")  # the parent's connection still works


def test_a_file_that_is_not_a_catalog_is_a_clear_error(tmp_path):
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="not a daskflow catalog .* move it away or set daskflow.catalog.path"):
        Catalog(path).runs()


def test_a_failed_batch_rolls_back_and_the_catalog_stays_usable(catalog):
    good = {"run_id": "r", "kind": "ok"}
    with pytest.raises(sqlite3.ProgrammingError):  # the 2nd event cannot be stored
        catalog.log_events([good, {"run_id": "r", "kind": "bad", "timestamp": object()}])
    assert catalog.events("r") == []  # the 1st event was rolled back with it
    catalog.log_events([good])
    assert [e.kind for e in catalog.events("r")] == ["ok"]


def test_numpy_numbers_from_task_metadata_are_stored_as_plain_numbers(catalog):
    import numpy as np

    mid = catalog.record_materialization("r", "a", {"path": "/a", "rows": np.int64(3), "bytes": np.int32(7)},
                                         duration_s=np.float64(0.5))
    m = catalog.get_materialization(mid)
    assert (m.rows, m.bytes, m.duration_s) == (3, 7, 0.5) and type(m.rows) is int
