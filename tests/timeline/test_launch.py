"""The launcher: a claimed run starts at most once, whoever launches it."""

import time

import pytest

from daskflow.catalog import Catalog
from daskflow.errors import SelectionError
from daskflow.timeline import launch
from daskflow.timeline.launch import EXIT_ALREADY_STARTED, EXIT_LAUNCH_ERROR, LauncherPool, run_launch
from daskflow.timeline.store import Launch


def spec_for(tmp_path, run_id="r1"):
    return {"run_id": run_id, "pipeline": str(tmp_path / "p.py"), "selection": "a", "partitions": None,
            "tags": {"trigger": "schedule"}, "catalog": str(tmp_path / "catalog.sqlite"), "address": None}


def test_a_run_that_already_started_is_not_materialized_again(tmp_path, monkeypatch):
    Catalog(tmp_path / "catalog.sqlite").start_run("r1")
    monkeypatch.setattr(launch, "_materialize", lambda spec: pytest.fail("materialized twice"))
    assert run_launch(spec_for(tmp_path)) == EXIT_ALREADY_STARTED


def test_losing_the_race_to_start_the_run_counts_as_already_started(tmp_path, monkeypatch):
    def racing(spec):  # another launcher's start_run wins between our check and ours
        catalog = Catalog(spec["catalog"])
        catalog.start_run(spec["run_id"])
        catalog.start_run(spec["run_id"])

    monkeypatch.setattr(launch, "_materialize", racing)
    assert run_launch(spec_for(tmp_path)) == EXIT_ALREADY_STARTED


def test_a_plan_error_is_one_error_line(tmp_path, monkeypatch, capsys):
    def bad(spec):
        raise SelectionError("selection 'a' matches no asset.\nKnown: b")

    monkeypatch.setattr(launch, "_materialize", bad)
    assert run_launch(spec_for(tmp_path)) == EXIT_LAUNCH_ERROR
    assert capsys.readouterr().out == "error: selection 'a' matches no asset. Known: b\n"


@pytest.mark.slow
def test_launcher_process_reports_a_load_error_as_its_last_log_line(tmp_path):
    pool = LauncherPool(1, str(tmp_path / "catalog.sqlite"), None, tmp_path / "logs")
    pool.start(Launch("schedule", "s", "k", 0.0, "r1", str(tmp_path / "missing.py"), "a"))
    assert not pool.has_capacity()
    deadline = time.monotonic() + 60
    done = []
    while not done and time.monotonic() < deadline:
        done = pool.reap()
        time.sleep(0.05)
    (run_id, code, line), = done
    assert (run_id, code) == ("r1", EXIT_LAUNCH_ERROR)
    assert line.startswith("error: pipeline file") and "does not exist" in line


def _reap_one(pool, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = pool.reap()
        if done:
            return done
        time.sleep(0.05)
    raise AssertionError(f"no launcher finished within {timeout_s} s")


@pytest.mark.slow
@pytest.mark.parametrize("reuse", [True, False])
def test_the_same_load_error_line_with_warm_and_one_run_launchers(tmp_path, reuse):
    pool = LauncherPool(1, str(tmp_path / "catalog.sqlite"), None, tmp_path / "logs", reuse=reuse)
    try:
        pool.start(Launch("schedule", "s", "k", 0.0, "r1", str(tmp_path / "missing.py"), "a"))
        (run_id, code, line), = _reap_one(pool)
        assert (run_id, code) == ("r1", EXIT_LAUNCH_ERROR) and "does not exist" in line
    finally:
        pool.close()


@pytest.mark.slow
def test_a_warm_launcher_serves_run_after_run_each_with_its_own_log(tmp_path):
    pool = LauncherPool(1, str(tmp_path / "catalog.sqlite"), None, tmp_path / "logs", reuse=True)
    try:
        pids = []
        for run_id in ("r1", "r2"):
            pool.start(Launch("schedule", "s", run_id, 0.0, run_id, str(tmp_path / f"{run_id}-missing.py"), "a"))
            pids.append(pool.in_flight[run_id].pid)
            (done_id, code, line), = _reap_one(pool)
            assert (done_id, code) == (run_id, EXIT_LAUNCH_ERROR) and f"{run_id}-missing.py" in line
        assert pids[0] == pids[1]  # one process, two runs
        assert "r2-missing" not in pool.log_path("r1").read_text()
        launcher = pool.idle[0]
    finally:
        pool.close()
    launcher.process.wait(timeout=30)  # no more runs: it exits


@pytest.mark.slow
def test_a_warm_launcher_killed_mid_run_is_reaped_with_its_signal(tmp_path):
    import os
    import signal

    pool = LauncherPool(1, str(tmp_path / "catalog.sqlite"), None, tmp_path / "logs", reuse=True)
    try:
        pool.start(Launch("schedule", "s", "k", 0.0, "r1", str(tmp_path / "missing.py"), "a"))
        os.kill(pool.in_flight["r1"].pid, signal.SIGKILL)
        (run_id, code, _), = _reap_one(pool)
        assert run_id == "r1" and code in (-signal.SIGKILL, EXIT_LAUNCH_ERROR)  # killed, or it had just reported
        assert pool.idle == [] or code == EXIT_LAUNCH_ERROR
    finally:
        pool.close()
