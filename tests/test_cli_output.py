"""How the CLI shows runs: exact lines for tables, up-to-date summaries, grouped failures and run notes."""

from __future__ import annotations

import logging
import warnings

import pytest

import daskflow.tasks
from daskflow.cli.output import (
    RunNotes,
    failure_groups,
    run_report,
    short_warning,
    table,
    user_frame,
)
from daskflow.run_result import AssetRecord, CheckRecord, RunResult

TRACEBACK = (
    "Traceback (most recent call last):\n"
    f'  File "{daskflow.tasks.__file__}", line 129, in run_asset_task\n'
    "    value = spec.fn(**kwargs)\n"
    '  File "<dynamic-code>", line 3, in broken\n'
    "ZeroDivisionError: division by zero\n"
)


def test_table_aligns_columns_and_strips_trailing_spaces():
    text = table([["a_very_long_asset_name", "2024-01-01", 3], ["b", None, 1234]], ["asset", "partition", "rows"],
                 right=["rows"])
    assert text.splitlines() == [
        "asset                   partition   rows",
        "a_very_long_asset_name  2024-01-01     3",
        "b                       -           1234",
    ]


def test_only_stale_run_is_one_summary_line_and_verbose_lists_reasons():
    records = [AssetRecord(f"asset{i}", None, "stale-skipped", reason="code and inputs unchanged") for i in range(24)]
    result = RunResult("0123456789abcdef", "success", records, duration_s=0.04)
    out, err = run_report(result)
    assert out == ["24 up to date, 0 run", "run 0123456789ab: success in 0.0s"] and err == []
    verbose, _ = run_report(result, verbose=True)
    assert verbose[0].splitlines()[1].split() == ["asset0", "-", "up-to-date", "-", "-", "-", "-"]
    assert verbose[1] == "24 up to date, 0 run"
    assert verbose[2] == "  asset0 up to date: code and inputs unchanged"


def test_failures_grouped_by_error_with_count_traceback_once_and_pipeline_line(tmp_path):
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text("from daskflow import asset\n@asset\ndef broken(): return 1 / 0\n")
    records = [AssetRecord("broken", p, "failed", error="ZeroDivisionError: division by zero", traceback=TRACEBACK)
               for p in ("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04")]
    records += [AssetRecord("after", p, "skipped", reason=f"upstream broken[{p}] did not succeed")
                for p in ("2024-01-01", "2024-01-02")]
    result = RunResult("ffffffffffff0000", "failure", records, duration_s=1.25)
    out, err = run_report(result, source_file=str(pipeline))
    assert out[-2:] == ["after[2024-01-01], after[2024-01-02] skipped: upstream broken[\u2026] did not succeed",
                        "run ffffffffffff: failure in 1.2s"]
    assert err == [
        "",
        "broken[2024-01-01], broken[2024-01-02], broken[2024-01-03] and 1 more failed (4x): "
        "ZeroDivisionError: division by zero",
        f"  at {pipeline}:3 in broken",
        "Traceback (most recent call last):\n"
        f'  File "{pipeline}", line 3, in broken\n'
        "    def broken(): return 1 / 0\n"
        "ZeroDivisionError: division by zero",
    ]


def test_distinct_errors_are_distinct_groups_and_partition_keys_in_messages_merge():
    records = [
        AssetRecord("orders", "2024-01-01", "failed", error="SchemaMismatchError: orders[2024-01-01]: 'id' is str"),
        AssetRecord("orders", "2024-01-02", "failed", error="SchemaMismatchError: orders[2024-01-02]: 'id' is str"),
        AssetRecord("report", None, "failed", error="KeyError: 'total'"),
    ]
    groups = failure_groups(records)
    assert [(g["error"], len(g["where"])) for g in groups] == [
        ("SchemaMismatchError: orders[\u2026]: 'id' is str", 2), ("KeyError: 'total'", 1)]


def test_an_error_raised_inside_daskflow_prints_no_internal_traceback_unless_verbose():
    internal = ("Traceback (most recent call last):\n"
                f'  File "{daskflow.tasks.__file__}", line 140, in run_asset_task\n'
                "    check_schema(value)\n"
                "daskflow.errors.SchemaMismatchError: people[p1]: column 'id' is string, expected int64\n")
    records = [AssetRecord("people", p, "failed", traceback=internal.replace("[p1]", f"[{p}]"),
                           error=f"SchemaMismatchError: people[{p}]: column 'id' is string, expected int64")
               for p in ("p1", "p2", "p3")]
    _, err = run_report(RunResult("a" * 16, "failure", records))
    assert err == ["", "people[p1], people[p2], people[p3] failed (3x): SchemaMismatchError: people[\u2026]: column "
                   "'id' is string, expected int64",
                   "  (raised inside daskflow or a library, not in your pipeline: --verbose shows the traceback)"]
    _, verbose = run_report(RunResult("a" * 16, "failure", records), verbose=True)
    assert verbose[-1].startswith("Traceback (most recent call last):")


