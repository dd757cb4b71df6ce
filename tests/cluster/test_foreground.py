"""`daskflow cluster scheduler` / `daskflow cluster worker ADDRESS`: the parts for separate machines.

Both run in the foreground (the process becomes distributed's own CLI), so the
test starts them as background processes, checks the worker joined a
scheduler that has the daskflow preload, and stops them with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys

import pytest

from tests.cluster.helpers import REPO, environment, fetch, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_foreground_scheduler_and_worker(tmp_path):
    with contextlib.ExitStack() as stack:
        _run_foreground(tmp_path, stack)


def _run_foreground(tmp_path, stack):
    env = environment(tmp_path)
    scheduler_file = tmp_path / "scheduler.json"
    cli = [sys.executable, "-m", "daskflow.cli", "cluster"]
    processes = []
    logs = {name: stack.enter_context(open(tmp_path / f"{name}.log", "wb")) for name in ("scheduler", "worker")}
    try:
        scheduler = subprocess.Popen(
            [*cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "0", "--", "--scheduler-file", str(scheduler_file)],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=logs["scheduler"],
        )  # fmt: skip
        processes.append(scheduler)
        identity = wait_for(lambda: scheduler_file.exists() and scheduler_file.read_text() and json.loads(scheduler_file.read_text()), 60, "the scheduler file")
        address = identity["address"]
        worker = subprocess.Popen(
            [*cli, "worker", address, "--threads", "2", "--name", "edge-worker", "--", "--host", "127.0.0.1", "--no-nanny"],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=logs["worker"],
        )  # fmt: skip
        processes.append(worker)
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            assert [w["name"] for w in workers.values()] == ["edge-worker"]
            assert [w["nthreads"] for w in workers.values()] == [2]
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
            plugins = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
            assert "daskflow-recorder" in plugins
        assert fetch(f"http://127.0.0.1:{identity['services']['dashboard']}/daskflow/")[0] == 200
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    assert all(p.returncode is not None for p in processes)
