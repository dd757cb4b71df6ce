"""Ordered catalog migrations: a version-1 file made by the released code opens with nothing lost.

``tests/fixtures/catalog_v1.sqlite`` was written by the catalog code of
commit 080242d (schema version 1, before migrations were a list) with the
script in ``tests/fixtures/README.md``; it is copied before use, never
modified in place.
"""

from __future__ import annotations

import pathlib
import shutil
import sqlite3

import pytest

from daskflow import catalog_migrations
from daskflow.catalog import SCHEMA_VERSION, Catalog
from daskflow.errors import CatalogError

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "catalog_v1.sqlite"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def v1_file(tmp_path) -> pathlib.Path:
    path = tmp_path / "catalog.sqlite"
    shutil.copyfile(FIXTURE, path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    return path


def _user_version(path: pathlib.Path) -> int:
    with sqlite3.connect(path) as raw:
        return raw.execute("PRAGMA user_version").fetchone()[0]


def test_migrations_are_an_ordered_list_ending_at_the_schema_version():
    assert SCHEMA_VERSION == len(catalog_migrations.MIGRATIONS) >= 1


def test_a_version_1_catalog_opens_with_every_row_and_reaches_the_latest_version(v1_file):
    with Catalog(v1_file) as catalog:
        run = catalog.get_run("run-v1")
        assert (run.pipeline, run.selection, run.partitions, run.status) == ("etl", "+report", ["eu", "us"], "failure")
        assert run.tags == {"owner": "fixture"} and run.finished_at is not None
        assert catalog.get_run("run-v1-running").status == "running"
        orders = catalog.materializations(asset_key="orders")
        assert [(m.partition, m.rows, m.bytes, m.host) for m in orders] == [
            ("eu", 3, 300, "host-a"), ("us", 5, 500, "host-b")]
        assert orders[0].schema == "amount: int64" and orders[0].worker == "tcp://10.0.0.1:1"
        totals = catalog.latest_materialization("totals")
        assert totals.format == "json" and catalog.upstream_ids(totals.id) == [m.id for m in orders]
        assert [n.materialization.asset_key for n in catalog.lineage("totals")] == ["totals", "orders", "orders"]
        checks = catalog.check_results(run_id="run-v1")
        assert [(c.check_name, c.passed, c.blocking, c.message) for c in checks] == [
            ("totals_positive", True, False, "all positive"), ("no_nulls", False, True, "1 null")]
        assert checks[0].metadata == {"n": 2}
        assert [(e.kind, e.asset_key) for e in catalog.events("run-v1")] == [
            ("run-start", None), ("asset-success", "orders")]
        assert catalog.is_stale("orders", "eu", "1", [])[0] is False
        new = catalog.start_run(pipeline="after-upgrade")  # and it is writable
        assert catalog.get_run(new.run_id) is not None
    assert _user_version(v1_file) == SCHEMA_VERSION


def test_each_step_runs_once_in_order_in_its_own_transaction(v1_file, monkeypatch):
    applied: list[int] = []

    def v1_to_v2(conn):
        applied.append(1)
        conn.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY)")

    def v2_to_v3(conn):
        applied.append(2)
        conn.execute("ALTER TABLE extra ADD COLUMN note TEXT")

    monkeypatch.setattr(catalog_migrations, "MIGRATIONS", [*catalog_migrations.MIGRATIONS, v1_to_v2, v2_to_v3])
    with Catalog(v1_file) as catalog:
        assert len(catalog.runs()) == 2
    assert applied == [1, 2] and _user_version(v1_file) == SCHEMA_VERSION + 2
    with Catalog(v1_file) as catalog:  # already there: nothing runs again
        catalog.runs()
    assert applied == [1, 2]


def test_a_failing_step_leaves_the_file_at_the_last_completed_version(v1_file, monkeypatch):
    def v1_to_v2(conn):
        conn.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY)")

    def v2_to_v3(conn):
        conn.execute("CREATE TABLE half_done (id INTEGER)")
        raise sqlite3.OperationalError("migration bug")

    monkeypatch.setattr(catalog_migrations, "MIGRATIONS", [*catalog_migrations.MIGRATIONS, v1_to_v2, v2_to_v3])
    with pytest.raises(CatalogError, match="migration bug"):
        Catalog(v1_file).runs()
    assert _user_version(v1_file) == SCHEMA_VERSION + 1
    with sqlite3.connect(v1_file) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "extra" in tables and "half_done" not in tables and "runs" in tables


def test_a_brand_new_file_is_created_at_the_latest_version(tmp_path):
    with Catalog(tmp_path / "fresh.sqlite") as catalog:
        catalog.start_run(run_id="r")
    assert _user_version(tmp_path / "fresh.sqlite") == SCHEMA_VERSION
