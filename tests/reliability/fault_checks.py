"""Invariants every fault test asserts after the fault (shared by ``test_faults_*.py``).

* no run is left ``running``;
* every catalog row's file exists under the storage root and re-reads to the
  recorded rows and bytes;
* no temp file (``.tmp-``) and no file outside the storage root;
* a CLI's stderr holds at most ``max_lines`` error lines and no traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import pyarrow.parquet as pq

from daskflow.catalog import Catalog


def rows_of(path: str) -> int:
    if path.endswith(".parquet"):
        return pq.read_metadata(path).num_rows
    value = json.loads(pathlib.Path(path).read_text())
    return len(value) if isinstance(value, list) else 1


def assert_catalog_matches_disk(catalog: Catalog, storage_root: pathlib.Path) -> list:
    """The invariants above; returns every materialization."""
    assert catalog.runs(limit=None, status="running") == []
    rows = catalog.materializations()
    root = str(storage_root.resolve())
    for m in rows:
        assert os.path.realpath(m.path).startswith(root + os.sep), m
        assert os.path.exists(m.path), m
        assert m.bytes == os.path.getsize(m.path), m
        assert m.rows == rows_of(m.path), m
    if storage_root.exists():
        temps = [p for p in storage_root.rglob("*") if ".tmp-" in p.name]
        assert temps == [], temps
    return rows


#: progress lines the CLI prints on stderr before a run (issue #13): not errors
PHASE_LINES = ("starting embedded cluster", "cluster ready, dashboard", "connected to ", "note: ")


def assert_one_line_error(stderr: str, max_lines: int = 1, contains: str | None = None) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  ")  # Python warnings: "file:line: XWarning: ..." + source line
             and not line.startswith(PHASE_LINES)]
    assert "Traceback" not in stderr, stderr
    assert len(lines) <= max_lines, stderr
    if contains is not None:
        assert any(contains in line for line in lines), stderr


def cli(args: list[str], env: dict, timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def cli_env(home: pathlib.Path, **extra: str) -> dict:
    return {**os.environ, "DASKFLOW_HOME": str(home), "PYTHONPATH": os.getcwd(), **extra}


def until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
