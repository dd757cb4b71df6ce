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
