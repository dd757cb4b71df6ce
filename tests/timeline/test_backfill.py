"""Backfills without processes: chunking, planning, persistence, derived states, resume, cancel, the driver."""

import io
import json

import pytest

from daskflow.catalog import Catalog
from daskflow.timeline.backfill import (
    BackfillError,
    Backfills,
    chunk_partitions,
    chunk_run_id,
    chunk_state,
    count_partitions,
    plan_backfill,
)
from daskflow.timeline.backfill_driver import (
    BackfillProgress,
    drive_backfill,
    progress_line,
)
from daskflow.timeline.queue import RunQueue
from daskflow.timeline.store import TimelineStore
from tests.timeline.helpers import InstantPool, write_pipeline


# -- pure ----------------------------------------------------------------------
@pytest.mark.parametrize("n, size, expected", [
    (5, 2, [2, 2, 1]), (4, 4, [4]), (3, 10, [3]), (0, 3, []), (7, 1, [1] * 7)])
def test_chunks_are_consecutive_and_cover_every_key_once(n, size, expected):
    keys = [f"k{i}" for i in range(n)]
    chunks = chunk_partitions(keys, size)
    assert [len(c) for c in chunks] == expected
    assert [k for c in chunks for k in c] == keys


def test_a_chunk_size_below_one_is_one_line_error():
    with pytest.raises(BackfillError, match="--chunk must be at least 1"):
        chunk_partitions(["a"], 0)


@pytest.mark.parametrize("n, queue_status, run_status, state", [
    (2, "queued", None, "pending"), (2, "started", None, "running"), (2, "started", "running", "running"),
    (2, "finished", "success", "done"), (2, "finished", "failure", "failed"), (2, "finished", None, "failed"),
    (2, "finished", "running", "failed"),  # launcher gone, run abandoned
    (2, "canceled", "canceled", "canceled"), (2, "canceled", None, "canceled"), (0, "queued", None, "done"),
    (2, "started", "abandoned", "failed")])
def test_a_chunk_state_is_derived_from_its_queue_row_and_catalog_run(n, queue_status, run_status, state):
    assert chunk_state(n, queue_status, run_status) == state


def test_partition_counts_include_partitions_earlier_attempts_did():
    chunks = [{"n_partitions": 2, "done_before": 0, "state": "done"},
              {"n_partitions": 1, "done_before": 1, "state": "failed"},
              {"n_partitions": 3, "done_before": 0, "state": "pending"}]
    assert count_partitions(chunks) == {"done": 3, "failed": 1, "running": 0, "pending": 3, "canceled": 0}


def test_chunk_run_ids_are_stable_per_attempt():
    assert chunk_run_id("bf-1", 3, 1) == chunk_run_id("bf-1", 3, 1) != chunk_run_id("bf-1", 3, 2)


def test_progress_is_one_line_and_prints_only_on_change_off_a_tty():
    stream = io.StringIO()
    progress = BackfillProgress(stream)
    status = {"backfill_id": "bf-1", "n_partitions": 10, "done": 5, "failed": 0, "running": 2, "pending": 3,
              "canceled": 0}
    progress.update(status)
    progress.update(status)
    progress.update({**status, "done": 10, "running": 0, "pending": 0}, final=True)
    assert stream.getvalue().splitlines() == [progress_line(status),
                                              progress_line({**status, "done": 10, "running": 0, "pending": 0})]


# -- planning --------------------------------------------------------------------
def test_planning_keeps_partitioned_assets_and_names_the_others(tmp_path):
    plan = plan_backfill(str(write_pipeline(tmp_path)), "2024-01-01...2024-01-05", chunk_size=2)
    assert plan.asset_keys == ("events", "daily_totals") and plan.left_out == ("summary",)
    assert plan.partitions[0] == "2024-01-01" and len(plan.partitions) == 5
    assert [len(c) for c in plan.chunks] == [2, 2, 1]


