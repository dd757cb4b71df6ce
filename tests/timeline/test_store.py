"""Durable timeline state: claims under unique keys, cursors, the lease, reconciliation with runs."""

import sqlite3
import subprocess
import sys

import pytest

from daskflow.catalog import Catalog
from daskflow.timeline import DaemonLeaseError
from daskflow.timeline.schema import TIMELINE_TABLES, migrate_timeline
from daskflow.timeline.store import LaunchClaim, TimelineStore


@pytest.fixture
def store(tmp_path):
    store = TimelineStore(tmp_path / "catalog.sqlite")
    yield store
    store.close()


def tick_claim(key, run_id=None, origin="nightly"):
    return LaunchClaim("schedule", origin, key, 0.0, run_id or f"run-{key}", "p.py", "report")


def test_timeline_tables_live_in_the_catalog_file_and_the_migration_is_idempotent(tmp_path):
    path = tmp_path / "catalog.sqlite"
    TimelineStore(path).close()
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(TIMELINE_TABLES) <= tables and "runs" in tables
    migrate_timeline(conn)
    migrate_timeline(conn)
    conn.close()
    assert Catalog(path).runs(limit=1) == []  # the catalog still opens


def test_claiming_a_tick_twice_is_refused(store):
    assert store.claim([tick_claim("2024-01-01T00:10:00+00:00")]) != []
    assert store.claim([tick_claim("2024-01-01T00:10:00+00:00", run_id="other")]) == []
    assert [launch.run_id for launch in store.launches()] == ["run-2024-01-01T00:10:00+00:00"]


def test_a_sensor_run_key_is_claimed_once_ever(store):
    first = LaunchClaim("sensor", "files", "a.csv", 1.0, "r1", "p.py", "report")
    assert store.record_sensor_tick("files", 1.0, "requested", "1", [first], cursor="a") == [first]
    again = LaunchClaim("sensor", "files", "a.csv", 2.0, "r2", "p.py", "report")
    assert store.record_sensor_tick("files", 2.0, "requested", "1", [again], cursor="b") == []
    assert store.sensor_state("files").cursor == "b"
    # another sensor may use the same key
    other = LaunchClaim("sensor", "other", "a.csv", 2.0, "r3", "p.py", "report")
    assert store.claim([other]) == [other]


def test_schedule_claims_and_cursor_move_together(store):
    assert store.schedule_cursor("nightly") is None
    store.record_schedule_tick("nightly", [tick_claim("k1")], evaluated_until_s=100.0)
    assert store.schedule_cursor("nightly") == 100.0
    store.record_schedule_tick("nightly", [], evaluated_until_s=50.0)  # never moves back
    assert store.schedule_cursor("nightly") == 100.0


def test_nothing_is_claimed_when_the_transaction_fails(store):
    with pytest.raises(DaemonLeaseError):
        store.record_schedule_tick("nightly", [tick_claim("k1")], 100.0, token="not-the-holder")
    assert store.launches() == [] and store.schedule_cursor("nightly") is None


def test_an_error_tick_keeps_the_sensor_cursor(store):
    store.record_sensor_tick("files", 1.0, "skipped", "nothing", [], cursor="c1")
    store.record_sensor_tick("files", 2.0, "error", "sensor 'files' raised KeyError: 'x'", [], cursor=None)
    state = store.sensor_state("files")
    assert state.cursor == "c1" and state.last_status == "error" and state.last_tick_at == 2.0
    assert [t["status"] for t in store.sensor_ticks("files")] == ["skipped", "error"]


def test_a_second_daemon_is_refused_while_the_lease_is_fresh(store):
    store.acquire_lease("first", pid=1, host="elsewhere", now_s=100.0, timeout_s=30)
    with pytest.raises(DaemonLeaseError) as exc_info:
        store.acquire_lease("second", pid=2, host="here", now_s=110.0, timeout_s=30)
    assert "pid 1 on elsewhere" in str(exc_info.value) and "\n" not in str(exc_info.value)
    assert store.heartbeat("first", 120.0)
    store.acquire_lease("second", pid=2, host="here", now_s=151.0, timeout_s=30)  # stale: taken over
    assert not store.heartbeat("first", 152.0)
    assert store.lease()["token"] == "second"
    with pytest.raises(DaemonLeaseError, match="lost the catalog lease"):
        store.claim([tick_claim("k")], token="first")


def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_at_once(store):
    import socket

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead_pid = int(finished.stdout)
    store.acquire_lease("dead", pid=dead_pid, host=socket.gethostname(), now_s=100.0, timeout_s=30)
    store.acquire_lease("alive", pid=2, host=socket.gethostname(), now_s=101.0, timeout_s=30)
    assert store.lease()["token"] == "alive"


def test_claimed_rows_become_launched_once_their_run_exists(store):
    store.claim([tick_claim("k1", "run-a"), tick_claim("k2", "run-b")])
    Catalog(store.path).start_run("run-a", pipeline="p.py")
    assert store.mark_started() == 1
    assert {l.run_id: l.status for l in store.launches()} == {"run-a": "launched", "run-b": "claimed"}
    store.mark_failed("run-b", "error: selection 'x' matches nothing")
    assert store.launches(status="failed")[0].message.startswith("error: selection")