def test_passed_checks_are_counted_failed_ones_listed():
    checks = [CheckRecord("orders", f"p{i}", "positive", "passed", True) for i in range(5)]
    checks.append(CheckRecord("orders", "p9", "positive", "failed", True, "3 negative amounts"))
    result = RunResult("r" * 16, "failure", [AssetRecord("orders", "p9", "success")], checks)
    out, _ = run_report(result)
    assert out[1:3] == ["checks: 5 passed", "check positive on orders[p9] (blocking): failed - 3 negative amounts"]


def test_user_frame_skips_library_frames():
    assert user_frame(TRACEBACK) == ("<dynamic-code>", 3, "broken")
    assert user_frame("no traceback") is None


def test_no_model_warning_is_one_short_note_once_and_phase_lines_pass_through():
    lines: list[str] = []
    notes = RunNotes(lines.append)
    with notes.active():
        for _ in range(3):
            warnings.warn("daskflow: no model at '/h/models' (no manifest.json); predicting per-category means / "
                          "defaults. Train one with `daskflow model train`.", RuntimeWarning)
        logging.getLogger("daskflow.run").info("starting embedded cluster (%d workers)\u2026", 2)
        logging.getLogger("daskflow.run").info("cluster ready, dashboard %s", "http://127.0.0.1:8787/status")
    assert lines == [
        "note: no cost model yet: predicting per-category means (train one with `daskflow model train`)",
        "starting embedded cluster (2 workers)\u2026",
        "cluster ready, dashboard http://127.0.0.1:8787/status",
    ]
    assert short_warning("daskflow: something odd") == "warning: something odd"


PIPELINE = '''
from daskflow.definitions import asset


@asset(io="json", code_version="1")
def numbers():
    return [1, 2, 3]


@asset(io="json", code_version="1")
def total(numbers):
    return sum(numbers)
'''


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_first_hour_in_subprocesses_embedded_cluster_phase_lines_summary_and_explain(tmp_path):
    import os
    import re
    import subprocess
    import sys

    (tmp_path / "pipeline.py").write_text(PIPELINE)
    env = {**os.environ, "DASKFLOW_HOME": str(tmp_path / "home")}
    env.pop("DASK_DASKFLOW__CLUSTER__FILE", None)

    def daskflow(*args):
        return subprocess.run([sys.executable, "-m", "daskflow.cli", *args], env=env, capture_output=True, text=True,
                              timeout=200, cwd=tmp_path)

    first = daskflow("run", "pipeline.py")
    assert first.returncode == 0, first.stderr[-3000:]
    err = first.stderr.splitlines()
    assert err[0] == "starting embedded cluster (2 workers)\u2026"
    assert "note: no cost model yet: predicting per-category means (train one with `daskflow model train`)" in err
    assert re.fullmatch(r"cluster ready, dashboard http://127\.0\.0\.1:\d+/status", err[-1]), err
    assert "Warning" not in first.stderr and len(err) == 3
    out = first.stdout.splitlines()
    assert out[0].split() == ["asset", "partition", "status", "duration", "rows", "size", "worker"]
    assert [line.split()[:3] for line in out[1:3]] == [["numbers", "-", "success"], ["total", "-", "success"]]
    assert re.fullmatch(r"run [0-9a-f]{12}: success in \d+\.\ds", out[-1])

    again = daskflow("run", "pipeline.py", "--only-stale")
    assert again.returncode == 0 and again.stdout.splitlines()[0] == "2 up to date, 0 run"
    assert again.stderr == ""  # nothing ran: no cluster started

    story = daskflow("explain", "total")
    assert story.returncode == 0, story.stderr
    assert "?" not in story.stdout and "predicted: duration" in story.stdout
    assert story.stdout.splitlines()[0].startswith("task total-")
    summary = daskflow("decisions", "--json")
    assert summary.returncode == 0, summary.stderr
    import json

    assert json.loads(summary.stdout)["tasks_with_actuals"] == 2
