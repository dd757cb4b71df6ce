"""One attempt, one file, one row (#16.2) and runs always end (#16.3): the pure and catalog-level parts.

The real-process halves (a SIGKILLed worker, a SIGKILLed client) are in
``test_kills.py``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sqlite3
import time

import pytest

from daskflow.catalog import SCHEMA_VERSION, Catalog
from daskflow.errors import CatalogError, StorageError
from daskflow.gc import collect_garbage
from daskflow.run_loop import MetadataRouter
from daskflow.storage import AssetStore, run_id_of_file

FIXTURE = pathlib.Path(__file__).parent.parent / "fixtures" / "catalog_v1.sqlite"


def _event(key: str, attempt: str, rows: int = 1) -> tuple[float, dict]:
    return (0.0, {"key": key, "run_id": "r", "attempt": attempt, "path": f"/d/{key}-{attempt}", "rows": rows})


# -- the router: which attempt is recorded -----------------------------------------
def test_the_last_event_before_the_future_finished_is_recorded_and_earlier_ones_superseded():
    router = MetadataRouter()
    router.open("r")
    router.handle(_event("a", "11111111"))
    router.handle(_event("a", "22222222"))  # the first execution's result was lost before it finished
    router.handle((0.0, {"key": "a", "run_id": "other-run", "attempt": "x", "path": "/elsewhere"}))
    events = router.wait_for("r", "a", timeout_s=1)
    assert [e["attempt"] for e in events] == ["11111111", "22222222"]
    router.mark_recorded("r", "a", events[-1])
    assert router.take_late("r") == []


def test_an_execution_after_the_row_was_written_is_late_and_replaces_it():
    router = MetadataRouter()
    router.open("r")
    router.handle(_event("a", "11111111"))
    router.mark_recorded("r", "a", router.wait_for("r", "a", 1)[-1])
    router.handle(_event("a", "22222222", rows=7))  # Dask recomputed it: a worker holding it died
    router.handle(_event("a", "33333333", rows=9))  # ... twice
    late = router.take_late("r")
    assert [(e["attempt"], e["rows"]) for e in late] == [("33333333", 9)]
    assert router.take_late("r") == []
    router.handle(_event("a", "33333333"))  # the same attempt again is not late
    assert router.take_late("r") == []


def test_an_event_arriving_while_the_loop_records_is_not_lost():
    router = MetadataRouter()
    router.open("r")
    router.handle(_event("a", "11111111"))
    first = router.wait_for("r", "a", 1)[-1]
    router.handle(_event("a", "22222222"))  # between wait_for and mark_recorded
    router.mark_recorded("r", "a", first)
    assert [e["attempt"] for e in router.take_late("r")] == ["22222222"]


def test_wait_for_times_out_with_no_event():
    router = MetadataRouter()
    router.open("r")
    assert router.wait_for("r", "missing", timeout_s=0.01) == []


# -- files: one per attempt ------------------------------------------------------
def test_every_attempt_writes_its_own_file(tmp_path):
    store = AssetStore(str(tmp_path / "data"))
    first = store.write("a", [1], io="json", run_id="0" * 32, attempt="aaaaaaaa")
    second = store.write("a", [1, 2], io="json", run_id="0" * 32, attempt="bbbbbbbb")
    assert first.path != second.path and store.read(first.path) == [1] and store.read(second.path) == [1, 2]
    assert first.path.endswith("/" + "0" * 32 + "-aaaaaaaa.json") and first.attempt == "aaaaaaaa"
    assert run_id_of_file(first.path) == "0" * 32 and run_id_of_file("/d/my-run.json") == "my-run"
    assert run_id_of_file("/d/.x.json.tmp-123") is None


def test_replacing_an_attempt_updates_the_row_and_lists_the_old_file(daskflow_home):
    catalog = Catalog()
    run = catalog.start_run(pipeline="p")
    mid = catalog.record_materialization(run.run_id, "a", {"path": "/d/a-1.json", "format": "json", "rows": 3,
                                                           "bytes": 30, "worker": "tcp://dead:1", "attempt": "1"},
                                         code_version="1")
    old = catalog.replace_attempt(mid, {"path": "/d/a-2.json", "format": "json", "rows": 4, "bytes": 40,
                                        "worker": "tcp://alive:2", "attempt": "2"}, duration_s=0.5)
    m = catalog.get_materialization(mid)
    assert old == "/d/a-1.json"
    assert (m.path, m.rows, m.bytes, m.worker, m.attempt, m.duration_s) == (
        "/d/a-2.json", 4, 40, "tcp://alive:2", "2", 0.5)
    assert catalog.superseded_files() == {"/d/a-1.json": mid}
    assert catalog.replace_attempt(mid, {"path": "/d/a-2.json"}) is None  # same file: nothing to do


# -- runs always end ---------------------------------------------------------------
def test_a_run_without_heartbeat_is_marked_abandoned_with_a_fixed_clock(daskflow_home):
    catalog = Catalog()
    alive = catalog.start_run(run_id="alive")
    dead = catalog.start_run(run_id="dead")
    done = catalog.start_run(run_id="done")
    catalog.finish_run("done", "success")
    start = catalog.get_run("dead").started_at
    assert catalog.heartbeat("alive", now=start + 100)
    assert catalog.mark_abandoned_runs(now=start + 59, abandon_after_s=60) == []
    assert catalog.mark_abandoned_runs(now=start + 120, abandon_after_s=60) == ["dead"]
    assert catalog.mark_abandoned_runs(now=start + 120, abandon_after_s=60) == []  # once
    record = catalog.get_run("dead")
    assert (record.status, record.reason, record.finished_at) == ("failure", "abandoned", start + 120)
    assert catalog.get_run("alive").status == "running" and catalog.get_run("done").status == "success"
    assert [e.kind for e in catalog.events("dead")] == ["run-abandoned"]
    assert not catalog.heartbeat("dead")  # a heartbeat does not revive it
    assert alive and dead and done


def test_the_heartbeat_listener_beats_until_the_run_finishes(daskflow_home):
    from daskflow.heartbeat import RunHeartbeat

    catalog = Catalog()
    catalog.start_run(run_id="r")
    before = catalog.get_run("r").heartbeat_at

    class Info:
        run_id = "r"

    beat = RunHeartbeat(catalog, interval_s=0.02)
    beat.run_started(Info())
    deadline = time.monotonic() + 10
    while catalog.get_run("r").heartbeat_at == before and time.monotonic() < deadline:
        time.sleep(0.02)
    beat.run_finished(Info(), None)
    assert catalog.get_run("r").heartbeat_at > before and not beat._thread.is_alive()


def test_a_version_1_catalog_migrates_gating_failed_checks_and_ending_old_running_runs(tmp_path):
    path = tmp_path / "catalog.sqlite"
    shutil.copyfile(FIXTURE, path)
    with Catalog(path) as catalog:
        totals = catalog.latest_materialization("totals")  # no_nulls (blocking) failed in version 1
        assert (totals.check_status, totals.failed_check, totals.usable) == ("failed", "no_nulls", False)
        assert all(m.usable and m.attempt is None for m in catalog.materializations(asset_key="orders"))
        assert catalog.get_run("run-v1-running").heartbeat_at is None
        catalog.start_run(run_id="after-upgrade")  # a writing command ends the old running run
        old = catalog.get_run("run-v1-running")
        assert (old.status, old.reason) == ("failure", "abandoned")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # 2: reliability, 3: timeline


def test_find_run_by_prefix(daskflow_home):
    catalog = Catalog()
    catalog.start_run(run_id="abcdef123456aaaa")
    catalog.start_run(run_id="abcdef123456bbbb")
    assert catalog.find_run("abcdef123456a").run_id == "abcdef123456aaaa"
    with pytest.raises(CatalogError, match="several runs"):
        catalog.find_run("abcdef")
    with pytest.raises(CatalogError, match="no run"):
        catalog.find_run("zzz")


# -- gc ------------------------------------------------------------------------------
def _old(path: str, age_s: float = 7200) -> str:
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_gc_lists_only_unreferenced_old_files_of_finished_runs_and_deletes_only_with_apply(daskflow_home, tmp_path):
    store = AssetStore(str(daskflow_home / "data"))
    catalog = Catalog()
    finished, running = "f" * 32, "e" * 32
    catalog.start_run(run_id=finished)
    catalog.start_run(run_id=running)
    recorded = store.write("a", [1], io="json", run_id=finished, attempt="00000001")
    mid = catalog.record_materialization(finished, "a", recorded, code_version="1")
    catalog.finish_run(finished, "failure")
    orphan = store.write("b", [1], io="json", run_id=finished, attempt="00000002")  # client died before the row
    young = store.write("c", [1], io="json", run_id=finished, attempt="00000003")
    live = store.write("b", [2], io="json", run_id=running, attempt="00000004")  # a run in progress
    foreign = store.write("b", [3], io="json", run_id="d" * 32, attempt="00000005")  # another catalog's run
    replaced = store.write("a", [1, 1], io="json", run_id=finished, attempt="00000006")
    catalog.replace_attempt(mid, replaced)  # the recorded attempt is now `replaced`; `recorded` superseded
    temp = daskflow_home / "data" / "a" / ".x.json.tmp-abc"
    temp.write_text("partial")
    outside = tmp_path / "outside.json"
    outside.write_text("[]")
    for path in (recorded.path, orphan.path, live.path, foreign.path, replaced.path, str(temp)):
        _old(path)

    dry = collect_garbage(catalog, store)
    assert {(pathlib.Path(c.path).name, c.reason) for c in dry.candidates} == {
        (pathlib.Path(recorded.path).name, "superseded"), (pathlib.Path(orphan.path).name, "unreferenced"),
        (temp.name, "temp")}
    assert dry.kept_young == 1 and dry.removed == []
    assert all(os.path.exists(p) for p in (recorded.path, orphan.path, str(temp)))  # a dry run deletes nothing

    applied = collect_garbage(catalog, store, apply=True)
    assert sorted(applied.removed) == sorted(c.path for c in dry.candidates)
    for gone in (recorded.path, orphan.path, str(temp)):
        assert not os.path.exists(gone)
    for kept in (replaced.path, young.path, live.path, foreign.path, str(outside)):
        assert os.path.exists(kept)
    assert catalog.superseded_files() == {}
    with pytest.raises(StorageError, match="outside the storage root"):
        store.remove(str(outside))


def test_gc_without_a_catalog_refuses_and_creates_nothing(tmp_path):
    catalog = Catalog(tmp_path / "none" / "catalog.sqlite")
    with pytest.raises(CatalogError, match="no catalog"):
        collect_garbage(catalog, AssetStore(str(tmp_path / "data")))
    assert not (tmp_path / "none").exists()
