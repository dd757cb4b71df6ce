"""Launcher log retention: a pure rule over (run id, modified time), applied by the daemon."""

import datetime as dt
import os

import dask.config

from daskflow.timeline.logs import (
    PRUNE_INTERVAL_S,
    LogFile,
    logs_to_prune,
    prune_launcher_logs,
)
from tests.timeline.test_daemon import Clock, make_daemon

DAY_S = 86400.0
NOW_S = 1_700_000_000.0


def logs(*ages_days):
    return [LogFile(f"r{i}", NOW_S - age * DAY_S) for i, age in enumerate(ages_days)]


def test_logs_older_than_the_max_age_are_pruned_oldest_first():
    assert logs_to_prune(logs(1, 9, 3, 8), NOW_S, max_age_s=7 * DAY_S, max_files=None) == ["r1", "r3"]


def test_only_the_newest_max_files_are_kept():
    assert logs_to_prune(logs(1, 9, 3, 8), NOW_S, max_age_s=None, max_files=2) == ["r1", "r3"]
    assert logs_to_prune(logs(1, 2), NOW_S, max_age_s=None, max_files=2) == []


def test_both_rules_apply_and_none_switches_a_rule_off():
    assert logs_to_prune(logs(1, 2, 3, 30), NOW_S, max_age_s=7 * DAY_S, max_files=2) == ["r3", "r2"]
    assert logs_to_prune(logs(1, 400), NOW_S, max_age_s=None, max_files=None) == []


def test_logs_of_runs_in_flight_are_never_pruned_nor_counted():
    assert logs_to_prune(logs(30, 1, 2), NOW_S, max_age_s=7 * DAY_S, max_files=1, active={"r0"}) == ["r2"]


def test_prune_launcher_logs_removes_the_chosen_files_only(tmp_path):
    for run_id, age_days in (("old", 10), ("new", 1), ("running", 20)):
        path = tmp_path / f"{run_id}.log"
        path.write_text("run ...\n")
        os.utime(path, (NOW_S - age_days * DAY_S,) * 2)
    (tmp_path / "notes.txt").write_text("not a launcher log")
    removed = prune_launcher_logs(tmp_path, NOW_S, 7 * DAY_S, None, active={"running"})
    assert removed == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.log", "notes.txt", "running.log"]
    assert prune_launcher_logs(tmp_path / "missing", NOW_S, 7 * DAY_S, None) == []


def test_the_daemon_prunes_on_its_first_step_and_then_every_interval(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    now = dt.datetime.fromtimestamp(NOW_S, dt.timezone.utc)
    clock = Clock(now)
    with dask.config.set({"daskflow.timeline.log-dir": str(log_dir), "daskflow.timeline.log-max-age": "7d",
                          "daskflow.timeline.log-max-files": None}):
        daemon = make_daemon(tmp_path, clock=clock)

    def add_log(name, age_days):
        path = log_dir / f"{name}.log"
        path.write_text("x\n")
        os.utime(path, (NOW_S - age_days * DAY_S,) * 2)

    add_log("a", 8)
    add_log("b", 1)
    daemon.step()
    assert sorted(p.stem for p in log_dir.glob("*.log")) == ["b"]
    add_log("c", 30)
    clock.advance(seconds=PRUNE_INTERVAL_S / 2)
    daemon.step()  # too soon: nothing pruned
    assert (log_dir / "c.log").exists()
    clock.advance(seconds=PRUNE_INTERVAL_S)
    daemon.step()
    assert sorted(p.stem for p in log_dir.glob("*.log")) == ["b"]
    assert daemon.state.logs_pruned == 2


def test_retention_settings_have_defaults():
    from daskflow.timeline.logs import retention_from_config

    max_age_s, max_files = retention_from_config()
    assert max_age_s == 7 * DAY_S and max_files == 10000
