"""Real-process faults: a SIGKILLed worker (one attempt, one file, one row) and a SIGKILLed client (runs end).

Worker kill::

    source (random length) --\\
                              >-- sink = len(source)
    gate (waits for a flag) -/

``source`` finishes and is recorded; the worker holding its result is
SIGKILLed while ``sink`` still needs it, so Dask recomputes ``source`` (a
new attempt, a new file, a different length). Every catalog row must then
match its file re-read, and ``sink`` must have consumed the recorded one.

Client kill: ``daskflow run`` in a subprocess against a cluster the test
owns is SIGKILLed while ``slow`` runs; ``slow`` still writes its file
without a row. The run is marked abandoned, ``daskflow gc`` collects the
file, and ``--resume`` finishes the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import dask.config
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster

from daskflow.catalog import Catalog
from daskflow.cli import main
from daskflow.execution import materialize
from daskflow.planning import task_key

from .conftest import write_pipeline
from .fault_checks import until as _until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RECOMPUTED = '''
import os, random, time
from daskflow.definitions import asset


@asset(io="json")
def source():
    return [random.random() for _ in range(random.randint(50, 5000))]


@asset(io="json")
def gate():
    deadline = time.time() + 90
    while not os.path.exists(os.path.join("{markers}", "release")) and time.time() < deadline:
        time.sleep(0.05)
    return 1


@asset(io="json")
def sink(source, gate):
    return len(source)
'''

KILLED_CLIENT = '''
import os, time
from daskflow.definitions import asset


@asset(io="json")
def early():
    return [1, 2, 3]


@asset(io="json")
def slow(early):
    open(os.path.join("{markers}", "slow-started"), "w").close()
    time.sleep(3)
    return early + [4]


@asset(io="json")
def after(slow):
    return len(slow)
'''




def _holders(key: str, dask_scheduler=None) -> list[str]:
    task = dask_scheduler.tasks.get(key)
    return [] if task is None else [worker.address for worker in task.who_has]


def _assert_rows_match_files(catalog: Catalog, run_id: str) -> None:
    for m in catalog.materializations(run_id=run_id):
        assert os.path.exists(m.path), m
        value = json.loads(open(m.path).read())
        assert m.rows == (len(value) if isinstance(value, list) else 1), m
        assert m.bytes == os.path.getsize(m.path), m
        assert m.path.rsplit("/", 1)[-1].startswith(f"{run_id}-{m.attempt}."), m


def test_a_recomputation_after_a_worker_kill_updates_the_row_to_the_attempt_dask_used(daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, RECOMPUTED)
    run_id = uuid.uuid4().hex
    outcome: dict = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        runner = threading.Thread(target=lambda: outcome.update(
            result=materialize(path, client=client, run_id=run_id, progress=False)))
        runner.start()
        try:
            catalog = Catalog()
            first = _until(lambda: catalog.path.exists() and catalog.materializations(run_id=run_id,
                                                                                      asset_key="source"),
                           90, "source to be recorded")[0]
            key = task_key("source", None, run_id)
            holders = client.run_on_scheduler(_holders, key=key)
            assert holders, "source's result is in no worker's memory"
            pids = client.run(os.getpid, workers=holders)
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
            _until(lambda: not set(holders) & set(client.scheduler_info()["workers"]), 60, "the worker to be gone")
        finally:
            (tmp_path / "markers" / "release").write_text("1")
            runner.join(timeout=180)
    result = outcome["result"]
    assert result.ok, result.to_dict()
    catalog = Catalog()
    _assert_rows_match_files(catalog, run_id)
    source = catalog.latest_materialization("source")
    sink = catalog.latest_materialization("sink")
    assert json.loads(open(sink.path).read()) == source.rows  # the row describes what downstream consumed
    assert source.id == first.id and source.attempt != first.attempt and source.path != first.path
    assert source.worker not in holders
    assert catalog.superseded_files() == {first.path: first.id}
    assert [e.kind for e in catalog.events(run_id) if e.kind == "asset-attempt-replaced"] == [
        "asset-attempt-replaced"]
    assert result.record("source").rows == source.rows and result.record("source").path == source.path


def test_a_killed_client_run_is_abandoned_garbage_collected_and_resumed(daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, KILLED_CLIENT)
    env = {**os.environ, "DASKFLOW_HOME": str(daskflow_home), "PYTHONPATH": os.getcwd(),
           "DASK_DASKFLOW__RUNS__HEARTBEAT_INTERVAL": "0.2s"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        proc = subprocess.Popen([sys.executable, "-m", "daskflow.cli", "run", path, "--address", address, "--json"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            catalog = Catalog()
            _until(lambda: (tmp_path / "markers" / "slow-started").exists(), 120, "slow to start")
            run = catalog.runs(limit=1)[0]
            assert run.status == "running" and catalog.latest_materialization("early") is not None
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        data = daskflow_home / "data" / "slow"
        orphan = _until(lambda: list(data.rglob("*.json")) if data.exists() else [], 60, "slow's file")[0]
        assert catalog.get_run(run.run_id).status == "running"  # nobody told the catalog
        with dask.config.set({"daskflow.runs.abandon-after": "1s"}):
            _until(lambda: run.run_id in catalog.mark_abandoned_runs(), 30, "the run to be marked abandoned")
        ended = catalog.get_run(run.run_id)
        assert (ended.status, ended.reason) == ("failure", "abandoned")
        _assert_rows_match_files(catalog, run.run_id)

        dry = CliRunner().invoke(main, ["gc", "--grace", "0s", "--json"], catch_exceptions=False)
        assert dry.exit_code == 0, dry.output
        candidates = json.loads(dry.stdout)["candidates"]
        assert [(c["path"], c["reason"], c["run_id"]) for c in candidates] == [
            (str(orphan), "unreferenced", run.run_id)]
        assert orphan.exists()
        applied = CliRunner().invoke(main, ["gc", "--grace", "0s", "--apply"], catch_exceptions=False)
        assert applied.exit_code == 0 and "deleted 1 files" in applied.stdout
        assert not orphan.exists() and os.path.exists(catalog.latest_materialization("early").path)

        resumed = CliRunner().invoke(main, ["run", path, "--address", address, "--json", "--resume",
                                            run.run_id[:12]], catch_exceptions=False)
        assert resumed.exit_code == 0, resumed.output
        document = json.loads(resumed.stdout)
        assert {a["asset"]: a["status"] for a in document["assets"]} == {
            "early": "stale-skipped", "slow": "success", "after": "success"}
        assert catalog.get_run(document["run_id"]).resumed_from == run.run_id
        assert [r.status for r in catalog.runs(limit=None, status="running")] == []
