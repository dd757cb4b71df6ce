"""Backfills and cancel with real processes: the CLI, launcher processes, a TCP scheduler in this process.

Each test asserts from the catalog only (materializations, run rows and their
start/end times), never from timing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from daskflow.catalog import Catalog
from tests.timeline.helpers import write_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def address():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0", host="127.0.0.1",
                      protocol="tcp", scheduler_port=0) as cluster:
        yield cluster.scheduler_address


def _sleep(monkeypatch, seconds):
    # the assets run in this process's worker threads: they read the sleep from here
    monkeypatch.setenv("DASKFLOW_TEST_SLEEP", str(seconds))


def _env(home, **extra):
    env = {**os.environ, "DASKFLOW_HOME": str(home), "PYTHONPATH": REPO, **extra}
    env.pop("DASK_INTERNAL_INHERIT_CONFIG", None)
    return env


def _cli(home, *args, env=None, timeout_s=240):
    return subprocess.run([sys.executable, "-m", "daskflow.cli", *args], env=env or _env(home), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def _wait_for(condition, timeout_s=120.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def _backfill_runs(home):
    if not (home / "catalog.sqlite").exists():
        return []
    return [r for r in Catalog(home / "catalog.sqlite").runs(limit=None) if r.tags.get("trigger") == "backfill"]


def _backfill_id(home):
    with sqlite3.connect(home / "catalog.sqlite") as raw:
        return raw.execute("SELECT backfill_id FROM timeline_backfills").fetchone()[0]


def _max_overlap(runs):
    edges = sorted([(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_a_backfill_sigkilled_half_way_then_resumed_materializes_every_partition_exactly_once(tmp_path, address,
                                                                                              monkeypatch):
    home = tmp_path / "home"
    pipeline = write_pipeline(tmp_path)
    _sleep(monkeypatch, 0.5)
    env = _env(home)
    command = subprocess.Popen(
        [sys.executable, "-m", "daskflow.cli", "backfill", str(pipeline), "--partition", "2024-01-01...2024-01-12",
         "--chunk", "2", "--max-concurrent-runs", "2", "--address", address], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: sum(r.status == "success" for r in _backfill_runs(home)) >= 2, what="two chunk runs")
    finally:
        command.send_signal(signal.SIGKILL)
        command.wait()
    done_at_kill = sum(r.status == "success" for r in _backfill_runs(home))
    assert done_at_kill < 6  # really half way
    backfill_id = _backfill_id(home)
    status = json.loads(_cli(home, "backfill", "status", backfill_id, "--json", env=env).stdout)
    assert status["status"] == "running" and status["done"] + status["running"] + status["pending"] == 12
    result = _cli(home, "backfill", "resume", backfill_id, "--address", address, "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert (final["status"], final["done"], final["failed"]) == ("done", 12, 0)
    catalog = Catalog(home / "catalog.sqlite")
    days = [f"2024-01-{d:02d}" for d in range(1, 13)]
    for asset in ("events", "daily_totals"):
        assert sorted(m.partition for m in catalog.materializations(asset_key=asset)) == days  # each once
    runs = _backfill_runs(home)
    assert len(runs) == 6 and all(r.status == "success" for r in runs)
    assert _max_overlap(runs) <= 2


def test_the_pool_limit_holds_across_a_backfill_from_its_catalog_run_times(tmp_path, address, monkeypatch):
    home = tmp_path / "home"
    pipeline = write_pipeline(tmp_path)
    _sleep(monkeypatch, 0.3)
    env = _env(home, DASK_DASKFLOW__RUNS__POOLS__WAREHOUSE="2")
    result = _cli(home, "backfill", str(pipeline), "--partition", "2024-02-01...2024-02-08", "--chunk", "1",
                  "--max-concurrent-runs", "4", "--tag", "pool=warehouse", "--address", address, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = _backfill_runs(home)
    assert len(runs) == 8 and all(r.status == "success" and r.tags["pool"] == "warehouse" for r in runs)
    assert _max_overlap(runs) <= 2


def test_runs_cancel_stops_a_running_launcher_and_marks_the_run_canceled(tmp_path, address, monkeypatch):
    home = tmp_path / "home"
    pipeline = write_pipeline(tmp_path)
    _sleep(monkeypatch, 8)
    env = _env(home)
    command = subprocess.Popen(
        [sys.executable, "-m", "daskflow.cli", "backfill", str(pipeline), "--partition", "2024-03-01...2024-03-02",
         "--chunk", "1", "--max-concurrent-runs", "1", "--address", address], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run = _wait_for(lambda: next((r for r in _backfill_runs(home) if r.status == "running"), None),
                        what="a running chunk")
        canceled = _cli(home, "runs", "cancel", run.run_id[:12], env=env)
        assert canceled.returncode == 0 and "canceled" in canceled.stdout, canceled.stdout + canceled.stderr
        assert Catalog(home / "catalog.sqlite").get_run(run.run_id).status == "canceled"
        queued = _wait_for(lambda: json.loads(_cli(home, "runs", "--json", env=env).stdout)["runs"], what="runs")
        assert any(r["run_id"] == run.run_id and r["trigger"] == "backfill" for r in queued)
        result = _cli(home, "backfill", "cancel", _backfill_id(home), env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        command.communicate(timeout=120)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    status = json.loads(_cli(home, "backfill", "status", _backfill_id(home), "--json", env=env).stdout)
    # the canceled run's partition is never done; under load the backfill may start (and even finish) the
    # next one-partition chunk before the test gets to cancel the backfill itself
    assert status["status"] == "canceled" and status["done"] <= 1 and status["canceled"] >= 1, status
    assert Catalog(home / "catalog.sqlite").get_run(run.run_id).status == "canceled"
    again = _cli(home, "runs", "cancel", run.run_id, env=env)
    assert again.returncode == 2 and again.stderr.startswith("error: run ") and "already ended" in again.stderr