def test_planning_mistakes_are_one_line(tmp_path):
    path = str(write_pipeline(tmp_path))
    with pytest.raises(BackfillError, match="has no partitioned assets"):
        plan_backfill(path, "2024-01-01", selection="summary")
    with pytest.raises(Exception, match="2025-01-01"):
        plan_backfill(path, "2024-12-30...2025-01-01")


def test_ten_thousand_partitions_plan_and_persist_in_one_transaction(tmp_path):
    path = tmp_path / "big.py"
    path.write_text("import daskflow\nfrom daskflow.partitions import DailyPartitions\n\n"
                    "@daskflow.asset(partitions=DailyPartitions('2000-01-01', '2030-01-01'))\n"
                    "def day(context):\n    return [1]\n")
    plan = plan_backfill(str(path), "2000-01-01...2027-05-18", chunk_size=1)
    assert len(plan.chunks) == 10000
    backfills = Backfills(TimelineStore(tmp_path / "catalog.sqlite"))
    backfill_id = backfills.create(plan, max_concurrent_runs=4)
    status = backfills.status(backfill_id)
    assert (status["n_chunks"], status["pending"], status["done"]) == (10000, 10000, 0)
    assert len(RunQueue(backfills.store).entries(trigger="backfill", origin=backfill_id)) == 10000


# -- driving ---------------------------------------------------------------------
def _backfill(tmp_path, partitions="2024-01-01...2024-01-06", chunk=2, limit=2, tags=None):
    store = TimelineStore(tmp_path / "catalog.sqlite")
    plan = plan_backfill(str(write_pipeline(tmp_path)), partitions, chunk_size=chunk)
    backfills = Backfills(store)
    return backfills, backfills.create(plan, limit, tags)


@pytest.fixture(autouse=True)
def _fast_ticks():
    import dask.config

    with dask.config.set({"daskflow.backfill.tick-interval": "0s"}):
        yield


def test_the_driver_runs_every_chunk_once_within_the_backfill_limit(tmp_path):
    backfills, backfill_id = _backfill(tmp_path, chunk=2, limit=2)
    pool = InstantPool(backfills.store.path)
    status = drive_backfill(backfill_id, str(backfills.store.path), pool=pool, max_iterations=50)
    assert (status["status"], status["done"], status["failed"], status["interrupted"]) == ("done", 6, 0, False)
    assert len(pool.started) == 3 and pool.max_in_flight == 2
    assert {p for launch in pool.started for p in launch.partitions} == {f"2024-01-0{i}" for i in range(1, 7)}
    tags = pool.started[0].tags
    assert tags["trigger"] == "backfill" and tags["backfill"] == backfill_id and tags["chunk"] == "0"


def test_a_pool_tag_and_its_configured_limit_apply_to_backfill_runs(tmp_path):
    import dask.config

    backfills, backfill_id = _backfill(tmp_path, chunk=1, limit=5, tags={"pool": "warehouse"})
    pool = InstantPool(backfills.store.path)
    with dask.config.set({"daskflow.runs.pools": {"warehouse": 1}}):
        drive_backfill(backfill_id, str(backfills.store.path), pool=pool, max_iterations=50)
    assert len(pool.started) == 6 and pool.max_in_flight == 1


def test_resume_retries_a_failed_chunk_once_without_its_done_partitions(tmp_path):
    backfills, backfill_id = _backfill(tmp_path, chunk=3, limit=2)

    def half_fails(launch):  # the first chunk's first attempt materializes one of its three days, then fails
        if launch.tags["chunk"] == "0" and launch.tags["attempt"] == "1":
            return "failure", launch.partitions[:1]
        if launch.tags["chunk"] == "1":
            return "failure", []
        return "success", launch.partitions

    pool = InstantPool(backfills.store.path, outcome=half_fails)
    status = drive_backfill(backfill_id, str(backfills.store.path), pool=pool, max_iterations=50)
    assert (status["done"], status["failed"], status["retryable_chunks"]) == (0, 6, 2)
    assert backfills.resume(backfill_id) == 2
    status = drive_backfill(backfill_id, str(backfills.store.path), pool=pool, max_iterations=50)
    assert (status["done"], status["failed"]) == (3, 3)  # chunk 1 failed twice: not retried again
    retried = [launch for launch in pool.started if launch.tags["attempt"] == "2"]
    assert sorted(launch.partitions for launch in retried) == [["2024-01-02", "2024-01-03"],
                                                                ["2024-01-04", "2024-01-05", "2024-01-06"]]
    assert backfills.resume(backfill_id) == 0
    catalog = Catalog(backfills.store.path)
    days = [m.partition for m in catalog.materializations(asset_key="events")]
    assert sorted(days) == ["2024-01-01", "2024-01-02", "2024-01-03"]  # each once


