"""Asset lineage of recent runs, read from the catalog, for the assets page.

Design note. The catalog (SQLite, :class:`daskflow.catalog.Catalog`) under the
scheduler's daskflow home is the record of what was materialized; the page
shows the assets of the last ``recent_runs`` runs as a layered graph whose
edges are the catalog's lineage edges and whose colours are each asset's
status in the newest run that touched it. Reading is bounded (a few runs, at
most ``max_assets`` nodes) and cached for ``cache_s`` so many open pages cost
one small query batch per interval. :func:`layout_lineage` is a pure function
(longest-path layering) so it is tested without a catalog.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

STATUS_COLOURS = {
    "materialized": "#2ca02c",
    "failed": "#d62728",
    "check-failed": "#ff7f0e",
    "skipped": "#bcbd22",
    "running": "#1f77b4",
    "planned": "#7f7f7f",
}


def layout_lineage(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """x = longest distance from a root (edges go upstream -> downstream), y = rank in that layer.

    >>> layout_lineage(["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "c")])
    {'a': (0.0, 0.0), 'b': (1.0, 0.0), 'c': (2.0, 0.0)}
    """
    parents: dict[str, set[str]] = {node: set() for node in nodes}
    for upstream, downstream in edges:
        if upstream in parents and downstream in parents and upstream != downstream:
            parents[downstream].add(upstream)
    depth: dict[str, int] = {}

    def depth_of(node: str, visiting: frozenset = frozenset()) -> int:
        if node in depth:
            return depth[node]
        if node in visiting:  # a cycle cannot come from a catalog, but never recurse forever
            return 0
        value = 1 + max((depth_of(p, visiting | {node}) for p in parents[node]), default=-1)
        depth[node] = value
        return value

    layers: dict[int, list[str]] = {}
    for node in sorted(nodes):
        layers.setdefault(depth_of(node), []).append(node)
    positions = {}
    for layer, members in layers.items():
        for rank, node in enumerate(members):
            positions[node] = (float(layer), float(rank) - (len(members) - 1) / 2.0)
    return {node: positions[node] for node in nodes}


def _status_from_events(kinds: set[str]) -> str | None:
    """An asset's status from its ``asset-*`` run events (check events are ignored here)."""
    kinds = {kind for kind in kinds if kind.startswith("asset-")}
    if any("fail" in kind or "error" in kind for kind in kinds):
        return "failed"
    if any("skip" in kind for kind in kinds):
        return "skipped"
    if any("success" in kind or "materializ" in kind for kind in kinds):
        return "materialized"
    if any("start" in kind for kind in kinds):
        return "running"
    return None


class AssetLineageReader:
    """Reads recent runs' assets and lineage from the catalog (cached, bounded)."""

    def __init__(self, catalog_path: str | pathlib.Path | None = None, *, recent_runs: int = 5, max_assets: int = 300, cache_s: float = 2.0) -> None:
        from daskflow import config

        if catalog_path is None:
            catalog_path = config.get("catalog.path") or (config.home() / "catalog.sqlite")
        self.catalog_path = pathlib.Path(catalog_path)
        self.recent_runs = int(recent_runs)
        self.max_assets = int(max_assets)
        self.cache_s = float(cache_s)
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    def payload(self) -> dict[str, Any]:
        """``{"catalog", "runs", "nodes", "edges", "note"}`` (cached for ``cache_s``)."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached_at < self.cache_s:
            return self._cached
        try:
            result = self._read()
        except Exception as exc:  # noqa: BLE001 - a broken catalog must not break the page
            result = self._empty(f"could not read the catalog {self.catalog_path}: {exc}")
        self._cached, self._cached_at = result, now
        return result

    def _empty(self, note: str) -> dict[str, Any]:
        return {"catalog": str(self.catalog_path), "runs": [], "nodes": [], "edges": [], "note": note}

    def _read(self) -> dict[str, Any]:
        if not self.catalog_path.exists():
            return self._empty(
                f"no catalog at {self.catalog_path} yet: run a pipeline against this cluster "
                "(`daskflow run PIPELINE.py`) with the same daskflow home"
            )
        from daskflow.catalog import Catalog

        catalog = Catalog(self.catalog_path)
        try:
            runs = catalog.runs(limit=self.recent_runs)
            nodes: dict[str, dict[str, Any]] = {}
            asset_of_materialization: dict[int, str] = {}
            run_materializations = []
            for run in reversed(runs):  # oldest first, so newer runs overwrite statuses
                materializations = catalog.materializations(run_id=run.run_id)
                run_materializations.append(materializations)
                event_kinds: dict[str, set[str]] = {}
                for event in catalog.events(run.run_id):
                    if event.asset_key:
                        event_kinds.setdefault(event.asset_key, set()).add(event.kind)
                failed_checks = {c.asset_key for c in catalog.check_results(run_id=run.run_id) if not c.passed}
                materialized: dict[str, list] = {}
                for m in materializations:
                    asset_of_materialization[m.id] = m.asset_key
                    materialized.setdefault(m.asset_key, []).append(m)
                for asset_key in set(materialized) | set(event_kinds):
                    if asset_key not in nodes and len(nodes) >= self.max_assets:
                        continue
                    status = _status_from_events(event_kinds.get(asset_key, set()))
                    if asset_key in materialized and status != "failed":
                        status = "check-failed" if asset_key in failed_checks else "materialized"
                    if status == "running" and run.status not in ("running", "started"):
                        status = "failed"  # started, never finished, run is over
                    mats = materialized.get(asset_key, [])
                    nodes[asset_key] = {
                        "asset": asset_key,
                        "pipeline": run.pipeline,
                        "status": status or "planned",
                        "run_id": run.run_id,
                        "partitions": len(mats),
                        "rows": sum(m.rows or 0 for m in mats),
                        "bytes": sum(m.bytes or 0 for m in mats),
                        "duration_s": sum(m.duration_s or 0.0 for m in mats) if mats else None,
                        "worker": mats[-1].worker if mats else None,
                    }
            edges: set[tuple[str, str]] = set()
            for materializations in run_materializations:
                for m in materializations[: self.max_assets * 4]:
                    for upstream_id in catalog.upstream_ids(m.id):
                        upstream = asset_of_materialization.get(upstream_id)
                        if upstream is None:
                            found = catalog.get_materialization(upstream_id)
                            upstream = found.asset_key if found else None
                            if upstream is not None:
                                asset_of_materialization[upstream_id] = upstream
                        if upstream is not None and upstream in nodes and m.asset_key in nodes:
                            edges.add((upstream, m.asset_key))
        finally:
            catalog.close()
        positions = layout_lineage(list(nodes), sorted(edges))
        for name, node in nodes.items():
            node["x"], node["y"] = positions[name]
            node["colour"] = STATUS_COLOURS.get(node["status"], "#7f7f7f")
        return {
            "catalog": str(self.catalog_path),
            "runs": [
                {"run_id": r.run_id, "pipeline": r.pipeline, "status": r.status, "started_at": r.started_at, "finished_at": r.finished_at}
                for r in runs
            ],
            "nodes": list(nodes.values()),
            "edges": [list(edge) for edge in sorted(edges)],
            "note": "" if nodes else "no assets in the recent runs of this catalog",
        }
