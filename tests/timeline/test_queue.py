"""The run queue: pure admission, and admission in the catalog across runners (no processes)."""

import os
import socket

import pytest

from daskflow.catalog import Catalog
from daskflow.timeline.queue import QueueEntry, QueueRunner, RunLimits, RunQueue, admit
from daskflow.timeline.store import TimelineStore


def entry(run_id, pool=None, origin="b", origin_limit=None, trigger="backfill"):
    return QueueEntry(run_id, trigger, origin, {"pipeline": "p.py", "selection": "x", "partitions": None,
                                                "tags": {}}, pool=pool, origin_limit=origin_limit)


# -- pure ----------------------------------------------------------------------
def test_admission_stops_at_the_global_limit_counting_active_runs():
    queued = [entry(f"q{i}") for i in range(5)]
    assert [e.run_id for e in admit(queued, [entry("a0")], RunLimits(max_concurrent=3), capacity=10)] == ["q0", "q1"]
    assert admit(queued, [entry("a0")], RunLimits(max_concurrent=1), capacity=10) == []


def test_a_full_pool_does_not_hold_back_the_runs_queued_after_it():
    queued = [entry("w1", pool="warehouse"), entry("w2", pool="warehouse"), entry("other"), entry("w3", pool="warehouse")]
    chosen = admit(queued, [entry("a", pool="warehouse")], RunLimits(None, {"warehouse": 2}), capacity=10)
    assert [e.run_id for e in chosen] == ["w1", "other"]


def test_an_unconfigured_pool_only_has_the_global_limit_and_capacity_bounds_a_runner():
    queued = [entry(f"q{i}", pool="adhoc") for i in range(4)]
    assert len(admit(queued, [], RunLimits(None, {"warehouse": 1}), capacity=3)) == 3


def test_an_origin_limit_caps_one_backfill_but_not_another():
    queued = [entry("a1", origin="A", origin_limit=1), entry("a2", origin="A", origin_limit=1),
              entry("b1", origin="B", origin_limit=1)]
    assert [e.run_id for e in admit(queued, [], RunLimits(), capacity=10)] == ["a1", "b1"]


# -- in the catalog --------------------------------------------------------------
class Launcher:
    pid = os.getpid()  # alive for as long as the test runs


class Pool:
    def __init__(self, capacity=10):
        self.capacity, self.in_flight, self.started, self.exits = capacity, {}, [], []

    def free_slots(self):
        return self.capacity - len(self.in_flight)

    def start(self, launch):
        self.in_flight[launch.run_id] = Launcher()
        self.started.append(launch.run_id)

    def reap(self):
        done, self.exits = self.exits, []
        for run_id, _, _ in done:
            del self.in_flight[run_id]
        return done


@pytest.fixture
def store(tmp_path):
    return TimelineStore(tmp_path / "catalog.sqlite")


def test_two_runners_on_one_catalog_never_admit_more_than_the_global_limit(store):
    RunQueue(store).enqueue([entry(f"q{i}", trigger="schedule", origin="s") for i in range(6)])
    limits = RunLimits(max_concurrent=3)
    first, second = QueueRunner(store, Pool(), limits), QueueRunner(store, Pool(), limits)
    first.step()
    second.step()
    first.step()
    assert len(first.pool.started) + len(second.pool.started) == 3
    assert [e.run_id for e in RunQueue(store).entries(status="queued")] == ["q3", "q4", "q5"]


def test_enqueueing_a_run_twice_keeps_one_row(store):
    queue = RunQueue(store)
    assert queue.enqueue([entry("r1")]) == 1 and queue.enqueue([entry("r1"), entry("r2")]) == 1
    assert [e.run_id for e in queue.entries()] == ["r1", "r2"]


def test_a_started_row_whose_launcher_died_before_the_run_started_is_queued_again(store):
    queue = RunQueue(store)
    queue.enqueue([entry("r1", trigger="sensor", origin="s")])
    first = QueueRunner(store, Pool())
    first.step()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    queue.set_launcher("r1", dead)  # a launcher of a crashed runner, gone
    second = QueueRunner(store, Pool())
    second.step()
    assert second.pool.started == ["r1"] and queue.get("r1").runner == second.runner


def test_a_row_whose_run_already_exists_is_never_launched_again(store):
    queue = RunQueue(store)
    queue.enqueue([entry("done", trigger="sensor", origin="s"), entry("live", trigger="sensor", origin="s")])
    catalog = Catalog(store.path)
    catalog.start_run("done")
    catalog.finish_run("done", "success")
    catalog.start_run("live")
    runner = QueueRunner(store, Pool(), RunLimits(max_concurrent=1))
    runner.step()
    assert runner.pool.started == []  # 'live' holds the one slot; 'done' is finished
    assert {e.run_id: e.status for e in queue.entries()} == {"done": "finished", "live": "started"}


def test_a_launcher_that_exits_before_its_run_is_requeued_then_failed(store):
    RunQueue(store).enqueue([entry("r1", trigger="schedule", origin="s")])
    runner = QueueRunner(store, Pool())
    failed = []
    for _ in range(3):
        runner.step()
        runner.pool.exits.append(("r1", -9, ""))
        failed += runner.step()
    assert runner.pool.started == ["r1"] * 3
    assert failed and failed[0][0] == "r1" and "died 3 times" in failed[0][1]
    assert RunQueue(store).get("r1").status == "finished"


def test_cancel_of_a_queued_row_wins_over_admission(store):
    queue = RunQueue(store)
    queue.enqueue([entry("r1", trigger="schedule", origin="s")])
    assert queue.cancel_queued(["r1", "missing"]) == ["r1"]
    runner = QueueRunner(store, Pool())
    runner.step()
    assert runner.pool.started == [] and queue.get("r1").status == "canceled"


def test_limits_come_from_config():
    import dask.config

    with dask.config.set({"daskflow.runs.max-concurrent": 5, "daskflow.runs.pools": {"warehouse": 2}}):
        assert RunLimits.from_config() == RunLimits(5, {"warehouse": 2})
    assert RunLimits.from_config().max_concurrent is None


def test_a_started_row_on_another_host_counts_while_its_run_runs(store):
    queue = RunQueue(store)
    queue.enqueue([entry("far", trigger="schedule", origin="s"), entry("next", trigger="schedule", origin="s")])
    with store._transaction() as conn:
        conn.execute("UPDATE timeline_queue SET status = 'started', runner = 'x', host = ? , launcher_pid = 1 "
                     "WHERE run_id = 'far'", (socket.gethostname() + "-elsewhere",))
    Catalog(store.path).start_run("far")
    runner = QueueRunner(store, Pool(), RunLimits(max_concurrent=1))
    runner.step()
    assert runner.pool.started == []