def test_an_interrupted_driver_pauses_the_backfill_and_a_runner_then_skips_it(tmp_path):
    import threading

    backfills, backfill_id = _backfill(tmp_path, chunk=1, limit=1)
    stop = threading.Event()
    stop.set()
    pool = InstantPool(backfills.store.path)
    status = drive_backfill(backfill_id, str(backfills.store.path), pool=pool, stop_event=stop)
    assert status["interrupted"] and status["status"] == "paused" and len(pool.started) == 1
    from daskflow.timeline.queue import QueueRunner

    other = InstantPool(backfills.store.path)
    QueueRunner(backfills.store, other).step()  # a daemon's runner: a paused backfill's chunks wait
    assert other.started == []
    backfills.resume(backfill_id)
    status = drive_backfill(backfill_id, str(backfills.store.path), pool=pool, max_iterations=50)
    assert status["done"] == 6 and len(pool.started) == 6


def test_cancel_drops_queued_chunks(tmp_path):
    backfills, backfill_id = _backfill(tmp_path, chunk=1, limit=1)
    result = backfills.cancel(backfill_id)
    assert len(result["canceled"]) == 6 and result["running"] == []
    status = backfills.status(backfill_id)
    assert (status["status"], status["canceled"], status["pending"]) == ("canceled", 6, 0)
    with pytest.raises(BackfillError, match="was canceled"):
        backfills.resume(backfill_id)


def test_an_unknown_backfill_id_names_the_known_ones(tmp_path):
    backfills, backfill_id = _backfill(tmp_path)
    with pytest.raises(BackfillError, match=f"no backfill 'bf-nope'.*known: {backfill_id}"):
        backfills.get("bf-nope")


# -- CLI -------------------------------------------------------------------------
def test_backfill_commands_plan_drive_report_and_refuse_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from daskflow.cli import main

    monkeypatch.setenv("DASKFLOW_HOME", str(tmp_path / "home"))
    import dask.config

    pipeline = str(write_pipeline(tmp_path))
    runner = CliRunner()
    with dask.config.set({"daskflow.home": str(tmp_path / "home")}):
        result = runner.invoke(main, ["backfill", pipeline, "--partition", "2024-01-01...2024-01-04", "--chunk", "2",
                                      "--detach", "--json"])
        assert result.exit_code == 0, result.output
        backfill_id = json.loads(result.output.strip().splitlines()[-1])["backfill_id"]
        status = json.loads(runner.invoke(main, ["backfill", "status", backfill_id, "--json"]).output)
        assert (status["backfill_id"], status["pending"], status["done"], status["failed"]) == (backfill_id, 4, 0, 0)
        listing = json.loads(runner.invoke(main, ["backfill", "status", "--json"]).output)
        assert [b["backfill_id"] for b in listing["backfills"]] == [backfill_id]
        assert backfill_id in runner.invoke(main, ["backfill", "status"]).output
        result = runner.invoke(main, ["backfill", "cancel", backfill_id])
        assert result.exit_code == 0 and "2 queued run(s) dropped" in result.output
        bad = runner.invoke(main, ["backfill", pipeline, "--partition", "2031-01-01"])
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
        assert bad.output.startswith("error: ") and "2031-01-01" in bad.output
        missing = runner.invoke(main, ["backfill", "resume", "bf-nope"])
        assert missing.exit_code == 2 and missing.output.startswith("error: no backfill 'bf-nope'")
