"""Shared pieces of the dashboard tests: an annotated workload, a catalog with one run, HTTP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request


def busy(x, duration_s):
    time.sleep(duration_s)
    return x


def annotated_tasks(n_per_category: int = 30):
    """Tasks of two categories with daskflow annotations (as execution would send them).

    ``true_duration_s`` lets a cluster run with ``daskflow.steering.oracle`` steer the
    very first graph (without it, a graph with no information is left to stock Dask).
    """
    from daskflow.daskgraph import TaskSpec

    return [
        TaskSpec(f"{category}-{i}", busy, args=(i, duration_s), annotations={"run_id": "r1", "kind": "asset", "category": category, "asset": category, "true_duration_s": duration_s})
        for category, duration_s in (("load", 0.002), ("transform", 0.03))
        for i in range(n_per_category)
    ]  # fmt: skip


def make_catalog(home):
    """One run: raw -> clean -> report materialized; broken failed; report's check failed."""
    from daskflow.catalog import Catalog

    catalog = Catalog(home / "catalog.sqlite")
    run = catalog.start_run(pipeline="etl")
    raw = catalog.record_materialization(run.run_id, "raw", {"path": "/d/raw.parquet", "format": "parquet", "rows": 10, "bytes": 100})
    clean = catalog.record_materialization(run.run_id, "clean", {"path": "/d/clean.parquet", "format": "parquet", "rows": 8, "bytes": 80}, upstream_ids=[raw])
    catalog.record_materialization(run.run_id, "report", {"path": "/d/report.json", "format": "json", "rows": 1, "bytes": 10}, upstream_ids=[clean, raw])
    catalog.log_events([
        {"run_id": run.run_id, "kind": "asset-success", "asset_key": "raw"},
        {"run_id": run.run_id, "kind": "asset-failed", "asset_key": "broken"},
    ])  # fmt: skip
    catalog.record_check_result(run.run_id, "report", "non_empty", passed=False, blocking=False, message="empty")
    catalog.finish_run(run.run_id, "failure")
    catalog.close()
    return run.run_id


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


DAYS = tuple(f"2024-01-0{d}" for d in range(1, 8))


def make_partitioned_catalog(home):
    """Pipeline "daily": raw_orders[7 days] -> daily_revenue[7 days], two runs, every partition status.

    daily_revenue: 01, 02 materialized; 03 check-failed; 04 failed in the second run (after a first
    materialization); 05 stale (raw_orders[05] re-materialized after it was read); 06 missing (only
    raw_orders has it); 07 materialized with code version "1" while the asset's newest is "2": stale.
    Returns ``(first_run_id, second_run_id)``.
    """
    from daskflow.catalog import Catalog

    catalog = Catalog(home / "catalog.sqlite")
    first = catalog.start_run(pipeline="daily").run_id
    raw = {}
    for day in DAYS:
        raw[day] = catalog.record_materialization(first, "raw_orders", {"path": f"/d/raw/{day}", "format": "parquet",
                                                  "rows": 3, "bytes": 300}, partition=day, code_version="1")
    revenue = {}
    for day in DAYS[:5] + DAYS[6:]:
        revenue[day] = catalog.record_materialization(
            first, "daily_revenue", {"path": f"/d/rev/{day}", "format": "json", "rows": 1, "bytes": 10},
            partition=day, code_version="1", duration_s=0.1, upstream_ids=[raw[day]])
    catalog.log_events([{"run_id": first, "kind": "asset-success", "asset_key": "daily_revenue", "partition": d}
                        for d in revenue])
    catalog.finish_run(first, "success")
    second = catalog.start_run(pipeline="daily").run_id
    catalog.record_materialization(second, "raw_orders", {"path": "/d/raw/05b", "format": "parquet", "rows": 4,
                                   "bytes": 400}, partition=DAYS[4], code_version="1")
    for day in DAYS[:3]:
        new = catalog.record_materialization(
            second, "daily_revenue", {"path": f"/d/rev2/{day}", "format": "json", "rows": 1, "bytes": 12},
            partition=day, code_version="2", duration_s=0.2, upstream_ids=[raw[day]])
        catalog.log_event(second, "asset-success", asset_key="daily_revenue", partition=day)
        assert new
    catalog.record_check_result(second, "daily_revenue", "positive", passed=False, partition=DAYS[2], blocking=False,
                                message="negative revenue")
    catalog.record_check_result(second, "daily_revenue", "positive", passed=True, partition=DAYS[0], blocking=False)
    catalog.log_event(second, "asset-failed", asset_key="daily_revenue", partition=DAYS[3], message="KeyError")
    catalog.finish_run(second, "failure")
    catalog.close()
    return first, second
