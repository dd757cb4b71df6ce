"""Fast tests of the cluster launcher's pieces (no cluster started) and `daskflow config show`."""

from __future__ import annotations

import json
import subprocess
import sys

import dask.config
import pytest
from click.testing import CliRunner

from daskflow import cluster as cluster_lib
from daskflow import connection
from daskflow.cli import main
from daskflow.errors import ClusterError

pytestmark = pytest.mark.timeout(60)


def test_spec_defaults_come_from_config(daskflow_home):
    with dask.config.set({"daskflow.cluster.workers": 3, "daskflow.cluster.memory-limit": "1GB"}):
        spec = cluster_lib.ClusterSpec(threads_per_worker=2)
    assert (spec.workers, spec.threads_per_worker, spec.memory_limit) == (3, 2, "1GB")
    assert (spec.scheduler_port, spec.dashboard_port, spec.host) == (8786, 8787, "127.0.0.1")
    assert spec.preload == "scheduler_plugins.preload" and spec.protocol == "tcp"


@pytest.mark.parametrize("field", ["workers", "threads_per_worker"])
def test_spec_rejects_zero(daskflow_home, field):
    with pytest.raises(ClusterError, match="at least 1"):
        cluster_lib.ClusterSpec(**{field: 0})


def test_commands_are_distributed_clis_with_the_preload(daskflow_home, tmp_path):
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
    tls = cluster_lib.TLSFiles.from_options(*(str(tmp_path / f"{n}.pem") for n in ("ca", "cert", "key")))
    spec = cluster_lib.ClusterSpec(workers=1, scheduler_port=0, dashboard_port=0, tls=tls)
    scheduler = cluster_lib.scheduler_command(spec, tmp_path / "s.json")
    assert scheduler[:3] == [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    assert scheduler[scheduler.index("--preload") + 1] == "scheduler_plugins.preload"
    assert scheduler[scheduler.index("--protocol") + 1] == "tls"
    assert scheduler[scheduler.index("--tls-cert") + 1] == str(tmp_path / "cert.pem")
    worker = cluster_lib.worker_command("tls://127.0.0.1:1", spec, "w0")
    assert worker[3] == "tls://127.0.0.1:1" and worker[worker.index("--name") + 1] == "w0"
    assert "--tls-key" in worker


def test_tls_files_need_all_three_existing(tmp_path):
    assert cluster_lib.TLSFiles.from_options(None, None, None) is None
    with pytest.raises(ClusterError, match="missing --tls-cert, --tls-key"):
        cluster_lib.TLSFiles.from_options("ca.pem", None, None)
    with pytest.raises(ClusterError, match="not found"):
        cluster_lib.TLSFiles.from_options(*(str(tmp_path / n) for n in ("a", "b", "c")))


def test_child_environment_carries_home_and_daskflow_config(daskflow_home):
    with dask.config.set({"daskflow.steering.mode": "shadow"}):
        env = cluster_lib.child_environment()
    assert env["DASKFLOW_HOME"] == str(daskflow_home)
    inherited = dask.config.deserialize(env["DASK_INTERNAL_INHERIT_CONFIG"])
    assert inherited["daskflow"]["steering"]["mode"] == "shadow"
    assert inherited["daskflow"]["home"] == str(daskflow_home)


def test_cluster_file_is_written_atomically(daskflow_home):
    info = {"scheduler_address": "tcp://127.0.0.1:1", "dashboard_link": None, "pids": {"scheduler": 1, "workers": []}, "tls": None, "started_at": 0.0}
    path = cluster_lib.write_cluster_file(info)
    assert path == connection.cluster_file() and json.loads(path.read_text()) == info
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".cluster-")] == []


def test_a_stale_cluster_file_does_not_count_as_running(daskflow_home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cluster_lib.write_cluster_file({"scheduler_address": "tcp://127.0.0.1:1", "pids": {"scheduler": dead.pid, "workers": []}})
    assert cluster_lib.running_cluster() is None


def test_down_and_status_without_a_cluster_explain_what_to_do(daskflow_home):
    runner = CliRunner()
    down = runner.invoke(main, ["cluster", "down"])
    assert down.exit_code != 0 and "no cluster file" in down.output
    status = runner.invoke(main, ["cluster", "status"])
    assert status.exit_code != 0 and "daskflow cluster up" in status.output


def test_config_show_prints_the_effective_config(daskflow_home, monkeypatch):
    runner = CliRunner()
    with dask.config.set({"daskflow.dashboard.max-points": 123}):
        result = runner.invoke(main, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["daskflow"]["dashboard"]["max-points"] == 123
    assert shown["daskflow"]["cluster"]["scheduler-port"] == 8786
    assert shown["resolved_home"] == str(daskflow_home)
    text = runner.invoke(main, ["config", "show"]).output
    assert "cluster:" in text and "dashboard:" in text and str(daskflow_home) in text


def test_config_show_reflects_environment_overrides(tmp_path):
    env = {"DASK_DASKFLOW__CLUSTER__WORKERS": "7", "DASKFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "daskflow.cli", "config", "show", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["daskflow"]["cluster"]["workers"] == 7


def test_every_default_key_of_my_sections_is_in_the_schema():
    from daskflow import config

    schema = config.schema()["properties"]["daskflow"]["properties"]
    for section in ("cluster", "dashboard"):
        defaults = dask.config.get(f"daskflow.{section}")
        assert set(defaults) <= set(schema[section]["properties"]), section
