"""``daskflow cluster up --daemon PIPELINE``: the daemon as one more recorded process of the cluster.

Design note
-----------
The cluster file is the only record of what ``cluster up`` started
(:mod:`daskflow.cluster`); the daemon joins it as ``pids["daemon"]`` (plus
``daemon: {pipelines, log}``), so ``cluster down`` stops it first, with the
same SIGTERM-then-SIGKILL as the other processes. The pipelines are loaded
here once before anything starts, so a bad cron or target is one error line
and no cluster is left behind; the daemon process itself
(``python -m daskflow.cli daemon PIPELINE... --address ADDR``) counts as
started once it holds the catalog's daemon lease.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from daskflow.errors import ClusterError

__all__ = ["check_pipelines", "start_cluster_daemon"]


def check_pipelines(pipelines: list[str]) -> None:
    """Load the pipelines' schedules and sensors (raises their one-line definition errors)."""
    from daskflow.timeline.targets import load_timeline

    load_timeline(pipelines)


def start_cluster_daemon(info: dict[str, Any], pipelines: list[str], timeout_s: float = 60.0) -> dict[str, Any]:
    """Start the daemon against ``info``'s scheduler, record it in the cluster file; returns the new info."""
    import os

    from daskflow import cluster as cluster_lib
    from daskflow.timeline.store import TimelineStore

    targets = [os.path.abspath(p) if p.endswith(".py") else p for p in pipelines]
    log_path = cluster_lib.log_dir() / "daemon.log"
    command = [sys.executable, "-m", "daskflow.cli", "daemon", *targets, "--address", info["scheduler_address"]]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=cluster_lib.child_environment(), start_new_session=True)
    store = TimelineStore()
    deadline = time.monotonic() + timeout_s
    while True:
        lease = store.lease()
        if lease is not None and int(lease["pid"]) == process.pid:
            break
        if process.poll() is not None:
            raise ClusterError(f"the daemon exited with code {process.returncode} while starting; see {log_path}. "
                               f"Last lines:\n{cluster_lib.tail(log_path)}")
        if time.monotonic() > deadline:
            cluster_lib.stop_processes([process.pid], grace_s=5.0)
            raise ClusterError(f"the daemon did not take the catalog lease within {timeout_s:g} s; see {log_path}")
        time.sleep(0.1)
    info = {**info, "pids": {**info["pids"], "daemon": process.pid},
            "daemon": {"pipelines": targets, "log": str(log_path)}}
    cluster_lib.write_cluster_file(info)
    return info
