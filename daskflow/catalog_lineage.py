"""Lineage walks over the catalog's ``lineage`` edges (materialization -> what it read).

Breadth-first from one or more materializations, upstream (what they read) or
downstream (what read them), each materialization reported once at its
smallest depth. Used by :meth:`daskflow.catalog.Catalog.lineage`; reads only.
"""

from __future__ import annotations

import json
from typing import Literal

from daskflow.catalog_db import CatalogDB, to_record
from daskflow.catalog_records import LineageNode, Materialization

__all__ = ["upstream_ids", "walk_lineage"]


def walk_lineage(
    db: CatalogDB, roots: list[int], direction: Literal["upstream", "downstream"], depth: int | None,
) -> list[LineageNode]:
    """The ``roots`` at depth 0, then every materialization reached within ``depth`` hops, by depth then id."""
    if direction == "upstream":
        edge_sql = "SELECT materialization_id AS origin, upstream_id AS reached FROM lineage"
        edge_sql += " WHERE materialization_id IN (SELECT value FROM json_each(?))"
    else:
        edge_sql = "SELECT upstream_id AS origin, materialization_id AS reached FROM lineage"
        edge_sql += " WHERE upstream_id IN (SELECT value FROM json_each(?))"
    found: dict[int, tuple[int, int | None]] = {root: (0, None) for root in roots}
    frontier = sorted(roots)
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        next_frontier = []
        for row in db.query(edge_sql + " ORDER BY origin, reached", (json.dumps(frontier),)):
            reached = row["reached"]
            if reached not in found:
                found[reached] = (level, row["origin"])
                next_frontier.append(reached)
        frontier = sorted(set(next_frontier))
    by_id = {
        row["id"]: to_record(Materialization, row)
        for row in db.query(
            "SELECT * FROM materializations WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(found)),),
        )
    }
    nodes = [LineageNode(by_id[i], d, via) for i, (d, via) in found.items() if i in by_id]
    return sorted(nodes, key=lambda node: (node.depth, node.materialization.id))


def upstream_ids(db: CatalogDB, materialization_id: int) -> list[int]:
    """The materialization ids one materialization read (its direct inputs)."""
    rows = db.query(
        "SELECT upstream_id FROM lineage WHERE materialization_id = ? ORDER BY upstream_id",
        (int(materialization_id),),
    )
    return [row["upstream_id"] for row in rows]
