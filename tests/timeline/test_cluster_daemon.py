"""`daskflow cluster up --daemon PIPELINE` records the daemon in the cluster file; `cluster down` stops it."""

from __future__ import annotations

import json
import pathlib

import pytest

from daskflow.timeline.store import TimelineStore
from tests.cluster.helpers import alive, daskflow, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "timeline_pipeline.py"


def test_cluster_up_with_a_daemon_and_down_again(tmp_path):
    home = tmp_path / "home"
    try:
        result = daskflow(home, "cluster", "up", "--workers", "1", "--scheduler-port", "0", "--dashboard-port", "0",
                          "--daemon", str(EXAMPLE), "--json")
        info = json.loads(result.stdout.strip().splitlines()[-1])
        daemon_pid = info["pids"]["daemon"]
        assert alive([daemon_pid]) and info["daemon"]["pipelines"] == [str(EXAMPLE)]
        assert json.loads((home / "cluster.json").read_text())["pids"]["daemon"] == daemon_pid
        lease = TimelineStore(home / "catalog.sqlite").lease()
        assert lease is not None and lease["pid"] == daemon_pid
        wait_for(lambda: TimelineStore(home / "catalog.sqlite").sensor_state("file_sensor").last_tick_at,
                 what="the daemon's first sensor tick")
        down = daskflow(home, "cluster", "down", "--grace", "10")
        assert str(daemon_pid) in down.stdout
        wait_for(lambda: not alive([daemon_pid]), what="the daemon to stop")
        assert TimelineStore(home / "catalog.sqlite").lease() is None  # it released its lease on SIGTERM
    finally:
        if (home / "cluster.json").exists():
            daskflow(home, "cluster", "down", "--grace", "5", check=False)


def test_a_bad_daemon_pipeline_is_one_error_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    bad = tmp_path / "bad.py"
    bad.write_text("import daskflow\ns = daskflow.schedule('10 0 * *', target='a', name='nightly')\n")
    result = daskflow(home, "cluster", "up", "--workers", "1", "--scheduler-port", "0", "--dashboard-port", "0",
                      "--daemon", str(bad), check=False)
    assert result.returncode != 0 and "schedule 'nightly': cron '10 0 * *' is not a valid cron" in result.stderr
    assert not (home / "cluster.json").exists()
