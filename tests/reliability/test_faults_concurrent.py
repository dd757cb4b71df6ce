"""Eight concurrent ``daskflow run`` processes on one catalog and one shared cluster.

Every run must succeed with exact row counts (8 runs x 4 asset-partitions),
no "database is locked" anywhere in the output, every row matching its file,
and no run left ``running``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from daskflow.catalog import Catalog

from .conftest import write_pipeline
from .fault_checks import assert_catalog_matches_disk, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RUNS = 8
PIPELINE = '''
from daskflow.definitions import asset


@asset(io="json")
def numbers():
    return list(range(100))


@asset(io="json")
def evens(numbers):
    return [n for n in numbers if n % 2 == 0]


@asset(io="json")
def odds(numbers):
    return [n for n in numbers if n % 2]


@asset(io="json")
def total(evens, odds):
    return [sum(evens) + sum(odds)]
'''


def test_eight_concurrent_runs_on_one_catalog(reliability_cluster, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, PIPELINE)
    env = cli_env(daskflow_home)
    procs = [subprocess.Popen([sys.executable, "-m", "daskflow.cli", "run", path, "--address",
                               reliability_cluster.scheduler_address, "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(RUNS)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=240))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stdout + stderr
        assert "database is locked" not in stdout + stderr
        assert "Traceback" not in stderr
        assert {a["status"] for a in json.loads(stdout)["assets"]} == {"success"}
    catalog = Catalog()
    runs = catalog.runs(limit=None)
    assert len(runs) == RUNS and {r.status for r in runs} == {"success"}
    rows = assert_catalog_matches_disk(catalog, daskflow_home / "data")
    assert len(rows) == RUNS * 4
    assert len({m.path for m in rows}) == RUNS * 4
    for run in runs:
        assert sorted(m.asset_key for m in catalog.materializations(run_id=run.run_id)) == [
            "evens", "numbers", "odds", "total"]
    assert len(list((daskflow_home / "data").rglob("*.json"))) == RUNS * 4
    assert catalog.latest_materialization("total").rows == 1
