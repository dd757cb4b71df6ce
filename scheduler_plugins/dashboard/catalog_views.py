"""The asset catalog, one asset's detail and its partition grid, read from the catalog (bounded).

Design note
-----------
The asset pages answer what a Dagster user opens an asset for: what is its
latest materialization (code version, data version, size), how did its
materializations go over time (rows, bytes, duration, peak memory — and the
prediction beside each when the recorder kept one), how did its checks go,
what is up- and downstream, and, for a partitioned asset, which partitions
are materialized / failed / check-failed / stale / missing / running.

Everything is read with bounded SQL (``LIMIT``) from the SQLite catalog
under the scheduler's daskflow home; nothing walks the scheduler's tasks
except :func:`running_asset_partitions`, which looks only at the tasks
*processing* on workers (a few per worker thread). The classification of a
partition is one pure function, :func:`partition_status`, so it is tested
without a catalog.

*Stale* is what the catalog alone can tell: the partition's latest
materialization was made with an older code version than the asset's newest
one, or it read an upstream materialization that has been superseded since.
*Missing*: the partition appears in the catalog for this asset or for an
asset it reads or feeds (same keys), but was never materialized.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from scheduler_plugins import compat

__all__ = ["GRID_COLOURS", "CatalogViews", "partition_status", "running_asset_partitions"]

GRID_COLOURS = {
    "materialized": "#2ca02c",
    "failed": "#d62728",
    "check-failed": "#ff7f0e",
    "stale": "#e6c229",
    "missing": "#d9d9d9",
    "running": "#1f77b4",
}


def partition_status(*, materialized: bool, failed_after: bool, check_failed: bool, stale: bool,
                     running: bool) -> str:
    """One partition's status; the first that applies of running, failed, check-failed, stale, materialized, missing.

    ``failed_after``: its newest outcome is a failure (after its latest materialization, if any).

    >>> partition_status(materialized=True, failed_after=False, check_failed=False, stale=True, running=False)
    'stale'
    >>> partition_status(materialized=False, failed_after=False, check_failed=False, stale=False, running=False)
    'missing'
    """
    if running:
        return "running"
    if failed_after:
        return "failed"
    if materialized and check_failed:
        return "check-failed"
    if materialized and stale:
        return "stale"
    return "materialized" if materialized else "missing"


def running_asset_partitions(scheduler: Any) -> set[tuple[str, str | None]]:
    """``(asset, partition)`` of the daskflow asset tasks processing on any worker right now."""
    from daskflow.contracts import ANNOTATION_KEY

    running = set()
    if scheduler is None:
        return running
    for worker in compat.running_workers(scheduler):
        for task in compat.worker_processing(worker):
            annotation = (compat.annotations(task) or {}).get(ANNOTATION_KEY) or {}
            if annotation.get("asset") and annotation.get("kind", "asset") == "asset":
                running.add((annotation["asset"], annotation.get("partition")))
    return running


class CatalogViews:
    """Bounded reads of the catalog for the asset catalog and asset detail pages (cached per question)."""

    def __init__(self, catalog_path: str | pathlib.Path | None = None, *, max_assets: int = 300,
                 max_points: int = 500, max_partitions: int = 1000, cache_s: float = 2.0) -> None:
        from daskflow import config

        if catalog_path is None:
            catalog_path = config.get("catalog.path") or (config.home() / "catalog.sqlite")
        self.catalog_path = pathlib.Path(catalog_path)
        self.max_assets = int(max_assets)
        self.max_points = int(max_points)
        self.max_partitions = int(max_partitions)
        self.cache_s = float(cache_s)
        self._cache: dict[tuple, tuple[float, Any]] = {}

    # -- plumbing ---------------------------------------------------------------
    def _cached(self, question: tuple, read) -> Any:
        now = time.monotonic()
        hit = self._cache.get(question)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        if len(self._cache) > 64:
            self._cache.clear()
        value = read()
        self._cache[question] = (now, value)
        return value

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        from daskflow.catalog_db import CatalogDB

        db = CatalogDB(self.catalog_path)
        try:
            return [dict(r) for r in db.query(sql, list(params))]
        finally:
            db.close()

    def _missing(self) -> str | None:
        if not self.catalog_path.exists():
            return (f"no catalog at {self.catalog_path} yet: run a pipeline against this cluster "
                    "(`daskflow run PIPELINE.py`) with the same daskflow home")
        return None

    # -- the catalog ------------------------------------------------------------
    def pipelines(self) -> list[str]:
        """Pipelines of the catalog's runs, most recently run first."""
        if self._missing():
            return []
        return self._cached(("pipelines",), lambda: [r["pipeline"] for r in self._query(
            "SELECT pipeline, MAX(started_at) AS last FROM runs WHERE pipeline IS NOT NULL GROUP BY pipeline "
            "ORDER BY last DESC LIMIT 50")])

    def catalog(self, pipeline: str | None = None) -> dict[str, Any]:
        """``{"pipeline", "pipelines", "assets": [...], "note"}``: one row per asset ever materialized by ``pipeline``."""
        note = self._missing()
        if note:
            return {"pipeline": pipeline, "pipelines": [], "assets": [], "note": note}
        pipelines = self.pipelines()
        pipeline = pipeline or (pipelines[0] if pipelines else None)
        return self._cached(("catalog", pipeline), lambda: self._read_catalog(pipeline, pipelines))

    def _read_catalog(self, pipeline: str | None, pipelines: list[str]) -> dict[str, Any]:
        runs = "SELECT run_id FROM runs WHERE pipeline IS ?"
        rows = self._query(
            f"SELECT m.asset_key, COUNT(DISTINCT COALESCE(m.partition, '')) AS partitions, MAX(m.id) AS last_id "
            f"FROM materializations m WHERE m.run_id IN ({runs}) GROUP BY m.asset_key ORDER BY m.asset_key "
            f"LIMIT ?", (pipeline, self.max_assets))
        failed = {r["asset_key"] for r in self._query(
            "SELECT DISTINCT asset_key FROM run_events WHERE kind = 'asset-failed' AND run_id = "
            "(SELECT run_id FROM runs WHERE pipeline IS ? ORDER BY started_at DESC LIMIT 1)", (pipeline,))}
        assets = []
        for row in rows:
            last = self._query("SELECT * FROM materializations WHERE id = ?", (row["last_id"],))[0]
            assets.append({
                "asset": row["asset_key"], "status": "failed" if row["asset_key"] in failed else "materialized",
                "partitions": row["partitions"] if last["partition"] is not None else None,
                "last_run_id": last["run_id"], "last_materialized_at": last["created_at"],
                "rows": last["rows"], "bytes": last["bytes"], "duration_s": last["duration_s"],
                "code_version": last["code_version"], "data_version": last["data_version"],
            })
        return {"pipeline": pipeline, "pipelines": pipelines, "assets": assets,
                "note": "" if assets else f"no materializations of pipeline {pipeline!r} yet"}

    def run_inputs(self, run_id: str) -> dict[str, list[str]]:
        """Task key -> the task keys it read *in the same run* (the run's DAG as the catalog's lineage knows it)."""
        if self._missing():
            return {}
        return self._cached(("inputs", run_id), lambda: self._read_run_inputs(run_id))

    def _read_run_inputs(self, run_id: str) -> dict[str, list[str]]:
        from daskflow.planning import task_key

        parents: dict[str, list[str]] = {}
        for r in self._query(
                "SELECT m.asset_key AS a, m.partition AS p, u.asset_key AS ua, u.partition AS up FROM lineage l "
                "JOIN materializations m ON m.id = l.materialization_id JOIN materializations u ON u.id = "
                "l.upstream_id WHERE m.run_id = ? AND u.run_id = ? LIMIT ?", (run_id, run_id, self.max_points * 8)):
            parents.setdefault(task_key(r["a"], r["p"], run_id), []).append(task_key(r["ua"], r["up"], run_id))
        return parents

    # -- one asset --------------------------------------------------------------
    def asset(self, asset_key: str, running: set | None = None,
              predictions: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """One asset's detail (see the module note); ``predictions``: recorder rows by task key."""
        note = self._missing()
        if note:
            return {"asset": asset_key, "history": [], "checks": [], "partitions": [], "upstream": [],
                    "downstream": [], "note": note}
        detail = self._cached(("asset", asset_key), lambda: self._read_asset(asset_key))
        return with_live_data(detail, running or set(), predictions or {})

    def _read_asset(self, key: str) -> dict[str, Any]:
        from daskflow.planning import task_key

        history = list(reversed(self._query(
            "SELECT id, run_id, partition, rows, bytes, duration_s, code_version, data_version, created_at, worker "
            "FROM materializations WHERE asset_key = ? ORDER BY id DESC LIMIT ?", (key, self.max_points))))
        for point in history:
            point["task_key"] = task_key(key, point["partition"], point["run_id"])
        checks = list(reversed(self._query(
            "SELECT run_id, partition, check_name, passed, blocking, message, created_at FROM check_results "
            "WHERE asset_key = ? ORDER BY id DESC LIMIT ?", (key, self.max_points))))
        upstream = [r["asset_key"] for r in self._query(
            "SELECT DISTINCT u.asset_key FROM lineage l JOIN materializations m ON m.id = l.materialization_id "
            "JOIN materializations u ON u.id = l.upstream_id WHERE m.asset_key = ? AND u.asset_key != ? "
            "ORDER BY u.asset_key LIMIT 50", (key, key))]
        downstream = [r["asset_key"] for r in self._query(
            "SELECT DISTINCT m.asset_key FROM lineage l JOIN materializations m ON m.id = l.materialization_id "
            "JOIN materializations u ON u.id = l.upstream_id WHERE u.asset_key = ? AND m.asset_key != ? "
            "ORDER BY m.asset_key LIMIT 50", (key, key))]
        latest = self._query("SELECT * FROM materializations WHERE asset_key = ? ORDER BY id DESC LIMIT 1", (key,))
        partitions = self._read_partitions(key, upstream + downstream, latest[0] if latest else None)
        return {"asset": key, "latest": latest[0] if latest else None, "history": history, "checks": checks,
                "upstream": upstream, "downstream": downstream, "partitions": partitions,
                "note": "" if history else f"asset {key!r} has no materializations in this catalog"}

    def _read_partitions(self, key: str, neighbours: list[str], latest: dict | None) -> list[dict[str, Any]]:
        seen = self._query(
            "SELECT DISTINCT partition FROM materializations WHERE asset_key = ? AND partition IS NOT NULL "
            "UNION SELECT DISTINCT partition FROM run_events WHERE asset_key = ? AND partition IS NOT NULL "
            "LIMIT ?", (key, key, self.max_partitions))
        keys = {r["partition"] for r in seen}
        if not keys:
            return []  # unpartitioned
        if neighbours:
            marks = ",".join("?" * len(neighbours))
            keys |= {r["partition"] for r in self._query(
                f"SELECT DISTINCT partition FROM materializations WHERE asset_key IN ({marks}) AND partition IS NOT "
                f"NULL LIMIT ?", (*neighbours, self.max_partitions))}
        newest = {r["partition"]: r for r in self._query(
            "SELECT m.* FROM materializations m JOIN (SELECT partition, MAX(id) AS id FROM materializations "
            "WHERE asset_key = ? GROUP BY partition) n ON n.id = m.id", (key,))}
        outcomes = {r["partition"]: r for r in self._query(
            "SELECT e.partition, e.kind, e.timestamp FROM run_events e JOIN (SELECT partition, MAX(id) AS id FROM "
            "run_events WHERE asset_key = ? AND kind IN ('asset-success', 'asset-failed') GROUP BY partition) n "
            "ON n.id = e.id", (key,))}
        check_failed = {r["partition"] for r in self._query(
            "SELECT c.partition, c.passed FROM check_results c JOIN (SELECT partition, MAX(id) AS id FROM "
            "check_results WHERE asset_key = ? GROUP BY partition, check_name) n ON n.id = c.id WHERE c.passed = 0",
            (key,))}
        ids = [m["id"] for m in newest.values()]
        superseded: set[int] = set()
        if ids:
            marks = ",".join("?" * len(ids))
            superseded = {r["materialization_id"] for r in self._query(
                f"SELECT DISTINCT l.materialization_id FROM lineage l JOIN materializations u ON u.id = l.upstream_id "
                f"WHERE l.materialization_id IN ({marks}) AND EXISTS (SELECT 1 FROM materializations n WHERE "
                f"n.asset_key = u.asset_key AND n.partition IS u.partition AND n.id > u.id)", ids)}
        code_version = (latest or {}).get("code_version")
        grid = []
        for partition in sorted(keys)[: self.max_partitions]:
            m = newest.get(partition)
            outcome = outcomes.get(partition)
            grid.append({
                "partition": partition,
                "materialized": m is not None,
                "failed_after": bool(outcome and outcome["kind"] == "asset-failed"),
                "check_failed": partition in check_failed,
                "stale": bool(m and (m["id"] in superseded or m["code_version"] != code_version)),
                "materialization_id": m["id"] if m else None,
                "run_id": m["run_id"] if m else None,
            })
        return grid


def with_live_data(detail: Mapping[str, Any], running: set, predictions: Mapping[str, Mapping[str, Any]]) -> dict:
    """``detail`` with partition statuses (running ones from the scheduler) and recorded predictions/peaks."""
    out = dict(detail)
    key = detail["asset"]
    out["partitions"] = []
    for cell in detail.get("partitions", []):
        cell = dict(cell)
        cell["status"] = partition_status(materialized=cell["materialized"], failed_after=cell["failed_after"],
                                          check_failed=cell["check_failed"], stale=cell["stale"],
                                          running=(key, cell["partition"]) in running)
        out["partitions"].append(cell)
    out["running"] = sorted(str(p) for a, p in running if a == key)
    history = []
    for point in detail.get("history", []):
        point = dict(point)
        recorded = predictions.get(point["task_key"]) or {}
        point["peak_memory_bytes"] = recorded.get("peak_memory_bytes")
        point["predicted_duration_s"] = recorded.get("predicted_duration_s")
        point["predicted_peak_memory_bytes"] = recorded.get("predicted_peak_memory_bytes")
        history.append(point)
    out["history"] = history
    return out
