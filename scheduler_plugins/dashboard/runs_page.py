"""The runs page ``/daskflow/runs`` and its JSON ``/daskflow/api/runs``.

Design note. The data is :func:`daskflow.timeline.overview.runs_overview`
(recent runs with trigger, duration and materialization counts; queued runs;
schedules and sensors with their last and next ticks; backfills with
progress), read from the catalog the dashboard's lineage reader uses and
cached for one update interval (:class:`RunsReader`), so many open pages cost
one read per interval and a broken catalog shows a note instead of an error.
The page is four tables and a summary line with stable names
(``daskflow-runs-*``); registration is two lines in :mod:`.pages` and
:mod:`.extension`.
"""

from __future__ import annotations

import datetime
import html
import pathlib
import time
from typing import Any

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, DataTable, Div, TableColumn

from scheduler_plugins.dashboard.extension import _Handler

__all__ = ["RunsHandler", "RunsReader", "runs_page"]

TITLE = "Runs, schedules and backfills"
RUN_COLUMNS = ("run_id", "status", "trigger", "origin", "pipeline", "started", "duration_s", "materializations")
QUEUE_COLUMNS = ("run_id", "trigger", "origin", "pool", "waiting_s")
TICK_COLUMNS = ("kind", "name", "last_tick", "last_status", "next_tick")
BACKFILL_COLUMNS = ("backfill_id", "status", "progress", "done", "failed", "running", "pending", "partition_selection")


class RunsReader:
    """Cached :func:`runs_overview` of one catalog."""

    def __init__(self, catalog_path: str | pathlib.Path, cache_s: float = 1.0, limit: int = 50):
        self.catalog_path, self.cache_s, self.limit = pathlib.Path(catalog_path), float(cache_s), int(limit)
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    def payload(self, limit: int | None = None) -> dict[str, Any]:
        from daskflow.timeline.overview import runs_overview

        now = time.monotonic()
        if limit is None and self._cached is not None and now - self._cached_at < self.cache_s:
            return self._cached
        try:
            result = runs_overview(self.catalog_path, limit=limit or self.limit)
        except Exception as exc:  # noqa: BLE001 - a broken catalog must not break the page
            result = {"catalog": str(self.catalog_path), "runs": [], "queued": [], "schedules": [], "sensors": [],
                      "backfills": [], "counts": {}, "note": f"could not read the catalog {self.catalog_path}: {exc}"}
        if limit is None:
            self._cached, self._cached_at = result, now
        return result


def _reader(extension) -> RunsReader:
    reader = getattr(extension, "runs_reader", None)
    if reader is None:
        reader = extension.runs_reader = RunsReader(extension.lineage.catalog_path,
                                                    cache_s=max(1.0, extension.update_interval_s))
    return reader


class RunsHandler(_Handler):
    def get(self) -> None:
        self.write_json(_reader(self.extension).payload(self._limit()))


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def table_data(payload: dict[str, Any]) -> dict[str, dict[str, list]]:
    """Column data of the page's four tables (pure)."""
    runs = [{**r, "started": _when(r["started_at"]), "origin": r["origin"] or "-",
             "duration_s": None if r["duration_s"] is None else round(r["duration_s"], 2)} for r in payload["runs"]]
    queued = [{**q, "pool": q["pool"] or "-", "waiting_s": round(q["waiting_s"], 1)} for q in payload["queued"]]
    ticks = [{"kind": "schedule", "name": s["name"], "last_tick": _when(s["last_tick_at"]),
              "last_status": s["last_status"] or "-", "next_tick": _when(s["next_tick_at"])} for s in payload["schedules"]]
    ticks += [{"kind": "sensor", "name": s["name"], "last_tick": _when(s["last_tick_at"]),
               "last_status": s["last_status"] or "-", "next_tick": _when(s["next_tick_at"])} for s in payload["sensors"]]
    backfills = [{**b, "progress": f"{100.0 * b['done'] / max(1, b['n_partitions']):.0f}%"} for b in payload["backfills"]]

    def columns(rows: list[dict], names: tuple[str, ...]) -> dict[str, list]:
        return {name: [row.get(name) for row in rows] for name in names}

    return {"runs": columns(runs, RUN_COLUMNS), "queued": columns(queued, QUEUE_COLUMNS),
            "ticks": columns(ticks, TICK_COLUMNS), "backfills": columns(backfills, BACKFILL_COLUMNS)}


def _table(name: str, source: ColumnDataSource, names: tuple[str, ...], height: int) -> DataTable:
    return DataTable(name=name, source=source, columns=[TableColumn(field=n, title=n) for n in names], width=1000,
                     height=height, index_position=None)


def runs_page(scheduler, extra, doc) -> None:
    """Recent runs, queued runs, schedules and sensors, backfills: refreshed every update interval."""
    from scheduler_plugins.dashboard.pages import (  # pages registers this page
        _extension,
        _finish,
        _note,
        _set,
    )

    extension = _extension(scheduler)
    sources = {key: ColumnDataSource({n: [] for n in names}, name=f"daskflow-runs-{key}-source")
               for key, names in (("runs", RUN_COLUMNS), ("queued", QUEUE_COLUMNS), ("ticks", TICK_COLUMNS),
                                  ("backfills", BACKFILL_COLUMNS))}
    summary = Div(text="", name="daskflow-runs-summary", styles={"font-size": "15px"})
    note = _note("daskflow-runs-note")
    layout = column(
        summary, note,
        Div(text="<h3>Recent runs</h3>"), _table("daskflow-runs-table", sources["runs"], RUN_COLUMNS, 300),
        Div(text="<h3>Queued</h3>"), _table("daskflow-runs-queued", sources["queued"], QUEUE_COLUMNS, 160),
        Div(text="<h3>Schedules and sensors</h3>"), _table("daskflow-runs-ticks", sources["ticks"], TICK_COLUMNS, 160),
        Div(text="<h3>Backfills</h3>"), _table("daskflow-runs-backfills", sources["backfills"], BACKFILL_COLUMNS, 160))
    last = {"payload": None}

    def update() -> None:
        payload = _reader(extension).payload()
        if payload is last["payload"]:
            return
        last["payload"] = payload
        for key, data in table_data(payload).items():
            _set(sources[key], data)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(payload["counts"].items())) or "none"
        summary.text = f"<b>runs:</b> {html.escape(counts)} &nbsp; <b>catalog:</b> {html.escape(payload['catalog'])}"
        note.text = html.escape(payload["note"])

    _finish(doc, scheduler, extra, TITLE, layout, update)
