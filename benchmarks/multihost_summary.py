"""Pure aggregation for ``benchmarks/multihost.py``: per-trace medians, ratios, geomeans, targets.

A *run* is a plain dict with at least ``trace``, ``mode`` and either
``makespan_s`` (a number) or ``error``; optionally ``sim_s`` (the clairvoyant
simulation's makespan for that run: HEFT on the test bed with its links shared
and replicas kept, the one-speed list schedule on one host; every ratio and the
excess share are against it), ``sim_uncontended_s`` (the test bed's older HEFT
number: every read at the full link rate, no replicas; shown beside it),
``workers_lost``, ``failed_tasks``, ``load_before`` /
``load_after`` (1-minute load average). Nothing here starts a process.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchmarks.replay_all import (
    geometric_mean,  # one definition, shared with the single-host benchmark
)

#: The issue's targets per scenario (BENCHMARKS.md "Multi-host steering (issue #11)").
TARGETS: dict[str, dict[str, float]] = {
    "hetero": {"steer_over_stock_geomean": 0.80, "steer_over_stock_max": 1.02, "steer_over_sim_geomean": 1.10,
               "excess_removed_min": 0.70},
    "slowdown": {"steer_over_stock_geomean": 0.75},
    "single": {"steer_over_stock_geomean": 0.97, "steer_over_stock_max": 1.03},
}


def excess_removed(stock_s: float | None, steer_s: float | None, sim_s: float | None) -> float | None:
    """Share of stock's excess over the simulation that steering removes: ``(stock - steer) / (stock - sim)``.

    None when stock is not slower than the simulation (no excess to remove).

    >>> excess_removed(10.0, 8.0, 6.0)
    0.5
    >>> excess_removed(5.0, 4.0, 6.0) is None
    True
    """
    if stock_s is None or steer_s is None or sim_s is None or not stock_s > sim_s:
        return None
    return (stock_s - steer_s) / (stock_s - sim_s)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def ok_runs(runs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Runs that produced a makespan."""
    return [r for r in runs if isinstance(r.get("makespan_s"), (int, float)) and math.isfinite(r["makespan_s"])]


