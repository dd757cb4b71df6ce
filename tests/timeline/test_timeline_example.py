"""examples/timeline_pipeline.py: its specs, and daemon iterations with a fixed clock (fake launcher pool)."""

import datetime as dt
import pathlib

import pytest

from daskflow.catalog import Catalog
from daskflow.timeline.daemon import Daemon
from daskflow.timeline.targets import load_timeline
from tests.timeline.test_daemon import Clock, FakePool

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "timeline_pipeline.py"


@pytest.fixture(autouse=True)
def inbox(tmp_path, monkeypatch):
    import dask.config

    monkeypatch.setenv("TIMELINE_EXAMPLE_INBOX", str(tmp_path / "inbox"))
    with dask.config.set({"daskflow.timeline.lease-timeout": "0s"}):
        yield tmp_path / "inbox"


def test_the_example_declares_a_daily_schedule_a_file_sensor_and_an_asset_sensor():
    timeline = load_timeline([str(EXAMPLE)])
    (nightly,) = timeline.schedules
    assert (nightly.spec.name, nightly.spec.cron, nightly.asset_keys) == ("nightly", "10 0 * * *", ("readings",))
    assert nightly.partitions is not None and nightly.spec.tags == {"pool": "warehouse"}
    sensors = {s.spec.name: s for s in timeline.sensors}
    assert set(sensors) == {"file_sensor", "stats_sensor"}
    assert sensors["file_sensor"].asset_keys == ("landed_files",)
    assert sensors["stats_sensor"].asset_keys == ("daily_stats",)


def test_daemon_iterations_with_a_fixed_clock_launch_the_night_the_files_and_the_new_partition(tmp_path, inbox):
    clock = Clock(dt.datetime(2024, 3, 5, 0, 9, 30, tzinfo=dt.timezone.utc))
    daemon = Daemon(load_timeline([str(EXAMPLE)]), catalog=tmp_path / "catalog.sqlite", clock=clock)
    daemon.pool = FakePool()
    daemon.start()
    daemon.step()  # first sight: nothing due, no inbox, no readings yet
    assert daemon.store.launches() == []
    inbox.mkdir()
    (inbox / "a.csv").write_text("x\n1\n")
    clock.advance(minutes=1)  # 00:10:30: the night of 2024-03-04 is due
    daemon.step()
    launches = {(l.trigger, l.origin): l for l in daemon.store.launches()}
    night = launches[("schedule", "nightly")]
    assert night.partitions == "2024-03-04" and night.selection == "readings"
    assert launches[("sensor", "file_sensor")].key == "a.csv"
    catalog = Catalog(daemon.store.path)  # the night's run materializes readings[2024-03-04]
    catalog.start_run(night.run_id, tags=night.tags)
    catalog.record_materialization(night.run_id, "readings", {"path": "/d/r", "format": "json"},
                                   partition="2024-03-04")
    catalog.finish_run(night.run_id, "success")
    clock.advance(seconds=61)
    daemon.step()
    stats = daemon.store.launches(origin="stats_sensor")
    assert len(stats) == 1 and stats[0].partitions == ["2024-03-04"] and stats[0].selection == "daily_stats"
    assert sorted(l.run_id for l in daemon.pool.started) == sorted(l.run_id for l in daemon.store.launches()
                                                                  if l.run_id)
    assert daemon.store.launches(origin="nightly")[0].tags["pool"] == "warehouse"


def test_the_example_materializes_two_days_and_its_file_asset(daskflow_home, inbox):
    from distributed import Client, LocalCluster

    from daskflow.execution import materialize

    inbox.mkdir()
    (inbox / "a.csv").write_text("x\n1\n")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        result = materialize(str(EXAMPLE), selection="readings,daily_stats,landed_files",
                             partitions="2024-01-01...2024-01-02", client=client, progress=False)
    assert result.ok, result.to_dict()
    assert len(result.by_status("success")) == 2 * 2 + 1
