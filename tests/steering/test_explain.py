"""`daskflow explain` / `daskflow decisions`: pure formatting, then the CLI against a live cluster."""

from __future__ import annotations

import json
import time

import dask
import pytest
from click.testing import CliRunner

from daskflow.contracts import SCHEDULER_PRELOAD
from daskflow.explain import format_story, format_summary, summarize, task_story

pytestmark = pytest.mark.timeout(90)

DECISIONS = [
    {"key": None, "action": "priority", "reason": "critical-path", "run_id": "r1"},
    {"key": "a", "action": "hold", "reason": "memory", "run_id": "r1", "predicted_duration_s": 2.0,
     "predicted_peak_memory_bytes": 1e9, "model_version": "m1", "quality": "model", "alternatives": []},
    {"key": "a", "action": "release", "reason": "memory", "worker": "tcp://w2", "held_s": 0.5, "run_id": "r1",
     "predicted_duration_s": 2.0, "predicted_peak_memory_bytes": 1e9, "model_version": "m1", "rank_s": 3.0, "priority_index": 0,
     "predicted_finish_s": 2.0,
     "alternatives": [{"worker": "tcp://w2", "score": 2.0, "wait_s": 0.0, "transfer_s": 0.0, "compute_s": 2.0, "fits_memory": True},
                      {"worker": "tcp://w1", "score": 1.5, "wait_s": 0.0, "transfer_s": 0.0, "compute_s": 1.5, "fits_memory": False}]},
    {"key": "b", "action": "place", "reason": "finish-time", "worker": "tcp://w1", "run_id": "r1",
     "predicted_duration_s": 1.0, "model_version": "m1", "alternatives": []},
    {"key": None, "action": "fallback", "reason": "fallback", "n_tasks": 3, "run_id": None},
]


def test_task_story_and_text():
    story = task_story("a", DECISIONS, {"duration_s": 2.5, "peak_memory_bytes": 9e8, "worker": "tcp://w2", "outcome": "success"})
    assert story["predicted_duration_s"] == 2.0 and story["actual_duration_s"] == 2.5
    assert story["duration_error_ratio"] == pytest.approx(0.8)
    assert [p["worker"] for p in story["placements"]] == ["tcp://w2"] and len(story["holds"]) == 1
    text = format_story(story)
    assert "released to tcp://w2 after 0.500 s held because of memory" in text
    assert "(does not fit memory)" in text and "critical-path rank 3.000 s" in text
    assert "no steering decision" in format_story(task_story("zzz", DECISIONS))


def test_summarize_counts_and_error():
    rows = [{"key": "a", "duration_s": 2.5, "peak_memory_bytes": 1e9}, {"key": "b", "duration_s": 1.0}]
    summary = summarize(DECISIONS, rows)
    assert summary["steered_tasks"] == 2 and summary["held"] == 1 and summary["fallbacks"] == 1
    assert summary["fallback_tasks"] == 3
    assert summary["duration_median_ape"] == pytest.approx(0.1)  # errors 0.2 and 0.0
    assert summary["memory_median_ape"] == pytest.approx(0.0)
    assert "steered tasks 2" in format_summary(summary, "r1")


def _sleep(duration_s, *deps):
    time.sleep(duration_s)
    return duration_s


def test_cli_explain_and_decisions_on_a_live_cluster(daskflow_home):
    from distributed import Client, LocalCluster, wait

    from daskflow.cli import main
    from daskflow.daskgraph import TaskSpec, submit_graph

    config = {"daskflow.steering.mode": "steer", "daskflow.steering.oracle": True, "daskflow.dashboard.enabled": False}
    with dask.config.set(config), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
        scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]},
    ) as cluster, Client(cluster) as client:
        specs = [
            TaskSpec(f"work-{i}", _sleep, (0.02 * (i + 1),),
                     annotations={"run_id": "run-x", "category": "work", "true_duration_s": 0.02 * (i + 1)})
            for i in range(4)
        ]
        futures = submit_graph(client, specs)
        wait(list(futures.values()))
        runner = CliRunner()
        result = runner.invoke(main, ["explain", "work-3", "--address", cluster.scheduler_address])
        assert result.exit_code == 0, result.output
        assert "task work-3  (run run-x)" in result.output
        assert "placed on" in result.output and "why then" in result.output
        assert "actual:    duration" in result.output  # from the recorder's rows
        result = runner.invoke(main, ["decisions", "--run", "run-x", "--json", "--address", cluster.scheduler_address])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert summary["steered_tasks"] == 4 and summary["fallbacks"] == 0
        assert summary["plugin"]["mode"] == "steer"
