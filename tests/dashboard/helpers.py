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
