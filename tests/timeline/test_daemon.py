"""The daemon loop with a fixed clock and a fake launcher pool (no processes, no cluster)."""

import datetime as dt

import pytest

import daskflow
from daskflow.catalog import Catalog
from daskflow.timeline import DaemonLeaseError, RunRequest
from daskflow.timeline.daemon import Daemon, claim_run_id, run_daemon
from daskflow.timeline.launch import EXIT_LAUNCH_ERROR
from daskflow.timeline.targets import resolve_timeline

T0 = dt.datetime(2024, 1, 1, 12, 0, 30, tzinfo=dt.timezone.utc)


@daskflow.asset
def numbers():
    return [1, 2, 3]


class FakePool:
    """Records what would be launched; ``finish`` makes a launcher exit with a code."""

    def __init__(self, capacity=10):
        self.capacity, self.in_flight, self.started, self.exits = capacity, {}, [], []

    def has_capacity(self):
        return len(self.in_flight) < self.capacity

    def free_slots(self):
        return max(0, self.capacity - len(self.in_flight))

    def start(self, launch):
        self.in_flight[launch.run_id] = launch
        self.started.append(launch)

    def finish(self, run_id, code, line=""):
        del self.in_flight[run_id]
        self.exits.append((run_id, code, line))

    def reap(self):
        done, self.exits = self.exits, []
        return done


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += dt.timedelta(**delta)


def make_daemon(tmp_path, schedules=(), sensors=(), clock=None, capacity=10):
    defs = daskflow.Definitions(assets=[numbers], schedules=schedules, sensors=sensors)
    daemon = Daemon(resolve_timeline(defs, "p.py"), catalog=tmp_path / "catalog.sqlite", clock=clock)
    daemon.pool = FakePool(capacity)
    daemon.start()
    return daemon


def minutely(**kwargs):
    return daskflow.schedule("* * * * *", target="numbers", name="minutely", **kwargs)


def test_due_ticks_are_claimed_once_and_launched_with_tags(tmp_path):
    clock = Clock(T0)
    daemon = make_daemon(tmp_path, schedules=[minutely(catchup="all")], clock=clock)
    daemon.step()
    assert daemon.store.launches() == []  # first sight: the clock starts now
    clock.advance(minutes=2)
    daemon.step()
    daemon.step()  # same instant again: nothing new
    launches = daemon.store.launches()
    assert [l.key for l in launches] == ["2024-01-01T12:01:00+00:00", "2024-01-01T12:02:00+00:00"]
    assert [l.run_id for l in daemon.pool.started] == [l.run_id for l in launches]
    assert launches[0].run_id == claim_run_id("schedule", "minutely", launches[0].key)
    assert launches[0].tags == {"trigger": "schedule", "schedule": "minutely",
                                "run_key": "2024-01-01T12:01:00+00:00", "tick_time": "2024-01-01T12:01:00+00:00"}


def test_a_restarted_daemon_launches_claimed_ticks_without_a_run_and_not_the_others(tmp_path):
    clock = Clock(T0)
    first = make_daemon(tmp_path, schedules=[minutely(catchup="all")], clock=clock, capacity=0)  # claims, cannot launch
    first.step()
    clock.advance(minutes=2)
    first.step()
    claimed = first.store.launches()
    assert len(claimed) == 2 and first.pool.started == []
    Catalog(first.store.path).start_run(claimed[0].run_id)  # that one started before the "crash"
    first.store.close()

    second = Daemon(first.timeline, catalog=first.store.path, clock=clock)
    second.pool = FakePool()
    second.start()  # lease-timeout 0 s in these tests (see _short_lease)
    second.step()
    assert [l.run_id for l in second.pool.started] == [claimed[1].run_id]
    assert {l.run_id: l.status for l in second.store.launches()} == {claimed[0].run_id: "launched",
                                                                     claimed[1].run_id: "claimed"}


@pytest.fixture(autouse=True)
def _short_lease(monkeypatch):
    """Daemons of one test run in one process: let each take over the previous one's lease."""
    import dask.config

    with dask.config.set({"daskflow.timeline.lease-timeout": "0s"}):
        yield


