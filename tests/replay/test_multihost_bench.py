"""The pure parts of benchmarks/multihost.py: aggregation, excess share, targets (no cluster)."""

from __future__ import annotations

import math

import pytest

from benchmarks import multihost_summary as ms


def _runs():
    runs = []
    for trace, stock, steer, oracle, sim in (("a", [10.0, 12.0], [8.0, 8.0], [7.0, 7.0], 6.0),
                                             ("b", [4.0, 4.0], [4.4, 4.0], [4.0, 4.0], 5.0)):  # fmt: skip
        for i in range(2):
            for mode, spans in (("stock", stock), ("steer", steer), ("oracle", oracle)):
                runs.append({"trace": trace, "mode": mode, "makespan_s": spans[i], "sim_s": sim,
                             "sim_uncontended_s": sim - 1,
                             "workers_lost": 1 if mode == "stock" else 0, "failed_tasks": 0,
                             "load_before": 2.0 + i, "load_after": 3.0 + i})  # fmt: skip
    runs.append({"trace": "b", "mode": "steer", "error": "TimeoutError: x", "load_before": 9.0})
    return runs


def test_excess_removed():
    assert ms.excess_removed(10.0, 8.0, 6.0) == pytest.approx(0.5)
    assert ms.excess_removed(10.0, 11.0, 6.0) == pytest.approx(-0.25)
    assert ms.excess_removed(5.0, 4.0, 5.0) is None  # no excess
    assert ms.excess_removed(None, 4.0, 3.0) is None


def test_geometric_mean_ignores_missing_and_nonpositive():
    assert ms.geometric_mean([2.0, 8.0, None, 0.0, math.nan]) == pytest.approx(4.0)
    assert ms.geometric_mean([]) is None


def test_trace_rows_medians_ratios_and_failures():
    summary = ms.summarize(_runs(), "hetero")
    a, b = summary["rows"]
    assert a["trace"] == "a" and a["median_s"] == {"oracle": 7.0, "steer": 8.0, "stock": 11.0}
    assert a["steer_over_stock"] == pytest.approx(8 / 11)
    assert a["sim_over_stock"] == pytest.approx(6 / 11)
    assert a["steer_over_sim"] == pytest.approx(8 / 6)
    assert a["excess_removed"] == pytest.approx(3 / 5)  # against sim_s (the contended simulation)
    assert a["sim_uncontended_s"] == 5.0 and a["steer_over_sim_uncontended"] == pytest.approx(8 / 5)
    assert a["workers_lost"] == {"oracle": 0, "steer": 0, "stock": 2}
    assert b["runs_failed"]["steer"] == 1 and b["median_s"]["steer"] == pytest.approx(4.2)
    assert b["excess_removed"] is None  # stock already beats the simulation
    assert summary["runs_failed"] == 1
    assert summary["geomean"]["steer_over_stock"] == pytest.approx(math.sqrt(8 / 11 * 4.2 / 4))
    assert summary["steer_over_stock_max"] == pytest.approx(1.05)
    assert summary["excess_removed_pooled"] == pytest.approx(3 / 5)
    assert summary["load_median"] == pytest.approx(3.0)


def test_targets_checked_per_scenario():
    targets = ms.summarize(_runs(), "hetero")["targets"]
    assert targets["steer_over_stock_max"] == {"target": 1.02, "value": pytest.approx(1.05), "met": False}
    assert targets["steer_over_stock_geomean"]["met"] is False  # 0.874 > 0.80
    assert targets["excess_removed_min"]["met"] is False  # 0.6 < 0.7
    assert ms.summarize(_runs(), "single")["targets"]["steer_over_stock_geomean"]["met"] is True
    assert ms.summarize(_runs(), None)["targets"] == {}


def test_memory_summary_counts_clean_runs():
    per_seed = {"0": {"runs": [
        {"mode": "stock", "makespan_s": 20.0, "workers_lost": 3, "failed_tasks": 1},
        {"mode": "steer", "makespan_s": 10.0, "workers_lost": 0, "failed_tasks": 0},
        {"mode": "steer", "makespan_s": None, "workers_lost": 0, "failed_tasks": 64, "timed_out": True},
    ]}}  # fmt: skip
    row = ms.memory_summary(per_seed)["0"]
    assert row["steer"] == {"runs": 2, "clean_runs": 1, "workers_lost": 0, "failed_tasks": 64, "median_s": 10.0,
                            "median_over_lb": None, "median_over_memory_lb": None}  # fmt: skip
    assert row["stock"]["workers_lost"] == 3 and row["steer_over_stock"] == pytest.approx(0.5)


def test_markdown_table_has_a_row_per_trace_and_a_geomean_row():
    text = ms.markdown_table(ms.summarize(_runs(), "hetero"))
    lines = text.splitlines()
    assert len(lines) == 2 + 2 + 1 and lines[-1].startswith("| **geometric mean**")
    assert "| a | 11.00 | 8.00 | 7.00 | 6.00 | 5.00 | 0.727 |" in text


def test_memory_markdown_one_line_per_seed_and_mode():
    rows = ms.memory_summary({"0": {"runs": [{"mode": "stock", "makespan_s": 20.0, "workers_lost": 3, "failed_tasks": 1},
                                             {"mode": "steer", "makespan_s": 10.0}]}})  # fmt: skip
    text = ms.memory_markdown(rows)
    assert "| 0 | steer | 1/1 | 0 | 0 | 10.00 | – | – | 0.500 |" in text and "| 0 | stock | 0/1 | 3 | 1 |" in text
