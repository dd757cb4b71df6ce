"""Bokeh documents for the asset catalog (``/daskflow/catalog``) and one asset (``/daskflow/asset?key=...``).

Design note. Same shape as :mod:`.pages`: a document factory per page owns
its ColumnDataSources and widgets; the data comes from the scheduler's
:class:`~scheduler_plugins.dashboard.extension.DashboardExtension`
(:mod:`.catalog_views`, bounded and cached) and one periodic callback swaps
the sources when the payload changed. The catalog shows ONE pipeline at a
time (a selector, newest run first); the asset page takes ``?key=`` (and a
selector) and shows the materializations over time with the recorded
predictions beside them, the checks, the neighbourhood, the versions and,
for a partitioned asset, the partition status grid.
"""

from __future__ import annotations

import datetime
import html
import math
import urllib.parse
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    NumberFormatter,
    Select,
    TableColumn,
)
from bokeh.plotting import figure

from scheduler_plugins.dashboard.catalog_views import GRID_COLOURS
from scheduler_plugins.dashboard.pages import (
    PAGES,
    _extension,
    _finish,
    _note,
    _set,
    full_name_formatter,
)


def _asset_link_formatter() -> HTMLTemplateFormatter:
    """A table cell linking to the asset's page (one model per document: Bokeh models are not shared)."""
    return HTMLTemplateFormatter(template='<a href="asset?key=<%= encodeURIComponent(value) %>" title="<%- value %>">'
                                          '<%- value %></a>')


