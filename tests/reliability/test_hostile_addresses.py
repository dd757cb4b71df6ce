"""Addresses and the cluster file under hostile conditions (#16.5).

A typo'd address, a dead scheduler, a stale cluster file (``daskflow cluster up``
then a reboot / kill -9), a port answered by something that is not a scheduler:
each is one ``error:`` line, exit 2, within the short probe/connect timeouts —
never distributed's 30 s connect timeout and a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import threading

import dask.config
import pytest
from click.testing import CliRunner

from daskflow import connection
from daskflow.cli import main
from daskflow.errors import ClusterError

PIPELINE = "from daskflow import asset\n\n@asset\ndef a():\n    return 1\n"


def dead_pid() -> int:
    """A pid that is not running (a finished child of ours, reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_cluster_file(home, content) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (home / "cluster.json").write_text(text)


def run_cli(argv, home):
    return CliRunner().invoke(main, argv, env={"DASKFLOW_HOME": str(home)})


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("tcp://localhost:1", "tcp://localhost:1"),
    ("TLS://host.example.org:8786", "tls://host.example.org:8786"),
    ("ws://[::1]:8786", "ws://[::1]:8786"),
    ("  tcp://h:2  ", "tcp://h:2"),
    ("inproc://10.0.0.1/123/1", "inproc://10.0.0.1/123/1"),
])
def test_parse_address_normalizes(address, expected):
    assert connection.parse_address(address) == expected


@pytest.mark.parametrize("address", [
    "", " ", None, 8786, "tcp://", "tcp://:1", "h", "h:", "h:abc", "h:0", "h:65536", "h:-1", "http://h:1",
    "tcp://a b:1", "tcp://h:1/x", "tcp://-h:1", "inproc://", "tcp://h:1:2x",
])
def test_parse_address_rejects_with_one_line(address):
    with pytest.raises(ClusterError) as info:
        connection.parse_address(address)
    assert "\n" not in str(info.value) and "HOST:PORT" in str(info.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("argv", [["run", "{p}"], ["explain", "k"], ["decisions"], ["cluster", "status"]])
def test_a_stale_cluster_file_is_reported_not_waited_on(argv, daskflow_home, tmp_path):
    pipe = tmp_path / "pipe.py"
    pipe.write_text(PIPELINE)
    write_cluster_file(daskflow_home, {"scheduler_address": f"tcp://127.0.0.1:{free_port()}",
                                       "pids": {"scheduler": dead_pid(), "workers": []}})
    result = run_cli([a.replace("{p}", str(pipe)) for a in argv], daskflow_home)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "is stale" in result.output and "daskflow cluster down" in result.output
    assert not (daskflow_home / "catalog.sqlite").exists(), "reported before a run was recorded"


@pytest.mark.timeout(30)
def test_a_cluster_file_whose_scheduler_does_not_answer_fails_fast(daskflow_home):
    write_cluster_file(daskflow_home, {"scheduler_address": f"tcp://127.0.0.1:{free_port()}",
                                       "pids": {"scheduler": os.getpid(), "workers": []}})  # alive, but not listening
    result = run_cli(["decisions"], daskflow_home)
    assert result.exit_code == 2 and "no scheduler answers" in result.output, result.output


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"scheduler_address": "http://x"}),
                                     json.dumps({"scheduler_address": None}), json.dumps({"pids": "x"})])
def test_a_corrupt_cluster_file_is_one_line(content, daskflow_home):
    write_cluster_file(daskflow_home, content)
    result = run_cli(["explain", "k"], daskflow_home)
    assert result.exit_code == 2 and "is stale" in result.output and "Traceback" not in result.output, result.output


@pytest.mark.timeout(30)
def test_a_port_that_accepts_but_never_speaks_is_a_clear_error(daskflow_home):
    """Something listens (not a scheduler) and says nothing: bounded by daskflow.cluster.connect-timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept_forever():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        with dask.config.set({"daskflow.cluster.connect-timeout": "1s"}), \
                pytest.raises(ClusterError, match="could not connect to the scheduler"):
            connection.connect(f"tcp://127.0.0.1:{server.getsockname()[1]}")
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


def test_no_address_and_no_cluster_file_is_one_line(daskflow_home):
    result = run_cli(["cluster", "status"], daskflow_home)
    assert result.exit_code == 2 and "no cluster address" in result.output, result.output
    # explain / decisions answer without a cluster from the durable audit (issue #13): never a traceback
    for argv in (["explain", "k"], ["decisions"]):
        result = run_cli(argv, daskflow_home)
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
