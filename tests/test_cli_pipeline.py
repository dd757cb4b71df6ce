"""The pipeline CLI: run / assets / lineage / runs, through click's CliRunner and one real subprocess."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from distributed import LocalCluster

from daskflow.cli import main

pytestmark = pytest.mark.timeout(120)

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

PIPELINE = '''
from daskflow.definitions import asset


@asset(io="json", code_version="1")
def numbers():
    return [1, 2, 3]


@asset(io="json", code_version="1")
def total(numbers):
    return sum(numbers)
'''

FAILING = PIPELINE + '''

@asset(io="json")
def broken(total):
    raise ZeroDivisionError("cannot divide the total by zero")


@asset(io="json")
def after(broken):
    return broken
'''


@pytest.fixture(scope="module")
def address():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def pipeline_file(tmp_path, body: str = PIPELINE) -> str:
    path = tmp_path / "pipeline.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_run_human_and_json(address, daskflow_home, tmp_path):
    path = pipeline_file(tmp_path)
    human = invoke("run", path, "--address", address)
    assert human.exit_code == 0, human.output
    assert "numbers" in human.stdout and "total" in human.stdout and ": success in" in human.stdout
    as_json = invoke("run", path, "--address", address, "--json", "--select", "total")
    assert as_json.exit_code == 0
    document = json.loads(as_json.stdout)
    assert document["status"] == "success"
    assert [(a["asset"], a["status"]) for a in document["assets"]] == [("total", "success")]
    stale = json.loads(invoke("run", path, "--address", address, "--json", "--only-stale").stdout)
    assert {a["status"] for a in stale["assets"]} == {"stale-skipped"}


def test_failed_run_exits_1_with_traceback(address, daskflow_home, tmp_path):
    result = invoke("run", pipeline_file(tmp_path, FAILING), "--address", address)
    assert result.exit_code == 1
    assert "broken failed: ZeroDivisionError: cannot divide the total by zero" in result.stderr
    assert "Traceback" in result.stderr
    assert "after skipped: upstream broken did not succeed" in result.stdout


def test_bad_pipeline_file_one_line_exit_2_nothing_written(daskflow_home, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from daskflow.definitions import asset\n\n@asset\ndef broken(:\n    pass\n")
    for args in (["run", str(bad)], ["run", str(tmp_path / "missing.py")], ["assets", str(bad)]):
        result = invoke(*args)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "bad.py:4" in invoke("run", str(bad)).stderr
    assert list(daskflow_home.iterdir()) == []  # no catalog, no data


def test_unknown_selection_exits_2(address, daskflow_home, tmp_path):
    result = invoke("run", pipeline_file(tmp_path), "--address", address, "--select", "totl")
    assert result.exit_code == 2 and "'total'" in result.stderr  # did-you-mean
    assert len(result.stderr.strip().splitlines()) == 1


def test_assets_lineage_and_runs(address, daskflow_home, tmp_path):
    path = pipeline_file(tmp_path)
    before = json.loads(invoke("assets", path, "--json").stdout)["assets"]
    assert [(a["asset"], a["stale"], a["last_materialization_id"]) for a in before] == [
        ("numbers", True, None), ("total", True, None)]
    run = json.loads(invoke("run", path, "--address", address, "--json").stdout)
    after = json.loads(invoke("assets", path, "--json").stdout)["assets"]
    assert [(a["asset"], a["stale"]) for a in after] == [("numbers", False), ("total", False)]
    text = invoke("assets", path).stdout
    assert "fresh" in text and "never" not in text

    ids = {a["asset"]: a["materialization_id"] for a in run["assets"]}
    lineage = json.loads(invoke("lineage", "total", "--pipeline", path, "--json").stdout)
    assert lineage["declared"] == {"upstream": ["numbers"], "downstream": []}
    assert [(n["asset"], n["materialization_id"]) for n in lineage["upstream"]] == [
        ("total", ids["total"]), ("numbers", ids["numbers"])]
    down = json.loads(invoke("lineage", "numbers", "--json").stdout)["downstream"]
    assert [n["materialization_id"] for n in down] == [ids["numbers"], ids["total"]]
    assert f"#{ids['numbers']}" in invoke("lineage", "total").stdout

    runs = json.loads(invoke("runs", "--json").stdout)["runs"]
    assert runs[0]["run_id"] == run["run_id"] and runs[0]["status"] == "success"
    events = json.loads(invoke("runs", run["run_id"][:10], "--json").stdout)["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run-start" and kinds[-1] == "run-finish" and kinds.count("asset-success") == 2
    assert "asset-success" in invoke("runs", run["run_id"]).stdout
    missing = invoke("runs", "ffffffffffff")
    assert missing.exit_code == 2 and "no run" in missing.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_daskflow_run_example_in_a_subprocess_on_an_embedded_cluster(tmp_path):
    env = {**os.environ, "DASKFLOW_HOME": str(tmp_path / "home")}
    env.pop("DASK_DASKFLOW__CLUSTER__FILE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "daskflow.cli", "run", str(EXAMPLES / "etl_pipeline.py"), "--json"],
        env=env, capture_output=True, text=True, timeout=220, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout.strip().splitlines()[-1])
    assert document["status"] == "success"
    assert {a["status"] for a in document["assets"]} == {"success"}
    assert (tmp_path / "home" / "catalog.sqlite").exists()
    partial = subprocess.run(  # a partition range needs the full week for the weekly report: exit 2, one line
        [sys.executable, "-m", "daskflow.cli", "run", str(EXAMPLES / "etl_pipeline.py"), "--partition",
         "2024-01-01...2024-01-02"], env={**env, "DASKFLOW_HOME": str(tmp_path / "other")},
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert partial.returncode == 2 and "outside the selected partitions" in partial.stderr
    assert not (tmp_path / "other").exists()
