"""The timeline tables are a step of the catalog's ordered migrations (and stay idempotent)."""

import pathlib
import shutil
import sqlite3

from daskflow.catalog import SCHEMA_VERSION, Catalog
from daskflow.timeline.schema import TIMELINE_TABLES, migrate_timeline
from daskflow.timeline.store import TimelineStore

FIXTURE = pathlib.Path(__file__).parents[1] / "fixtures" / "catalog_v1.sqlite"


def _tables(path):
    with sqlite3.connect(path) as raw:
        return {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_opening_a_version_1_catalog_creates_the_timeline_tables_and_bumps_the_version(tmp_path):
    path = tmp_path / "catalog.sqlite"
    shutil.copyfile(FIXTURE, path)
    with Catalog(path) as catalog:
        assert catalog.get_run("run-v1").status == "failure"
    assert set(TIMELINE_TABLES) <= _tables(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2


def test_a_catalog_whose_timeline_tables_predate_the_migration_gains_the_new_columns(tmp_path):
    path = tmp_path / "catalog.sqlite"
    shutil.copyfile(FIXTURE, path)
    with sqlite3.connect(path) as raw:  # what phase-1 TimelineStore created by itself on a version-1 file
        raw.execute("CREATE TABLE timeline_schedules (name TEXT PRIMARY KEY, evaluated_until REAL NOT NULL, "
                    "updated_at REAL NOT NULL)")
        raw.execute("INSERT INTO timeline_schedules VALUES ('nightly', 1.0, 1.0)")
    store = TimelineStore(path)
    store.set_next_tick("timeline_schedules", "nightly", 42.0)
    assert store.schedule_cursor("nightly") == 1.0
    with sqlite3.connect(path) as raw:
        migrate_timeline(raw)  # still idempotent
        assert raw.execute("SELECT next_tick_at FROM timeline_schedules").fetchone()[0] == 42.0