def test_missed_ticks_follow_the_catchup_policy_after_downtime(tmp_path):
    clock = Clock(T0)
    daemon = make_daemon(tmp_path, schedules=[minutely(catchup="all", catchup_limit=3)], clock=clock)
    daemon.step()
    clock.advance(minutes=10)  # the daemon was down; the last 60 s are on time
    daemon.step()
    launches = daemon.store.launches()
    assert [l.status for l in launches] == ["skipped"] * 6 + ["claimed"] * 4
    assert launches[0].message == "missed while no daemon ran (catchup='all')"


def test_a_raising_sensor_is_recorded_per_tick_and_never_stops_the_daemon(tmp_path):
    @daskflow.sensor(target="numbers", minimum_interval_s=30)
    def broken(context):
        raise RuntimeError("bucket gone")

    clock = Clock(T0)
    daemon = make_daemon(tmp_path, schedules=[minutely()], sensors=[broken], clock=clock)
    for _ in range(4):
        daemon.step()
        clock.advance(seconds=20)
    ticks = daemon.store.sensor_ticks("broken")
    assert [t["status"] for t in ticks] == ["error", "error"]  # at T0 and T0+40 s (minimum interval 30 s)
    assert ticks[0]["message"] == "sensor 'broken' raised RuntimeError: bucket gone"
    assert len(daemon.store.launches(trigger="schedule")) == 1  # the schedule kept ticking


def test_a_run_key_launches_once_across_evaluations_and_restarts(tmp_path):
    @daskflow.sensor(target="numbers", minimum_interval_s=0)
    def files(context):
        seen = int(context.cursor or 0)
        context.update_cursor(str(seen + 1))
        return [RunRequest(run_key="a.csv", tags={"file": "a.csv"}), RunRequest(run_key=f"n{min(seen, 1)}")]

    clock = Clock(T0)
    daemon = make_daemon(tmp_path, sensors=[files], clock=clock)
    for _ in range(3):
        daemon.step()
        clock.advance(seconds=1)
    restarted = Daemon(daemon.timeline, catalog=daemon.store.path, clock=clock)
    restarted.pool = FakePool()
    restarted.start()
    restarted.step()
    launches = restarted.store.launches(trigger="sensor")
    assert [l.key for l in launches] == ["a.csv", "n0", "n1"]
    assert launches[0].tags == {"file": "a.csv", "trigger": "sensor", "sensor": "files", "run_key": "a.csv"}
    assert restarted.store.sensor_state("files").cursor == "4"
    # no new claims; the restarted daemon (re)launches the same three runs, with the same run ids
    assert sorted(l.run_id for l in restarted.pool.started) == sorted(l.run_id for l in launches)


def test_a_failed_launch_is_recorded_and_not_retried(tmp_path):
    clock = Clock(T0)
    daemon = make_daemon(tmp_path, schedules=[minutely()], clock=clock)
    daemon.step()
    clock.advance(minutes=1)
    daemon.step()
    run_id = daemon.pool.started[0].run_id
    daemon.pool.finish(run_id, EXIT_LAUNCH_ERROR, "error: selection 'numbers' matches nothing")
    daemon.step()
    assert daemon.store.launches()[0].status == "failed"
    assert daemon.store.launches()[0].message == "error: selection 'numbers' matches nothing"
    assert len(daemon.pool.started) == 1


def test_a_launcher_that_dies_before_starting_is_retried_then_failed(tmp_path):
    clock = Clock(T0)
    daemon = make_daemon(tmp_path, schedules=[minutely()], clock=clock)
    daemon.step()
    clock.advance(minutes=1)
    for _ in range(3):
        daemon.step()
        daemon.pool.finish(daemon.pool.started[-1].run_id, -9)
    daemon.step()
    assert len(daemon.pool.started) == 3 and daemon.store.launches()[0].status == "failed"


def test_a_second_daemon_refuses_to_start(tmp_path):
    import dask.config

    with dask.config.set({"daskflow.timeline.lease-timeout": "30s"}):
        make_daemon(tmp_path, schedules=[minutely()], clock=Clock(T0))
        with pytest.raises(DaemonLeaseError, match="another daskflow daemon"):
            make_daemon(tmp_path, schedules=[minutely()], clock=Clock(T0))


