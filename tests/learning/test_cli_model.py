"""`daskflow model train | show | eval` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from daskflow.cli import main
from daskflow.learning.history import append_history
from tests.learning.test_training import synthetic_history

pytestmark = pytest.mark.timeout(120)


def test_train_show_eval_with_default_urls_under_the_home(daskflow_home):
    rows = synthetic_history(runs=2, tasks=40).to_dict("records")
    append_history(rows, str(daskflow_home / "history"))
    runner = CliRunner()

    trained = runner.invoke(main, ["model", "train", "--json", "--rounds", "20"])
    assert trained.exit_code == 0, trained.output
    manifest = json.loads(trained.output.strip().splitlines()[-1])
    assert manifest["rows"] == 80 and manifest["model_url"] == str(daskflow_home / "models")
    assert (daskflow_home / "models" / "duration.ubj").exists()

    shown = runner.invoke(main, ["model", "show"])
    assert shown.exit_code == 0, shown.output
    assert manifest["model_version"] in shown.output and "baseline APE" in shown.output

    evaluated = runner.invoke(main, ["model", "eval", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output.strip().splitlines()[-1])
    assert metrics["model_version"] == manifest["model_version"] and metrics["rows_evaluated"] == 80
    assert metrics["duration_median_ape"] < metrics["baseline_duration_median_ape"]

    table = runner.invoke(main, ["model", "eval", "--since", "2000-01-01"])
    assert table.exit_code == 0 and "duration" in table.output and "memory" in table.output


def test_clear_errors_without_history_or_model(daskflow_home):
    runner = CliRunner()
    trained = runner.invoke(main, ["model", "train"])
    assert trained.exit_code != 0 and "record some runs" not in trained.output
    assert "no successful task" in trained.output
    shown = runner.invoke(main, ["model", "show", "--model", str(daskflow_home / "nothing")])
    assert shown.exit_code != 0 and "daskflow model train" in shown.output


def test_registry_commands_list_promote_rollback_drift(daskflow_home):
    runner = CliRunner()
    append_history(synthetic_history(runs=2, tasks=40).to_dict("records"), str(daskflow_home / "history"))
    first = json.loads(runner.invoke(main, ["model", "train", "--json", "--rounds", "10"]).output.strip().splitlines()[-1])
    assert first["registry"]["decision"] == "promote" and first["registry"]["reason"] == "no current model"
    # one more run, then train again: the candidate is judged against the served model on the newest run
    append_history(synthetic_history(runs=3, tasks=40, seed=3).query("run_id == 'run-2'").to_dict("records"), str(daskflow_home / "history"))
    second = json.loads(runner.invoke(main, ["model", "train", "--json", "--rounds", "10"]).output.strip().splitlines()[-1])
    listed = json.loads(runner.invoke(main, ["model", "list", "--json"]).output)
    statuses = {v["version"]: v["status"] for v in listed["versions"]}
    assert statuses[first["model_version"]] == "promoted"
    if second["registry"]["decision"] == "reject":
        assert statuses[second["model_version"]] == "rejected"
    promoted = runner.invoke(main, ["model", "promote", second["model_version"], "--reason", "by hand"])
    assert promoted.exit_code == 0, promoted.output
    table = runner.invoke(main, ["model", "list"])
    assert "* " + second["model_version"] in table.output and "by hand" in table.output
    rolled = runner.invoke(main, ["model", "rollback"])
    assert rolled.exit_code == 0 and first["model_version"] in rolled.output
    nothing = runner.invoke(main, ["model", "rollback"])
    assert nothing.exit_code != 0 and "nothing to roll back" in nothing.output and "Traceback" not in nothing.output
    unknown = runner.invoke(main, ["model", "promote", "nope"])
    assert unknown.exit_code != 0 and "daskflow model list" in unknown.output
    drift = runner.invoke(main, ["model", "drift", "--json"])
    assert drift.exit_code == 0, drift.output
    assert json.loads(drift.output)["drift"] == []
    shown = runner.invoke(main, ["model", "show"])
    assert "serving duration:" in shown.output and "recent model events:" in shown.output and "rollback" in shown.output
    retrain = runner.invoke(main, ["model", "retrain", "--json"])
    assert retrain.exit_code == 0 and json.loads(retrain.output)["decision"] == "skip"
