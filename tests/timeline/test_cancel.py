"""`daskflow runs cancel` without processes: queued runs, refusals, the daemon driving a backfill."""

import os

import pytest

from daskflow.catalog import Catalog
from daskflow.timeline.cancel import CancelError, cancel_run
from daskflow.timeline.queue import QueueEntry, QueueRunner, RunQueue
from daskflow.timeline.store import LaunchClaim, TimelineStore


@pytest.fixture
def catalog(tmp_path):
    return Catalog(tmp_path / "catalog.sqlite")


def test_a_queued_run_is_canceled_and_can_never_start(catalog):
    store = TimelineStore(catalog.path)
    store.claim([LaunchClaim("schedule", "nightly", "k", 0.0, "run-queued", "p.py", "x")])
    RunQueue(store).enqueue([QueueEntry("run-queued", "schedule", "nightly", {"pipeline": "p.py", "selection": "x"})])
    assert cancel_run("run-q", catalog) == "run run-queued: canceled while queued (it will never start)"
    assert catalog.get_run("run-queued").status == "canceled"
    assert store.launches()[0].status == "canceled"

    class Pool:
        def __init__(self):
            self.in_flight, self.started = {}, []

        def free_slots(self):
            return 5

        def start(self, launch):
            self.started.append(launch.run_id)

        def reap(self):
            return []

    pool = Pool()
    QueueRunner(store, pool).step()
    assert pool.started == []


def test_cancel_refuses_in_one_line_what_it_cannot_stop(catalog):
    manual = catalog.start_run(pipeline="etl")
    with pytest.raises(CancelError, match="not launched by the daemon or a backfill.*Ctrl-C"):
        cancel_run(manual.run_id, catalog)
    catalog.finish_run(manual.run_id, "success")
    with pytest.raises(CancelError, match=r"already ended \(success\)"):
        cancel_run(manual.run_id, catalog)
    with pytest.raises(CancelError, match="no run 'zzz'"):
        cancel_run("zzz", catalog)


def test_a_running_run_whose_launcher_is_gone_is_marked_canceled(catalog):
    store = TimelineStore(catalog.path)
    queue = RunQueue(store)
    queue.enqueue([QueueEntry("orphan", "sensor", "s", {"pipeline": "p.py"})])
    with store._transaction() as conn:
        conn.execute("UPDATE timeline_queue SET status = 'started', host = ?, launcher_pid = NULL",
                     (__import__("socket").gethostname(),))
    catalog.start_run("orphan")
    assert "marked canceled" in cancel_run("orphan", catalog)
    assert catalog.get_run("orphan").status == "canceled"


def test_runs_cancel_command_prints_one_line(tmp_path, monkeypatch):
    import dask.config
    from click.testing import CliRunner

    from daskflow.cli import main

    with dask.config.set({"daskflow.home": str(tmp_path)}):
        catalog = Catalog()
        run = catalog.start_run(pipeline="etl")
        result = CliRunner().invoke(main, ["runs", "cancel", run.run_id])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error: run ")
        listing = CliRunner().invoke(main, ["runs", "--json"])
        assert listing.exit_code == 0 and '"trigger": "manual"' in listing.output
        assert CliRunner().invoke(main, ["runs"]).output.splitlines()[0].split()[-1] == "trigger"


def test_the_daemon_drives_a_running_backfill_within_its_limit(tmp_path):
    import datetime as dt

    import daskflow
    from daskflow.timeline.backfill import Backfills, plan_backfill
    from daskflow.timeline.daemon import Daemon
    from daskflow.timeline.targets import resolve_timeline
    from tests.timeline.helpers import write_pipeline
    from tests.timeline.test_daemon import Clock, FakePool

    path = tmp_path / "catalog.sqlite"
    plan = plan_backfill(str(write_pipeline(tmp_path)), "2024-01-01...2024-01-05", chunk_size=1)
    backfills = Backfills(TimelineStore(path))
    backfill_id = backfills.create(plan, max_concurrent_runs=2)

    @daskflow.asset
    def numbers():
        return [1]

    daemon = Daemon(resolve_timeline(daskflow.Definitions(assets=[numbers]), "p.py"), catalog=path,
                    clock=Clock(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)))
    daemon.pool = FakePool()
    daemon.start()
    daemon.step()
    assert len(daemon.pool.started) == 2 and {l.tags["backfill"] for l in daemon.pool.started} == {backfill_id}
    backfills.set_status(backfill_id, "paused")
    daemon.pool.finish(daemon.pool.started[0].run_id, -9)
    daemon.step()  # the crashed launcher's chunk goes back to the queue, but a paused backfill waits
    assert len(daemon.pool.started) == 2
    daemon.stop(grace_s=0)
    assert os.path.exists(path)
