"""Shared helpers for the real-process cluster tests: run the CLI, run a pipeline, check pids."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "etl_pipeline.py"


def environment(home: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DASKFLOW_HOME"] = str(home)
    env.pop("DASK_INTERNAL_INHERIT_CONFIG", None)
    env["DASK_DASKFLOW__DASHBOARD__UPDATE_INTERVAL"] = "200ms"
    return env


def daskflow(home: pathlib.Path, *args: str, timeout_s: float = 90.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``daskflow ARGS`` (the installed CLI through this interpreter) with ``home``."""
    result = subprocess.run(
        [sys.executable, "-m", "daskflow.cli", *args], env=environment(home), cwd=REPO,
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"daskflow {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def pipeline_command() -> tuple[list[str], set[str]]:
    """argv of F3's ``daskflow run examples/etl_pipeline.py`` (cluster from the cluster file) and its asset keys."""
    from daskflow.loading import load_definitions

    keys = {spec.key for spec in load_definitions(str(EXAMPLE)).assets}
    return [sys.executable, "-m", "daskflow.cli", "run", str(EXAMPLE)], keys


def fetch(url: str, timeout_s: float = 20.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def fetch_json(url: str) -> dict:
    status, body = fetch(url)
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


def wait_for(condition, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def process_tree(pids: list[int]) -> list[int]:
    """``pids`` plus all their live descendants."""
    import psutil

    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found.append(pid)
            found.extend(child.pid for child in process.children(recursive=True))
        except psutil.Error:
            pass
    return found


def alive(pids: list[int]) -> list[int]:
    from daskflow.cluster import pid_alive

    return [pid for pid in pids if pid_alive(pid)]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (e.g. a test's home directory)."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(process.info["cmdline"] or []):
                found.append(process.info["pid"])
        except psutil.Error:
            pass
    return found