def test_run_daemon_stops_after_max_iterations_and_releases_the_lease(tmp_path):
    import dask.config

    defs = daskflow.Definitions(assets=[numbers], schedules=[minutely()])
    with dask.config.set({"daskflow.timeline.tick-interval": "0s"}):
        state = run_daemon(resolve_timeline(defs, "p.py"), catalog=tmp_path / "catalog.sqlite",
                           clock=Clock(T0), max_iterations=3)
    assert state.iterations == 3
    from daskflow.timeline.store import TimelineStore

    assert TimelineStore(tmp_path / "catalog.sqlite").lease() is None


def test_daemon_command_reports_load_mistakes_in_one_line(tmp_path):
    from click.testing import CliRunner

    from daskflow.cli import main

    pipeline = tmp_path / "bad.py"
    pipeline.write_text("import daskflow\n\n@daskflow.asset\ndef a():\n    return 1\n\n"
                        "s = daskflow.schedule('10 0 * * *', target='b', name='nightly')\n")
    result = CliRunner().invoke(main, ["daemon", str(pipeline)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: schedule 'nightly' (pipeline ")
    assert "target 'b'" in lines[0] and "Fix:" in lines[0]
    pipeline.write_text("import daskflow\ns = daskflow.schedule('10 0 * *', target='a', name='nightly')\n")
    result = CliRunner().invoke(main, ["daemon", str(pipeline)])
    assert result.exit_code == 2 and "schedule 'nightly': cron '10 0 * *' is not a valid cron" in result.output


def test_a_daemon_that_lost_its_lease_stops_without_launching_more(tmp_path):
    clock = Clock(T0)
    daemon = make_daemon(tmp_path, schedules=[minutely()], clock=clock)
    daemon.step()
    daemon.store.acquire_lease("usurper", pid=1, host="elsewhere", now_s=clock().timestamp(), timeout_s=0)
    clock.advance(minutes=1)
    with pytest.raises(DaemonLeaseError, match="lost the catalog lease"):
        daemon.step()
    assert daemon.store.launches() == []  # nothing claimed after losing the lease


def test_the_daemon_starts_the_retrainer_every_interval_in_the_background_one_at_a_time(tmp_path):
    import threading

    import dask.config

    clock = Clock(T0)
    with dask.config.set({"daskflow.models.retrain.daemon-interval": "10m"}):
        daemon = make_daemon(tmp_path, clock=clock)
    calls, release = [], threading.Event()

    def retrain():
        calls.append(clock.now)
        if len(calls) == 2:
            release.wait(10)  # a long training: the loop goes on, no second one starts beside it
        if len(calls) == 3:
            raise RuntimeError("history unreadable")
        return {"decision": "promote", "reason": "beats the current model", "version": "v2"}

    daemon.retrain = retrain
    daemon.step()  # first sight: the interval starts now
    clock.advance(minutes=9)
    daemon.step()
    assert calls == []
    clock.advance(minutes=2)
    daemon.step()
    daemon._retrain_thread.join(5)
    assert len(calls) == 1 and daemon.state.retrain_outcome["decision"] == "promote"
    clock.advance(minutes=10)
    daemon.step()  # the second one blocks in its thread ...
    clock.advance(minutes=30)
    daemon.step()  # ... so none starts beside it, and the daemon still steps
    assert len(calls) == 2 and daemon.state.iterations == 5
    release.set()
    daemon._retrain_thread.join(5)
    clock.advance(minutes=10)
    daemon.step()
    daemon._retrain_thread.join(5)
    assert len(calls) == 3
    assert daemon.state.retrain_outcome["decision"] == "error"  # a raising retrainer is one warning, not a stop
    assert "history unreadable" in daemon.state.retrain_outcome["reason"]
    daemon.step()


def test_no_retrainer_when_its_interval_is_null(tmp_path):
    clock = Clock(T0)
    daemon = make_daemon(tmp_path, clock=clock)  # (the fixture sets it null)
    daemon.retrain = lambda: pytest.fail("the retrainer must not start")
    for _ in range(3):
        daemon.step()
        clock.advance(days=1)
    assert daemon.state.retrains == 0
