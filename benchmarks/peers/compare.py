"""Side by side: per-asset orchestration overhead of daskflow, Dagster and plain Dask.

Run from the repository root (needs the ``peers`` extra for the Dagster columns)::

    pip install -e '.[peers]' dagster-dask
    python -m benchmarks.peers.compare                # full: N = 50, 200, 1000 (~15 min on 2 cores)
    python -m benchmarks.peers.compare --quick        # N = 50, 200; Dagster/Dask at N = 50 only
    python -m benchmarks.peers.compare --json out.json

Design note: ONE process starts ONE embedded cluster (2 worker processes × 1
thread, as daskflow's default) and every Dask-based system runs on it, so
cluster start-up is in nobody's number. For each shape and size the systems run
back to back (interleaved, so machine noise hits all of them alike) on fresh
trivial assets from :mod:`benchmarks.peers.shapes`. Per-asset overhead is
wall seconds / N; the headline ratios are geometric means over the cases both
systems ran. A warm-up run per system (N = 10, not counted) pays the import and
first-run costs. Dagster's Dask executor costs ~0.4 s per asset, so by default it
runs only up to ``--dagster-dask-max-assets`` (200).

Targets (issue 6): daskflow's per-asset overhead ≥ 10× lower than Dagster
in-process, ≥ 50× lower than Dagster's Dask executor, within 3× of plain Dask.
The report says MET or MISSED for each; nothing here is asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence

from benchmarks.peers import runners
from benchmarks.peers.shapes import SHAPES

TARGETS = {  # (peer system, relation to daskflow, threshold)
    "dagster": ("peer/daskflow >=", 10.0),
    "dagster_dask": ("peer/daskflow >=", 50.0),
    "plain_dask": ("daskflow/peer <=", 3.0),
}
LABELS = {
    "plain_dask": "plain Dask",
    "daskflow": "daskflow",
    "dagster": "Dagster in-process",
    "dagster_dask": "Dagster Dask executor",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,200,1000", help="comma-separated asset counts (default 50,200,1000)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes (chain,fan,layered)")
    parser.add_argument("--systems", default=",".join(runners.SYSTEMS), help="comma-separated systems to run")
    parser.add_argument("--dagster-dask-max-assets", type=int, default=200,
                        help="largest N for Dagster's Dask executor (~0.4 s/asset; default 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="N = 50,200 and Dagster/Dask at N = 50 only")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dagster_dask_max_assets = "50,200", 50
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.shapes = [s for s in args.shapes.split(",") if s]
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(args.systems) - set(runners.SYSTEMS)) + sorted(set(args.shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown system/shape {', '.join(unknown)}; systems: {', '.join(runners.SYSTEMS)}; "
                     f"shapes: {', '.join(SHAPES)}")
    return args


def _quiet_logging() -> None:
    for name in ("distributed.sizeof", "distributed.worker", "distributed.scheduler", "dagster"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _build_runners(systems: list[str], client, workdir: pathlib.Path) -> tuple[dict[str, Callable], dict[str, str]]:
    """``{system: run(shape, n) -> seconds}`` for the systems that can run here, and why others cannot."""
    available: dict[str, Callable] = {}
    unavailable: dict[str, str] = {}
    for system in systems:
        try:
            if system == "plain_dask":
                available[system] = lambda shape, n: runners.run_plain_dask(client, shape, n)
            elif system == "daskflow":
                from daskflow.execution import materialize  # noqa: F401  (is it built?)

                available[system] = lambda shape, n: runners.run_daskflow(client, shape, n)
            elif system == "dagster":
                available[system] = runners.DagsterInProcess(workdir).run
            elif system == "dagster_dask":
                available[system] = runners.DagsterDask(workdir, client).run
        except ImportError as exc:
            hint = " (pip install -e '.[peers]' dagster-dask)" if "dagster" in system else ""
            unavailable[system] = f"not importable: {exc}{hint}"
    return available, unavailable


def measure(args: argparse.Namespace) -> dict:
    """Run every (shape, N, system) once, interleaved; return the raw results."""
    from distributed import Client, LocalCluster

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="daskflow-peers-"))
    # daskflow's catalog/storage go to a throw-away home; set before workers start.
    os.environ["DASKFLOW_HOME"] = str(workdir / "daskflow-home")
    _quiet_logging()
    cases = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(_quiet_logging)
        available, unavailable = _build_runners(args.systems, client, workdir)
        for system, run in list(available.items()):  # warm-up, not counted
            try:
                run("layered", 10)
            except Exception as exc:  # noqa: BLE001 - report and go on without this system
                unavailable[system] = f"warm-up failed: {exc!r}"[:500]
                traceback.print_exc()
                del available[system]
        for shape in args.shapes:
            for n_assets in args.sizes:
                for system, run in available.items():
                    if system == "dagster_dask" and n_assets > args.dagster_dask_max_assets:
                        continue
                    case = {"shape": shape, "n_assets": n_assets, "system": system}
                    try:
                        case["seconds"] = run(shape, n_assets)
                    except Exception as exc:  # noqa: BLE001
                        case["error"] = repr(exc)[:500]
                    cases.append(case)
                    _print_progress(case)
    return {"cases": cases, "unavailable": unavailable}


def _print_progress(case: dict) -> None:
    detail = (f"{1000 * case['seconds'] / case['n_assets']:.2f} ms/asset" if "seconds" in case
              else f"ERROR {case['error']}")
    print(f"  {case['shape']:>8} N={case['n_assets']:<5} {LABELS[case['system']]:<22} {detail}",
          file=sys.stderr, flush=True)


def summarize(results: dict) -> dict:
    """Per-asset ms per case, ratios against daskflow, geometric means and target verdicts."""
    per_asset_ms: dict[tuple[str, int], dict[str, float]] = {}
    for case in results["cases"]:
        if "seconds" in case:
            key = (case["shape"], case["n_assets"])
            per_asset_ms.setdefault(key, {})[case["system"]] = 1000 * case["seconds"] / case["n_assets"]
    ratios: dict[str, list[float]] = {peer: [] for peer in TARGETS}
    rows = []
    for (shape, n_assets), by_system in per_asset_ms.items():
        row = {"shape": shape, "n_assets": n_assets, "ms_per_asset": by_system}
        ours = by_system.get("daskflow")
        if ours:
            for peer in TARGETS:
                if peer in by_system:
                    ratio = by_system[peer] / ours if peer != "plain_dask" else ours / by_system[peer]
                    row[f"ratio_{peer}"] = ratio
                    ratios[peer].append(ratio)
        rows.append(row)
    verdicts = {}
    for peer, (relation, threshold) in TARGETS.items():
        values = ratios[peer]
        if not values:
            verdicts[peer] = {"relation": relation, "target": threshold, "geomean": None, "verdict": "NOT RUN"}
            continue
        geomean = math.exp(sum(math.log(v) for v in values) / len(values))
        met = geomean >= threshold if relation.endswith(">=") else geomean <= threshold
        verdicts[peer] = {"relation": relation, "target": threshold, "geomean": geomean,
                          "min": min(values), "max": max(values), "cases": len(values),
                          "verdict": "MET" if met else "MISSED"}
    return {"rows": rows, "verdicts": verdicts}


def machine() -> dict:
    """What the numbers were measured on (for BENCHMARKS.md)."""
    def version(module: str) -> str | None:
        try:
            return __import__(module).__version__
        except Exception:  # noqa: BLE001
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit, "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "dask": version("dask"), "distributed": version("distributed"),
        "dagster": version("dagster"), "dagster_dask": version("dagster_dask"),
    }


def format_report(summary: dict, results: dict, info: dict, systems: list[str]) -> str:
    """The plain-text table printed at the end (also pasted into BENCHMARKS.md)."""
    lines = [f"daskflow peers comparison — {info['date_utc']} UTC, commit {info['commit']}, "
             f"{info['cpus']} CPUs, dask {info['distributed']}, dagster {info['dagster']}",
             "per-asset overhead in ms (wall seconds / N); ratio columns: peer ÷ daskflow "
             "(daskflow ÷ plain Dask for the floor)", ""]
    columns = [s for s in runners.SYSTEMS if s in systems]
    header = f"{'shape':>8} {'N':>5} " + " ".join(f"{LABELS[s]:>21}" for s in columns)
    header += f" {'Dagster/df':>10} {'DgDask/df':>10} {'df/Dask':>8}"
    lines.append(header)
    for row in summary["rows"]:
        cells = [f"{row['ms_per_asset'][s]:21.2f}" if s in row["ms_per_asset"] else f"{'-':>21}" for s in columns]
        ratio_cells = [f"{row[k]:10.1f}" if k in row else f"{'-':>10}"
                       for k in ("ratio_dagster", "ratio_dagster_dask")]
        ratio_cells.append(f"{row['ratio_plain_dask']:8.2f}" if "ratio_plain_dask" in row else f"{'-':>8}")
        lines.append(f"{row['shape']:>8} {row['n_assets']:>5} " + " ".join(cells) + " " + " ".join(ratio_cells))
    lines.append("")
    for peer, verdict in summary["verdicts"].items():
        target = f"{verdict['relation']} {verdict['target']:g}"
        if verdict["geomean"] is None:
            lines.append(f"{LABELS[peer]:<22} target {target:<20} NOT RUN")
        else:
            lines.append(f"{LABELS[peer]:<22} target {target:<20} geomean {verdict['geomean']:.2f} "
                         f"(range {verdict['min']:.2f}–{verdict['max']:.2f}, {verdict['cases']} cases): "
                         f"{verdict['verdict']}")
    for system, why in results["unavailable"].items():
        lines.append(f"{LABELS[system]} not run: {why}")
    errors = [c for c in results["cases"] if "error" in c]
    for case in errors:
        lines.append(f"ERROR {LABELS[case['system']]} {case['shape']} N={case['n_assets']}: {case['error']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = measure(args)
    summary = summarize(results)
    info = machine()
    print(format_report(summary, results, info, args.systems))
    if args.json_path:
        payload = {"machine": info, "args": {k: v for k, v in vars(args).items() if k != "json_path"},
                   **results, **summary}
        pathlib.Path(args.json_path).write_text(json.dumps(payload, indent=2, default=str))
    failed = [c for c in results["cases"] if "error" in c]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