def trace_row(trace: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One trace's summary: per-mode makespans and medians, the ratios, the simulation, losses and load."""
    modes = sorted({r["mode"] for r in runs})
    good = ok_runs(runs)
    spans = {m: [r["makespan_s"] for r in good if r["mode"] == m] for m in modes}
    median = {m: _median(v) for m, v in spans.items()}
    sim = _median(r.get("sim_s") for r in good)
    sim_uncontended = _median(r.get("sim_uncontended_s") for r in good)
    stock, steer, oracle = median.get("stock"), median.get("steer"), median.get("oracle")
    return {
        "trace": trace,
        "makespans_s": spans,
        "median_s": median,
        "runs_failed": {m: sum(1 for r in runs if r["mode"] == m and r not in good) for m in modes},
        "sim_s": sim,
        "sim_uncontended_s": sim_uncontended,
        "sim_uncontended_over_stock": _ratio(sim_uncontended, stock),
        "steer_over_sim_uncontended": _ratio(steer, sim_uncontended),
        "steer_over_stock": _ratio(steer, stock),
        "oracle_over_stock": _ratio(oracle, stock),
        "steer_over_oracle": _ratio(steer, oracle),
        "sim_over_stock": _ratio(sim, stock),
        "steer_over_sim": _ratio(steer, sim),
        "oracle_over_sim": _ratio(oracle, sim),
        "excess_removed": excess_removed(stock, steer, sim),
        "oracle_excess_removed": excess_removed(stock, oracle, sim),
        "workers_lost": {m: sum(int(r.get("workers_lost") or 0) for r in runs if r["mode"] == m) for m in modes},
        "failed_tasks": {m: sum(int(r.get("failed_tasks") or 0) for r in runs if r["mode"] == m) for m in modes},
        "load": _median(r.get("load_before") for r in runs),
        "load_max": max((r["load_after"] for r in runs if r.get("load_after") is not None), default=None),
    }


def summarize(runs: Sequence[Mapping[str, Any]], scenario: str | None = None) -> dict[str, Any]:
    """Every trace's row, the geometric means of the ratios, the pooled excess share and the targets checked."""
    order: list[str] = []
    for r in runs:
        if r["trace"] not in order:
            order.append(r["trace"])
    rows = [trace_row(t, [r for r in runs if r["trace"] == t]) for t in order]
    geo = {name: geometric_mean(row[name] for row in rows)
           for name in ("steer_over_stock", "oracle_over_stock", "steer_over_oracle", "sim_over_stock",
                        "steer_over_sim", "oracle_over_sim", "sim_uncontended_over_stock",
                        "steer_over_sim_uncontended")}  # fmt: skip
    with_excess = [row for row in rows if row["excess_removed"] is not None]
    pooled = None
    if with_excess:
        removed = sum(row["median_s"]["stock"] - row["median_s"]["steer"] for row in with_excess)
        excess = sum(row["median_s"]["stock"] - row["sim_s"] for row in with_excess)
        pooled = removed / excess if excess > 0 else None
    ratios = [row["steer_over_stock"] for row in rows if row["steer_over_stock"] is not None]
    summary = {
        "scenario": scenario,
        "rows": rows,
        "geomean": geo,
        "steer_over_stock_max": max(ratios) if ratios else None,
        "excess_removed_median": _median(row["excess_removed"] for row in rows),
        "excess_removed_pooled": pooled,
        "load_median": _median(r.get("load_before") for r in runs),
        "runs": len(runs),
        "runs_failed": sum(1 for r in runs if r not in ok_runs(runs)),
    }
    summary["targets"] = check_targets(summary, scenario)
    return summary


def check_targets(summary: Mapping[str, Any], scenario: str | None) -> dict[str, dict[str, Any]]:
    """Each target of ``scenario`` with the measured value and whether it is met (None: not measured)."""
    targets = TARGETS.get(scenario or "", {})
    measured = {
        "steer_over_stock_geomean": summary["geomean"].get("steer_over_stock"),
        "steer_over_stock_max": summary.get("steer_over_stock_max"),
        "steer_over_sim_geomean": summary["geomean"].get("steer_over_sim"),
        "excess_removed_min": summary.get("excess_removed_pooled"),
    }
    out = {}
    for name, bound in targets.items():
        value = measured.get(name)
        met = None if value is None else (value >= bound if name.endswith("_min") else value <= bound)
        out[name] = {"target": bound, "value": value, "met": met}
    return out


def memory_summary(per_seed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per seed and mode: runs, runs with 0 lost and 0 failed, workers lost, failed tasks, median makespan."""
    rows = {}
    for seed, result in per_seed.items():
        runs = result.get("runs", [])
        modes = sorted({r["mode"] for r in runs})
        memory_lb = (result.get("lower_bounds") or {}).get("memory_aware")  # beside the issue's bound (steering_memory.py)
        row = {}
        for mode in modes:
            mine = [r for r in runs if r["mode"] == mode]
            clean = [r for r in mine if not r.get("workers_lost") and not r.get("failed_tasks") and not r.get("timed_out")]
            row[mode] = {
                "runs": len(mine),
                "clean_runs": len(clean),
                "workers_lost": sum(int(r.get("workers_lost") or 0) for r in mine),
                "failed_tasks": sum(int(r.get("failed_tasks") or 0) for r in mine),
                "median_s": _median(r.get("makespan_s") for r in mine),
                "median_over_lb": _median(r.get("makespan_over_lower_bound") for r in mine),
                "median_over_memory_lb": _ratio(_median(r.get("makespan_s") for r in mine), memory_lb),
            }
        if "steer" in row and "stock" in row:
            row["steer_over_stock"] = _ratio(row["steer"]["median_s"], row["stock"]["median_s"])
        rows[seed] = row
    return rows


def markdown_table(summary: Mapping[str, Any]) -> str:
    """The per-trace table (and a geometric-mean row) for BENCHMARKS.md."""

    def f(value: Any, spec: str = ".3f") -> str:
        return "–" if value is None else format(value, spec)

    lines = [("| trace | stock s | steer s | oracle s | sim s | sim s uncontended | steer/stock | oracle/stock "
              "| sim/stock | steer/sim | excess removed | lost (stock/steer/oracle) | load |"),
             "|---|" + "---:|" * 12]
    for row in summary["rows"]:
        med, lost = row["median_s"], row["workers_lost"]
        lines.append(
            f"| {row['trace']} | {f(med.get('stock'), '.2f')} | {f(med.get('steer'), '.2f')} | {f(med.get('oracle'), '.2f')} "
            f"| {f(row['sim_s'], '.2f')} | {f(row.get('sim_uncontended_s'), '.2f')} "
            f"| {f(row['steer_over_stock'])} | {f(row['oracle_over_stock'])} "
            f"| {f(row['sim_over_stock'])} | {f(row['steer_over_sim'])} | {f(row['excess_removed'], '.2f')} "
            f"| {lost.get('stock', '–')}/{lost.get('steer', '–')}/{lost.get('oracle', '–')} | {f(row['load'], '.1f')} |"
        )
    geo = summary["geomean"]
    lines.append(f"| **geometric mean** | | | | | | **{f(geo['steer_over_stock'])}** "
                 f"| **{f(geo['oracle_over_stock'])}** "
                 f"| **{f(geo['sim_over_stock'])}** | **{f(geo['steer_over_sim'])}** "
                 f"| pooled {f(summary['excess_removed_pooled'], '.2f')} | | {f(summary['load_median'], '.1f')} |")
    return "\n".join(lines)


def memory_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The memory scenario's table: per seed and mode, clean runs, workers lost, failed tasks, median makespan."""

    def f(value: Any, spec: str = ".2f") -> str:
        return "–" if value is None else format(value, spec)

    lines = ["| seed | mode | runs with 0 lost, 0 failed | workers lost | failed tasks | median makespan s | × LB "
             "| × memory-aware LB | steer/stock |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for seed, row in rows.items():
        for mode, cell in row.items():
            if mode == "steer_over_stock":
                continue
            ratio = f(row.get("steer_over_stock"), ".3f") if mode == "steer" else ""
            lines.append(f"| {seed} | {mode} | {cell['clean_runs']}/{cell['runs']} | {cell['workers_lost']} "
                         f"| {cell['failed_tasks']} | {f(cell['median_s'])} | {f(cell['median_over_lb'])} "
                         f"| {f(cell.get('median_over_memory_lb'))} | {ratio} |")  # fmt: skip
    return "\n".join(lines)
