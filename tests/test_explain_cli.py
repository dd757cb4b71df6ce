"""``daskflow explain`` / ``decisions`` after ``daskflow run`` on the embedded cluster, told from the durable audit.

The cluster is gone when explain runs (embedded), so every answer below comes
from the catalog's audit tables and the history dataset. First run: no model,
so the plugin leaves the whole graph to Dask ("nothing learned yet"); after
``daskflow model train`` a second run is steered: an asset task is placed by
the plugin (why there, the alternatives), a check (a millisecond task) is left
to Dask with the hold threshold the plugin used.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = pathlib.Path(__file__).resolve().parents[1]
PIPELINE = str(ROOT / "examples" / "etl_pipeline.py")


def _cli(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "daskflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=str(env["DASKFLOW_HOME"]))


def _ok(args, env, timeout=90):
    result = _cli(args, env, timeout)
    assert result.returncode == 0, f"{args}: {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "OPENLINEAGE"))}
    env.update(PYTHONPATH=str(ROOT), DASKFLOW_HOME=str(home))
    return env


def _run_id(env) -> str:
    from daskflow.catalog import Catalog

    return Catalog(str(pathlib.Path(env["DASKFLOW_HOME"]) / "catalog.sqlite")).runs()[0].run_id


def test_explain_and_decisions_tell_the_story_from_the_audit_after_an_embedded_run(env):
    _ok(["run", PIPELINE], env, timeout=240)
    run = _run_id(env)
    key = f"daily_revenue-{run}-2024-01-03"

    # an asset key with --partition, and the task key with the 12-character run id `daskflow runs` prints
    by_asset = _ok(["explain", "daily_revenue", "--partition", "2024-01-03"], env)
    by_prefix = _ok(["explain", f"daily_revenue-{run[:12]}-2024-01-03"], env)
    assert by_asset == by_prefix
    lines = by_asset.splitlines()
    assert lines[0] == f"task {key}  (run {run})"
    assert lines[1] == "  (no scheduler reachable: decisions from the durable audit in the catalog)"
    assert lines[2] == ("  not placed by steering: left to Dask: nothing learned yet for any task of its graph "
                        "(all predictions were defaults)")
    assert lines[3] == ("  predicted: duration 0.500 s, peak memory 0 B  [the default, model none; "
                        "as steering predicted it, recorded with the actual cost]")
    actual = re.fullmatch(r"  actual:    duration \d+\.\d{3} s, peak memory .+ on (tcp://127\.0\.0\.1:\d+) \(success\)",
                          lines[4])
    assert actual, lines[4]
    assert lines[5] == f"  where:     stock Dask placed it on {actual[1]}"
    assert "?" not in by_asset

    summary = _ok(["decisions", "--run", run[:12]], env).splitlines()
    assert summary[0] == f"steering decisions for run {run}: 25"
    assert ("  prediction error over 31 finished tasks (median APE; ratio to the per-category running mean, "
            "< 1 is better):") in summary
    assert any(re.fullmatch(r"    duration:    \d+\.\d %, baseline \d+\.\d %, ratio \d+\.\d\d", s) for s in summary), summary

    # unknown names: one line with the closest match, exit 2, no traceback
    typo = _cli(["explain", "daily_revenu", "--partition", "2024-01-03"], env, timeout=60)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert typo.stderr.strip().splitlines() == [
        (f"error: no asset, task or run 'daily_revenu' is known in {env['DASKFLOW_HOME']}/catalog.sqlite; "
         "did you mean 'daily_revenue'? list them with `daskflow runs`")]
    typo = _cli(["explain", f"daily_revenu-{run[:12]}-2024-01-03"], env, timeout=60)
    assert typo.returncode == 2 and typo.stderr.strip().splitlines() == [
        (f"error: no asset 'daily_revenu' in run {run[:12]}; did you mean 'daily_revenue'? "
         f"see `daskflow runs {run[:12]}` for its assets")]
    unknown_run = _cli(["decisions", "--run", "ffffffffffff"], env, timeout=60)
    assert "Traceback" not in unknown_run.stderr

    # with a model the second run is steered
    _ok(["model", "train"], env, timeout=240)
    _ok(["run", PIPELINE], env, timeout=240)
    second = _run_id(env)
    assert second != run
    placed = _ok(["explain", "daily_revenue", "--partition", "2024-01-03"], env).splitlines()
    assert placed[0] == f"task daily_revenue-{second}-2024-01-03  (run {second})"
    assert any(re.match(r"  predicted: duration \d+\.\d{3} s, .*\[(from the model|per-category running mean), model "
                        r"\S+; as steering saw it\]", s) for s in placed), placed
    assert any(re.match(r"  why there: placed on tcp://127\.0\.0\.1:\d+ because of \S+; predicted finish", s)
               for s in placed), placed
    assert any(s.startswith("  why then:  critical-path rank ") for s in placed), placed

    check = _ok(["explain", f"daily_revenue.check.revenue_is_positive-{second[:12]}-2024-01-03"], env)
    assert re.search(r"^  no steering decision of its own: left to Dask: predicted [0-9.e-]+ s < hold threshold "
                     r"[0-9.e-]+ s", check, re.MULTILINE), check
    assert "source not recorded" not in check, "the recorder keeps the prediction's quality"
    steered = _ok(["decisions", "--run", second[:12]], env)
    assert "  model versions: " in steered and "steered tasks 0," not in steered
