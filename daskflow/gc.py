"""Garbage collection of data files: what no catalog row references and no live run will.

Design note
-----------
Data files outlive their rows in three ways: a client killed after a worker
wrote a file but before the row was recorded (an abandoned run), a Dask
re-execution whose attempt replaced a recorded one (``superseded_files``),
and a writer killed mid-write (hidden ``.tmp-`` files). :func:`find_garbage`
lists them; ``daskflow gc`` prints the list and deletes only with
``--apply``.

Safety rules, each a test:

* a file any materialization row references is never a candidate (paths are
  compared after normalising both to the store's file-system paths);
* only files under the storage root, found by listing it (never a path
  taken from the catalog), and :meth:`AssetStore.remove` refuses anything
  outside the root;
* a data file is a candidate only when its name carries the id of a run in
  this catalog that is no longer running (so another catalog sharing the
  root, or a run in progress, is never touched), and temp files only when
  their writer is long gone;
* nothing younger than ``daskflow.storage.gc-grace``.

Runs whose client died are marked abandoned first
(:meth:`Catalog.mark_abandoned_runs`), so their files become collectable.
"""

from __future__ import annotations

import dataclasses
import time

from daskflow import config
from daskflow.catalog import Catalog
from daskflow.errors import CatalogError
from daskflow.storage import AssetStore, run_id_of_file

__all__ = ["GarbageFile", "GcReport", "collect_garbage", "find_garbage", "gc_grace_s"]

_TEMP_MARKER = ".tmp-"


@dataclasses.dataclass(frozen=True)
class GarbageFile:
    """One file ``daskflow gc`` would delete, and why."""

    path: str
    reason: str  # "unreferenced" (its run never recorded it) | "superseded" (a later attempt replaced it) | "temp"
    run_id: str | None
    bytes: int | None
    age_s: float | None


@dataclasses.dataclass
class GcReport:
    """The candidates, how many unreferenced files were kept for being too young, and what was deleted."""

    candidates: list[GarbageFile]
    kept_young: int
    removed: list[str] = dataclasses.field(default_factory=list)
    abandoned_runs: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {"candidates": [dataclasses.asdict(c) for c in self.candidates], "kept_young": self.kept_young,
                "removed": self.removed, "abandoned_runs": self.abandoned_runs,
                "bytes": sum(c.bytes or 0 for c in self.candidates)}


def gc_grace_s() -> float:
    """Config ``daskflow.storage.gc-grace`` in seconds."""
    from dask.utils import parse_timedelta

    return float(parse_timedelta(config.get("storage.gc-grace"), default="s"))


def find_garbage(catalog: Catalog, store: AssetStore, now: float, grace_s: float) -> tuple[list[GarbageFile], int]:
    """The collectable files under ``store``'s root (see the module note) and the number kept as too young."""
    referenced = {store.fs_path(p) for p in catalog.referenced_paths()}
    superseded = {store.fs_path(p) for p in catalog.superseded_files()}
    runs = {r.run_id: r.status for r in catalog.runs(limit=None)}
    candidates: list[GarbageFile] = []
    kept_young = 0
    for path, modified, size in store.list_files():
        normalised = store.fs_path(path)
        if normalised is None or normalised in referenced or not store.contains(path):
            continue
        name = path.rsplit("/", 1)[-1]
        if _TEMP_MARKER in name:
            reason, run_id = "temp", None
        else:
            run_id = run_id_of_file(path)
            if run_id not in runs or runs[run_id] == "running":
                continue  # another catalog's file, or a run in progress
            reason = "superseded" if normalised in superseded else "unreferenced"
        age_s = None if modified is None else now - modified
        if age_s is None or age_s < grace_s:
            kept_young += 1
            continue
        candidates.append(GarbageFile(path, reason, run_id, size, age_s))
    return candidates, kept_young


def collect_garbage(catalog: Catalog, store: AssetStore, *, apply: bool = False, now: float | None = None,
                    grace_s: float | None = None) -> GcReport:
    """List (and with ``apply=True`` delete) the collectable files; never creates a catalog.

    >>> # collect_garbage(Catalog(), AssetStore())             # dry run: what would go
    >>> # collect_garbage(Catalog(), AssetStore(), apply=True) # delete it
    """
    if not catalog.path.exists():
        raise CatalogError(
            f"no catalog at {str(catalog.path)!r}, so no file can be proven unreferenced; gc needs the catalog "
            "of this storage root (set DASKFLOW_HOME / daskflow.catalog.path)")
    now = time.time() if now is None else now
    abandoned = catalog.mark_abandoned_runs(now)
    candidates, kept_young = find_garbage(catalog, store, now, gc_grace_s() if grace_s is None else grace_s)
    report = GcReport(candidates, kept_young, abandoned_runs=abandoned)
    if apply:
        for candidate in candidates:
            store.remove(candidate.path)
            report.removed.append(candidate.path)
        catalog.forget_superseded([c.path for c in candidates if c.reason == "superseded"])
    return report