def _argument(doc, name: str) -> str | None:
    """A query argument of the page's URL (``/daskflow/asset?key=raw``), if any."""
    try:
        values = doc.session_context.request.arguments.get(name)
    except AttributeError:
        return None
    if not values:
        return None
    value = values[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, (int, float)):
        return ""
    return datetime.datetime.fromtimestamp(float(timestamp), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _link(key: str) -> str:
    return f'<a href="asset?key={urllib.parse.quote(key)}">{html.escape(key)}</a>'


# ----------------------------------------------------------------- the catalog
CATALOG_COLUMNS = ("asset", "status", "partitions", "last_materialized", "rows", "bytes", "duration_s",
                   "code_version", "data_version", "last_run_id")


def catalog_rows(assets: list[dict]) -> dict[str, list]:
    data: dict[str, list] = {k: [] for k in CATALOG_COLUMNS}
    for a in assets:
        data["asset"].append(a["asset"])
        data["status"].append(a["status"])
        data["partitions"].append("-" if a["partitions"] is None else str(a["partitions"]))
        data["last_materialized"].append(_when(a["last_materialized_at"]))
        for k in ("rows", "bytes", "duration_s"):
            data[k].append(_number(a.get(k)))
        data["code_version"].append(a.get("code_version") or "-")
        data["data_version"].append((a.get("data_version") or "-")[:12])
        data["last_run_id"].append((a.get("last_run_id") or "")[:12])
    return data


def catalog_page(scheduler, extra, doc) -> None:
    """Every asset of one pipeline: status (running while its task runs), partitions, size, versions."""
    extension = _extension(scheduler)
    source = ColumnDataSource({k: [] for k in CATALOG_COLUMNS}, name="daskflow-catalog-source")
    selector = Select(title="pipeline", options=[], value="", name="daskflow-catalog-pipeline", width=400)
    table = DataTable(
        name="daskflow-catalog-table", source=source, width=1200, height=520, index_position=None,
        columns=[
            TableColumn(field="asset", title="asset (open)", width=240, formatter=_asset_link_formatter()),
            TableColumn(field="status", title="status", width=90),
            TableColumn(field="partitions", title="partitions", width=70),
            TableColumn(field="last_materialized", title="last materialized (UTC)", width=150),
            TableColumn(field="rows", title="rows", formatter=NumberFormatter(format="0,0"), width=80),
            TableColumn(field="bytes", title="size", formatter=NumberFormatter(format="0.0 b"), width=80),
            TableColumn(field="duration_s", title="duration s", formatter=NumberFormatter(format="0.000"), width=80),
            TableColumn(field="code_version", title="code version", width=90, formatter=full_name_formatter()),
            TableColumn(field="data_version", title="data version", width=110, formatter=full_name_formatter()),
            TableColumn(field="last_run_id", title="run", width=110),
        ])
    note = _note("daskflow-catalog-note")
    wanted = {"pipeline": _argument(doc, "pipeline")}
    last = {"payload": None}

    def update() -> None:
        payload = extension.asset_catalog(wanted["pipeline"])
        if payload == last["payload"]:
            return
        last["payload"] = payload
        selector.options = list(payload["pipelines"])
        selector.value = payload["pipeline"] or ""
        _set(source, catalog_rows(payload["assets"]))
        note.text = html.escape(f"{len(payload['assets'])} assets of pipeline {payload['pipeline']}. {payload['note']}")

    def choose(attr, old, new) -> None:
        if new and new != wanted["pipeline"]:
            wanted["pipeline"] = new
            update()

    selector.on_change("value", choose)
    _finish(doc, scheduler, extra, PAGES["catalog"], column(row(selector), note, table), update)


# ------------------------------------------------------------------ one asset
HISTORY_COLUMNS = ("time", "partition", "run_id", "rows", "bytes", "duration_s", "predicted_duration_s",
                   "peak_memory_bytes", "predicted_peak_memory_bytes", "code_version")
CHECK_COLUMNS = ("when", "partition", "check", "result", "blocking", "message")
GRID_COLUMNS = ("partition", "label", "status", "colour", "x", "y", "run_id")


def history_columns(history: list[dict]) -> dict[str, list]:
    data: dict[str, list] = {k: [] for k in HISTORY_COLUMNS}
    for point in history:
        data["time"].append(float(point["created_at"]) * 1000.0)
        data["partition"].append(point.get("partition") or "-")
        data["run_id"].append((point.get("run_id") or "")[:12])
        data["code_version"].append(point.get("code_version") or "-")
        for k in ("rows", "bytes", "duration_s", "predicted_duration_s", "peak_memory_bytes",
                  "predicted_peak_memory_bytes"):
            data[k].append(_number(point.get(k)))
    return data


def grid_columns(partitions: list[dict]) -> dict[str, list]:
    """Cells in rows of 7 (a week of daily partitions per row) or of ~sqrt(n) for many partitions."""
    n = len(partitions)
    width = 7 if n <= 7 * 12 else max(7, int(math.ceil(math.sqrt(n))))
    data: dict[str, list] = {k: [] for k in GRID_COLUMNS}
    for index, cell in enumerate(partitions):
        data["partition"].append(str(cell["partition"]))
        data["label"].append(str(cell["partition"])[-10:])  # "2024-01-03", the hour of an hourly key
        data["status"].append(cell["status"])
        data["colour"].append(GRID_COLOURS.get(cell["status"], "#7f7f7f"))
        data["x"].append(float(index % width))
        data["y"].append(-float(index // width))
        data["run_id"].append((cell.get("run_id") or "")[:12])
    return data


def asset_page(scheduler, extra, doc) -> None:
    """One asset: history with predictions, checks, neighbourhood, versions, partition grid."""
    extension = _extension(scheduler)
    wanted = {"key": _argument(doc, "key")}
    selector = Select(title="asset", options=[], value="", name="daskflow-asset-select", width=400)
    header = Div(text="", name="daskflow-asset-header", styles={"font-size": "14px"})
    history = ColumnDataSource({k: [] for k in HISTORY_COLUMNS}, name="daskflow-asset-history")
    checks = ColumnDataSource({k: [] for k in CHECK_COLUMNS}, name="daskflow-asset-checks")
    grid = ColumnDataSource({k: [] for k in GRID_COLUMNS}, name="daskflow-asset-partitions")
    tooltips = [("partition", "@partition"), ("run", "@run_id"), ("actual", "@duration_s{0.000} s"),
                ("predicted", "@predicted_duration_s{0.000} s"), ("rows", "@rows"), ("bytes", "@bytes{0.0 b}"),
                ("peak", "@peak_memory_bytes{0.0 b}"), ("predicted peak", "@predicted_peak_memory_bytes{0.0 b}")]
    durations = figure(name="daskflow-asset-durations", title="Duration per materialization (s): actual, and predicted "
                       "(hollow) when recorded", x_axis_type="datetime", height=260, width=600,
                       tools="pan,wheel_zoom,box_zoom,reset,hover", tooltips=tooltips)
    durations.scatter("time", "duration_s", source=history, size=7, color="#1f77b4", legend_label="actual")
    durations.scatter("time", "predicted_duration_s", source=history, size=9, fill_alpha=0, line_color="#ff7f0e",
                      line_width=2, legend_label="predicted")
    durations.legend.location = "top_left"
    sizes = figure(name="daskflow-asset-sizes", title="Output size and peak memory (bytes)", x_axis_type="datetime",
                   x_range=durations.x_range, height=260, width=600, tools="pan,wheel_zoom,box_zoom,reset,hover",
                   tooltips=tooltips)
    sizes.scatter("time", "bytes", source=history, size=7, color="#2ca02c", legend_label="output bytes")
    sizes.scatter("time", "peak_memory_bytes", source=history, size=7, color="#9467bd", legend_label="peak memory")
    sizes.scatter("time", "predicted_peak_memory_bytes", source=history, size=9, fill_alpha=0, line_color="#8c564b",
                  line_width=2, legend_label="predicted peak")
    sizes.legend.location = "top_left"
    rows_plot = figure(name="daskflow-asset-rows", title="Rows per materialization", x_axis_type="datetime",
                       x_range=durations.x_range, height=200, width=600, tools="pan,wheel_zoom,box_zoom,reset,hover",
                       tooltips=tooltips)
    rows_plot.scatter("time", "rows", source=history, size=7, color="#17becf")
    partitions = figure(name="daskflow-asset-grid", title="Partitions (hover for the status)", height=240, width=600,
                        match_aspect=True,
                        tools="hover,pan,wheel_zoom,reset", tooltips=[("partition", "@partition"),
                                                                       ("status", "@status"), ("run", "@run_id")])
    partitions.rect("x", "y", width=0.92, height=0.92, source=grid, fill_color="colour", line_color="#555")
    partitions.text("x", "y", text="label", source=grid, text_align="center", text_baseline="middle",
                    text_font_size="9px", text_color="#222")
    partitions.xaxis.visible = partitions.yaxis.visible = False
    partitions.xgrid.visible = partitions.ygrid.visible = False
    legend = Div(name="daskflow-asset-grid-legend", text=" ".join(
        f'<span style="white-space:nowrap;margin-right:8px"><span style="color:{c}">&#9632;</span> {s}</span>'
        for s, c in GRID_COLOURS.items()))
    check_table = DataTable(
        name="daskflow-asset-checks-table", source=checks, width=600, height=200, index_position=None,
        columns=[TableColumn(field="when", title="when (UTC)", width=140), TableColumn(field="partition", title="partition"),
                 TableColumn(field="check", title="check"), TableColumn(field="result", title="result", width=60),
                 TableColumn(field="blocking", title="blocking", width=60),
                 TableColumn(field="message", title="message", formatter=full_name_formatter())])
    note = _note("daskflow-asset-note")
    last = {"payload": None}

    def update() -> None:
        catalog = extension.asset_catalog(None)
        options = sorted({a["asset"] for a in catalog["assets"]} | ({wanted["key"]} if wanted["key"] else set()))
        if not wanted["key"] and options:
            wanted["key"] = options[0]
        if selector.options != options:
            selector.options = options
        selector.value = wanted["key"] or ""
        if not wanted["key"]:
            note.text = html.escape(catalog["note"] or "no assets yet")
            return
        payload = extension.asset_detail(wanted["key"])
        if payload == last["payload"]:
            return
        last["payload"] = payload
        latest = payload.get("latest") or {}
        ups = ", ".join(_link(k) for k in payload["upstream"]) or "none"
        downs = ", ".join(_link(k) for k in payload["downstream"]) or "none"
        running = f" &nbsp; <b>running now:</b> {html.escape(', '.join(payload['running']) or 'yes')}" \
            if payload.get("running") else ""
        header.text = (
            f"<b>{html.escape(payload['asset'])}</b> &nbsp; <b>code version:</b> "
            f"{html.escape(str(latest.get('code_version') or '-'))} &nbsp; <b>data version:</b> "
            f"<span title='{html.escape(str(latest.get('data_version') or ''))}'>"
            f"{html.escape(str(latest.get('data_version') or '-')[:16])}</span> &nbsp; <b>last:</b> "
            f"{html.escape(_when(latest.get('created_at')) or 'never')}{running}<br>"
            f"<b>upstream:</b> {ups} &nbsp; <b>downstream:</b> {downs}")
        _set(history, history_columns(payload["history"]))
        _set(checks, {
            "when": [_when(c["created_at"]) for c in payload["checks"]],
            "partition": [c["partition"] or "-" for c in payload["checks"]],
            "check": [c["check_name"] for c in payload["checks"]],
            "result": ["passed" if c["passed"] else "failed" for c in payload["checks"]],
            "blocking": ["yes" if c["blocking"] else "no" for c in payload["checks"]],
            "message": [c["message"] or "" for c in payload["checks"]],
        })
        _set(grid, grid_columns(payload["partitions"]))
        partitions.visible = legend.visible = bool(payload["partitions"])
        predicted = sum(1 for p in payload["history"] if p.get("predicted_duration_s") is not None)
        note.text = html.escape(
            f"{len(payload['history'])} materializations shown ({predicted} with a recorded prediction; predictions "
            f"are kept for the recorder's recent tasks). {payload['note']}")

    def choose(attr, old, new) -> None:
        if new and new != wanted["key"]:
            wanted["key"] = new
            update()

    selector.on_change("value", choose)
    layout = column(row(selector), header, note, row(column(durations, rows_plot), column(sizes, check_table)),
                    legend, partitions)
    _finish(doc, scheduler, extra, PAGES["asset"], layout, update)
