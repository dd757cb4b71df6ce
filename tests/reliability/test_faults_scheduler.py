"""SIGKILL the scheduler mid-run: the client ends with ONE error line, exit 1, and a consistent catalog.

A real ``dask scheduler`` and ``dask worker`` (subprocesses in their own
sessions) and ``daskflow run --address`` in a third; the scheduler is
SIGKILLed while two assets run. The run must end (not left ``running``), the
already-written row must match its file, and stderr must hold one line naming
the run and ``--resume`` — not a distributed traceback, not one line per asset.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from daskflow.catalog import Catalog

from .conftest import write_pipeline
from .fault_checks import (
    assert_catalog_matches_disk,
    assert_one_line_error,
    cli_env,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PIPELINE = '''
import os, time
from daskflow.definitions import asset


@asset(io="json")
def early():
    return [1, 2, 3]


@asset(io="json")
def slow(early):
    open(os.path.join("{markers}", "slow-started"), "w").close()
    time.sleep(30)
    return early + [4]


@asset(io="json")
def other(early):
    time.sleep(30)
    return early


@asset(io="json")
def after(slow, other):
    return len(slow)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_killed_scheduler_ends_the_run_with_one_line_and_a_consistent_catalog(daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    env = cli_env(daskflow_home, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    address = f"tcp://127.0.0.1:{_free_port()}"
    scheduler = _spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                        "--no-dashboard"], env)
    worker = client = None
    try:
        worker = _spawn(["distributed.cli.dask_worker", address, "--nthreads", "2", "--no-dashboard",
                         "--no-nanny"], env)
        client = subprocess.Popen([sys.executable, "-m", "daskflow.cli", "run", path, "--address", address],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        until(lambda: (tmp_path / "markers" / "slow-started").exists() or client.poll() is not None, 120,
              "slow to start")
        assert client.poll() is None, client.communicate()
        os.killpg(scheduler.pid, signal.SIGKILL)
        stdout, stderr = client.communicate(timeout=120)
    finally:
        for proc in (client, worker, scheduler):
            if proc is not None:
                _kill(proc)
    assert client.returncode == 1, stdout + stderr
    assert_one_line_error(stderr, contains="went away during the run")
    assert "--resume" in stderr
    catalog = Catalog()
    [run] = catalog.runs(limit=None)
    assert run.status == "failure"
    rows = assert_catalog_matches_disk(catalog, daskflow_home / "data")
    assert [m.asset_key for m in rows] == ["early"]
    # the unfinished assets wrote nothing (they were killed before returning)
    assert sorted(p.parent.parent.name for p in (daskflow_home / "data").rglob("*.json")) == ["early"]
