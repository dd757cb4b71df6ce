"""End to end: `daskflow cluster up`, a pipeline from two clients at once, status, pages, `down`.

Real processes throughout: the CLI in subprocesses, a `dask scheduler` with
the daskflow preload and two `dask worker` processes started by `cluster up`.
The tests in this module run in order against one cluster; the last one
stops it and checks no process is left.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.cluster.helpers import (
    alive,
    daskflow,
    environment,
    fetch,
    fetch_json,
    pipeline_command,
    process_tree,
    processes_mentioning,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PAGES = {
    "predictions": ["daskflow-predictions-duration", "daskflow-predictions-memory", "daskflow-predictions-table"],
    "decisions": ["daskflow-decisions-table", "daskflow-steering-summary"],
    "assets": ["daskflow-assets-graph", "daskflow-assets-table"],
    "model": ["daskflow-model-quality", "daskflow-drift"],
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("cluster-home")
    result = daskflow(home, "cluster", "up", "--workers", "2", "--threads", "1", "--scheduler-port", "0", "--dashboard-port", "0", "--json")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    state = {"home": home, "info": info, "tree": process_tree([info["pids"]["scheduler"], *info["pids"]["workers"]])}
    yield state
    # safety net if a test failed before `down`
    if (home / "cluster.json").exists():
        daskflow(home, "cluster", "down", "--grace", "5", check=False)


def base_url(cluster) -> str:
    return cluster["info"]["dashboard_link"].rsplit("/", 1)[0]


def test_up_writes_the_cluster_file_and_starts_real_processes(cluster):
    info = cluster["info"]
    on_disk = json.loads((cluster["home"] / "cluster.json").read_text())
    assert on_disk == info
    assert info["scheduler_address"].startswith("tcp://127.0.0.1:")
    assert info["dashboard_link"].startswith("http://127.0.0.1:")
    assert info["tls"] is None
    assert len(info["pids"]["workers"]) == 2
    assert alive([info["pids"]["scheduler"], *info["pids"]["workers"]]) == [info["pids"]["scheduler"], *info["pids"]["workers"]]
    assert (cluster["home"] / "cluster" / "scheduler.log").exists()


def test_up_refuses_a_second_cluster_on_the_same_home(cluster):
    result = daskflow(cluster["home"], "cluster", "up", "--scheduler-port", "0", "--dashboard-port", "0", check=False)
    assert result.returncode != 0
    assert "already running" in result.stderr and "cluster down" in result.stderr


def test_status_reports_workers_threads_memory_and_steering(cluster):
    status = json.loads(daskflow(cluster["home"], "cluster", "status", "--json").stdout)
    assert status["scheduler_address"] == cluster["info"]["scheduler_address"]
    assert status["n_workers"] == 2 and status["threads"] == 2
    assert status["memory_limit_bytes"] > 0 and status["memory_bytes"] > 0
    assert status["steering_mode"] == "steer"
    assert status["recorder"] is True and status["dashboard_pages"] is True
    text = daskflow(cluster["home"], "cluster", "status").stdout
    assert "workers: 2" in text and "steering: steer" in text


def test_two_clients_run_pipelines_at_the_same_time(cluster):
    command, expected_assets = pipeline_command()
    env = environment(cluster["home"])
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(cluster["home"])) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    cluster["expected_assets"] = expected_assets


def test_every_page_is_served_with_its_plots(cluster):
    index_status, index = fetch(base_url(cluster) + "/daskflow/")
    assert index_status == 200
    for page, names in PAGES.items():
        assert f'href="/daskflow/{page}"' in index
        status, body = fetch(f"{base_url(cluster)}/daskflow/{page}")
        assert status == 200, page
        for name in names:
            assert f'id="{name}-ref"' in body, (page, name)


def test_json_endpoints_hold_data_from_the_run(cluster):
    base = base_url(cluster)
    predictions = wait_for(lambda: (p := fetch_json(base + "/daskflow/api/predictions")) and p["rows_seen"] > 0 and p, what="recorded rows")
    categories = {c["category"] for c in predictions["categories"]}
    assets = fetch_json(base + "/daskflow/api/assets")
    nodes = {n["asset"]: n["status"] for n in assets["nodes"]}
    assert len(assets["runs"]) == 2 and all(r["status"] == "success" for r in assets["runs"])
    assert nodes and set(nodes.values()) == {"materialized"}
    assert assets["edges"], "lineage edges between the pipeline's assets"
    assert set(nodes) == cluster["expected_assets"]
    assert cluster["expected_assets"] <= categories
    decisions = fetch_json(base + "/daskflow/api/decisions")
    assert decisions["present"] and decisions["count"] > 0
    model = fetch_json(base + "/daskflow/api/model")
    assert model["steering"]["mode"] == "steer"
    assert model["quality"]["series"], "a rolling-error point from the run"


def test_down_stops_every_process_it_started(cluster):
    tree = cluster["tree"]
    assert len(tree) >= 3
    result = daskflow(cluster["home"], "cluster", "down")
    assert "stopped" in result.stdout
    assert alive(tree) == []
    assert processes_mentioning(str(cluster["home"])) == []
    assert not (cluster["home"] / "cluster.json").exists()
    again = daskflow(cluster["home"], "cluster", "down", check=False)
    assert again.returncode != 0 and "no cluster file" in again.stderr


def test_a_worker_that_cannot_start_fails_up_with_its_log_and_leaves_nothing(tmp_path, monkeypatch):
    # A bad --memory-limit is now refused by the CLI before anything starts (hostile-input rule), so the
    # worker is broken another way: a worker preload that cannot be imported (the scheduler is unaffected).
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PRELOAD", "['daskflow_no_such_preload_zz']")
    result = daskflow(tmp_path, "cluster", "up", "--workers", "1", "--scheduler-port", "0", "--dashboard-port", "0", check=False)
    assert result.returncode != 0
    assert "worker process" in result.stderr and "worker-0.log" in result.stderr
    assert processes_mentioning(str(tmp_path)) == []
    assert not (tmp_path / "cluster.json").exists()


def test_a_bad_memory_limit_is_refused_before_anything_starts(tmp_path):
    result = daskflow(tmp_path, "cluster", "up", "--workers", "1", "--memory-limit", "not-a-size", check=False)
    assert result.returncode == 2 and "--memory-limit" in result.stderr and "Traceback" not in result.stderr
    assert processes_mentioning(str(tmp_path)) == [] and not (tmp_path / "cluster").exists()
