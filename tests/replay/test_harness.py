"""The replay harness on real process clusters (slow), plus its pure helpers."""

from __future__ import annotations

import json
import pathlib

import dask.config
import pytest

from daskflow.replay.harness import (
    OUTPUT_CAP_BYTES,
    _build_specs,
    median_ape,
    mode_config,
    replay,
    replay_task,
    resolve_trace,
)
from daskflow.replay.trace import Trace, TraceTask, load_trace, scale_to_target

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "srasearch-13tasks-cut.json"

RESULT_KEYS = {
    "trace", "mode", "workers", "threads_per_worker", "tasks", "makespan_s", "lower_bound_s",
    "simulated_list_makespan_s", "makespan_over_lower_bound", "simulated_over_lower_bound", "workers_lost",
    "worker_pauses", "failed_tasks", "duration_median_ape", "baseline_duration_median_ape", "memory_median_ape",
    "baseline_memory_median_ape", "model_version", "scheduler_plugins", "run_ids",
}


# ----------------------------------------------------------------------------- pure


@pytest.mark.timeout(30)
def test_specs_keys_annotations_and_dependencies():
    from dask.utils import key_split

    trace = scale_to_target(load_trace(FIXTURE), 2.0, 4)
    run_id = "0123abcd" + "e" * 24
    specs, keys, categories = _build_specs(trace, run_id, memory_scale=0.5, bytes_scale=0.01)
    assert len(specs) == len(trace) == len(keys)
    assert keys[0] == "bowtie2_build-0123abcd-0"
    for spec, task, category in zip(specs, trace.tasks, categories):
        assert key_split(spec.key) == category == spec.annotations["category"]
        ann = spec.annotations
        assert ann["kind"] == "replay" and ann["run_id"] == run_id
        assert ann["input_bytes"] == int(task.input_bytes * 0.01)
        assert ann["n_inputs"] == len(task.parents)
        assert ann["true_duration_s"] == pytest.approx(task.runtime_s)
        assert ann["true_peak_memory_bytes"] == int(task.memory_bytes * 0.5)
        assert ann["tags"]["trace_category"] == task.category
        duration_s, _memory_bytes, output_bytes = spec.args
        assert duration_s == pytest.approx(task.runtime_s)
        assert output_bytes == min(int(task.output_bytes * 0.01), OUTPUT_CAP_BYTES)
    merge = specs[-1]
    assert merge.dependencies == (keys[-2],)


@pytest.mark.timeout(30)
def test_replay_task_holds_memory_and_returns_output():
    out = replay_task(0.0, 8 * 4096, 123, b"upstream")
    assert out == bytes(123)


@pytest.mark.timeout(30)
def test_mode_config_and_helpers():
    assert mode_config("stock") == {"distributed.scheduler.preload": []}
    assert mode_config("record", "h")["daskflow.steering.mode"] == "off"
    steer = mode_config("steer", "h", "m")
    assert steer["daskflow.steering.mode"] == "steer" and steer["daskflow.steering.model"] == "m"
    assert steer["daskflow.steering.oracle"] is False
    assert mode_config("oracle")["daskflow.steering.oracle"] is True
    with pytest.raises(ValueError, match="stock, record, steer, oracle"):
        mode_config("fast")
    assert median_ape([1.0, 3.0, 2.0], [1.0, 2.0, 0.0]) == pytest.approx(0.25)
    assert median_ape([], []) is None
    assert len(resolve_trace("skewed-bag:7:12")) == 12
    assert resolve_trace("memory-pressure:1").application == "memory-pressure"


# ----------------------------------------------------------------------------- real clusters


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_replay_every_mode_end_to_end(tmp_path, daskflow_home):
    """stock (through the CLI), record -> train -> steer, and oracle on the fixture trace."""
    from click.testing import CliRunner

    from daskflow.cli import main
    from daskflow.learning.history import read_history
    from daskflow.learning.training import train_models

    history = tmp_path / "history"
    model = tmp_path / "model"
    common = ["--workers", "2", "--target-seconds", "1", "--memory-scale", "0.01", "--json"]

    runner = CliRunner()
    outcome = runner.invoke(main, ["bench", "replay", str(FIXTURE), "--mode", "stock", *common], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    stock = json.loads(outcome.output.strip().splitlines()[-1])
    assert RESULT_KEYS <= stock.keys()
    assert stock["mode"] == "stock" and stock["tasks"] == 13 and stock["workers"] == 2
    assert stock["failed_tasks"] == 0 and stock["workers_lost"] == 0
    assert stock["lower_bound_s"] == pytest.approx(1.0)
    assert stock["makespan_s"] >= stock["lower_bound_s"] * 0.99  # cannot beat the bound
    assert not any(name.startswith("daskflow-") and name != "daskflow-replay-watch" for name in stock["scheduler_plugins"])

    kwargs = {"workers": 2, "target_seconds": 1.0, "memory_scale": 0.01, "history_url": str(history)}
    recorded = replay(str(FIXTURE), "record", repeat=2, **kwargs)
    assert RESULT_KEYS <= recorded.keys()
    assert "daskflow-recorder" in recorded["scheduler_plugins"]
    assert len(recorded["makespans_s"]) == 2 and len(set(recorded["run_ids"])) == 2
    rows = read_history(str(history))
    assert set(recorded["run_ids"]) <= set(rows["run_id"])
    train_models(rows, str(model), rounds=20)

    steered = replay(str(FIXTURE), "steer", model_url=str(model), **kwargs)
    assert RESULT_KEYS <= steered.keys()
    assert steered["steering_mode"] == "steer"
    assert steered["model_version"] is not None
    assert steered["predictions_found"] == 13
    for name in ("duration_median_ape", "baseline_duration_median_ape", "memory_median_ape", "baseline_memory_median_ape"):
        assert steered[name] is not None and steered[name] >= 0
    assert steered["failed_tasks"] == 0

    oracle = replay(str(FIXTURE), "oracle", workers=2, target_seconds=1.0, memory_scale=0.01)
    assert RESULT_KEYS <= oracle.keys()
    assert "daskflow-steering" in oracle["scheduler_plugins"]
    assert oracle["failed_tasks"] == 0 and oracle["workers_lost"] == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_workers_lost_counts_a_killed_worker(daskflow_home):
    """A task holding more than its worker's memory limit gets the worker killed: counted, not hidden."""
    hog = Trace(name="hog", tasks=(TraceTask("hog", "hog", 3.0, 600_000_000, 0, 0),), source="test")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        result = replay(hog, "stock", workers=1, memory_limit="300MB", time_scale=1.0, memory_scale=1.0, timeout_s=120)
    assert result["workers_lost"] >= 1
    assert result["failed_tasks"] == 1
