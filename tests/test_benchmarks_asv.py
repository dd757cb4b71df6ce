"""The asv suites and the peer comparison cannot rot: they must import and be well-formed.

``asv check --python=same`` imports every module under ``benchmarks/`` (as asv
itself does before a run) and validates each benchmark's signature, params
and attributes. No benchmark is *run* here and no speed is asserted: speed
lives in BENCHMARKS.md. Also checks the pieces of the peer comparison that do
not need Dagster (graph shapes, argument parsing, report formatting).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_asv_check_passes():
    """``asv check --python=same`` finds every suite importable and well-formed."""
    asv = shutil.which("asv")
    if asv is None:
        pytest.skip("asv is not installed (pip install -e '.[bench]')")
    # `asv check` needs no machine file (unlike `asv run`) and writes nothing.
    completed = subprocess.run([asv, "check", "--python=same", "--config", str(REPO / "asv.conf.json")],
                               cwd=REPO, capture_output=True, text=True, timeout=200)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "No problems found" in output, output


def test_asv_config_is_plain_json_with_results_under_dot_asv():
    """asv.conf.json parses as strict JSON and keeps envs/results/html in the git-ignored .asv/."""
    config = json.loads((REPO / "asv.conf.json").read_text())
    assert config["benchmark_dir"] == "benchmarks"
    for key in ("env_dir", "results_dir", "html_dir"):
        assert config[key].startswith(".asv/"), (key, config[key])
    assert ".asv/" in (REPO / ".gitignore").read_text().split()
    assert any("{wheel_file}" in command for command in config["install_command"])


def test_every_suite_and_benchmark_is_documented():
    """Each suite class and benchmark method says what it measures (issue 6)."""
    import importlib
    import inspect

    prefixes = ("time_", "peakmem_", "mem_", "track_", "timeraw_")
    suites = sorted(p.stem for p in (REPO / "benchmarks").glob("bench_*.py"))
    assert suites, "no asv suites found"
    missing = []
    for name in suites:
        module = importlib.import_module(f"benchmarks.{name}")
        for class_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or class_name.startswith("_"):
                continue
            methods = [m for m in vars(cls) if m.startswith(prefixes)]
            if methods and not cls.__doc__:
                missing.append(f"{name}.{class_name}")
            missing += [f"{name}.{class_name}.{m}" for m in methods if not getattr(cls, m).__doc__]
    assert not missing, f"benchmarks without a docstring: {missing}"


@pytest.mark.parametrize("shape", ["chain", "fan", "layered"])
def test_peer_shapes_are_dags_with_the_documented_structure(shape):
    from benchmarks.peers.shapes import plain_dask_graph, shape_parents, trivial_functions

    parents = shape_parents(shape, 50)
    seen: set[str] = set()
    for name, upstream in parents.items():  # topological order: parents first
        assert set(upstream) <= seen, (name, upstream)
        seen.add(name)
    edges = sum(len(p) for p in parents.values())
    assert edges == {"chain": 49, "fan": 2 * 48, "layered": 2 * 40}[shape]
    functions = trivial_functions(shape, 50)
    assert [f.__name__ for f in functions] == list(parents)
    assert all(f(*[1] * f.__code__.co_argcount) == 1 for f in functions)
    graph = plain_dask_graph(shape, 50)
    import dask

    assert dask.get(graph, list(graph)[-1]) == 1


def test_peer_report_ratios_and_verdicts():
    """Ratios are peer ÷ daskflow (daskflow ÷ plain Dask for the floor); verdicts follow the targets."""
    from benchmarks.peers import compare

    cases = [
        {"shape": "chain", "n_assets": 50, "system": "plain_dask", "seconds": 0.1},
        {"shape": "chain", "n_assets": 50, "system": "daskflow", "seconds": 0.2},
        {"shape": "chain", "n_assets": 50, "system": "dagster", "seconds": 4.0},
        {"shape": "chain", "n_assets": 50, "system": "dagster_dask", "seconds": 8.0},
    ]
    results = {"cases": cases, "unavailable": {}}
    summary = compare.summarize(results)
    row = summary["rows"][0]
    assert row["ratio_dagster"] == pytest.approx(20.0)
    assert row["ratio_dagster_dask"] == pytest.approx(40.0)
    assert row["ratio_plain_dask"] == pytest.approx(2.0)
    verdicts = summary["verdicts"]
    assert verdicts["dagster"]["verdict"] == "MET"
    assert verdicts["dagster_dask"]["verdict"] == "MISSED"
    assert verdicts["plain_dask"]["verdict"] == "MET"
    text = compare.format_report(summary, results, {"date_utc": "d", "commit": "c", "cpus": 2,
                                                    "distributed": "x", "dagster": "y"}, list(compare.runners.SYSTEMS))
    assert "MISSED" in text and "20.0" in text


def test_peer_compare_cli_rejects_unknown_systems():
    completed = subprocess.run([sys.executable, "-m", "benchmarks.peers.compare", "--systems", "airflow"],
                               cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "airflow" in completed.stderr
