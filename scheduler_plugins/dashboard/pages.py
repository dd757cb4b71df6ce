"""Bokeh documents for the daskflow pages of the Dask dashboard.

Design note. Each page is a Bokeh document factory ``page(scheduler, extra,
doc)`` (the signature distributed's ``BokehApplication`` uses), served by the
scheduler's own Bokeh server under ``/daskflow/<page>``. A page owns only
ColumnDataSources and widgets; its data comes from the scheduler's
:class:`~scheduler_plugins.dashboard.extension.DashboardExtension` (bounded
aggregates, see :mod:`.state`), and one periodic callback per document
(``daskflow.dashboard.update-interval``) swaps the sources' data when the
extension's data changed. Every plot and table has a stable ``name`` (e.g.
``daskflow-predictions-duration``) so tests and scripts can find it in the
page and in the browser's Bokeh document. Without the recorder or steering
plugin, plots stay empty and a note says why.
"""

from __future__ import annotations

import datetime
import html
import math
import pathlib
from collections.abc import Callable
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    DataTable,
    Div,
    HoverTool,
    HTMLTemplateFormatter,
    LabelSet,
    NumberFormatter,
    Select,
    TableColumn,
)
from bokeh.palettes import Category20
from bokeh.plotting import figure
from jinja2 import Environment, FileSystemLoader

from daskflow.contracts import DASHBOARD_EXTENSION
from scheduler_plugins import compat

_TEMPLATES = Environment(loader=FileSystemLoader(str(pathlib.Path(__file__).with_name("templates"))))

PAGES = {
    "predictions": "Predictions vs actuals",
    "decisions": "Steering decisions",
    "assets": "Assets",
    "model": "Model quality",
    "runs": "Runs, schedules and backfills",
}


def _extension(scheduler: Any):
    return compat.extension(scheduler, DASHBOARD_EXTENSION)


def _colour(category: str, palette: tuple = Category20[20]) -> str:
    return palette[sum(category.encode()) % len(palette)]


def full_name_formatter() -> HTMLTemplateFormatter:
    """A table cell that shows the whole value on hover (long keys are clipped by the column); one per document."""
    return HTMLTemplateFormatter(template='<span title="<%- value %>"><%- value %></span>')


def colour_legend(categories: list[str], limit: int = 40) -> str:
    """HTML swatches naming the colour of each category (at most ``limit``).

    >>> "load" in colour_legend(["load"])
    True
    """
    items = [f'<span style="white-space:nowrap;margin-right:10px" title="{html.escape(c)}">'
             f'<span style="color:{_colour(c)}">&#9679;</span> {html.escape(c)}</span>' for c in categories[:limit]]
    more = f" and {len(categories) - limit} more" if len(categories) > limit else ""
    return " ".join(items) + more


def _finish(doc, scheduler, extra: dict, title: str, roots, update: Callable[[], None]) -> None:
    extension = _extension(scheduler)
    update()
    doc.add_periodic_callback(update, int(extension.update_interval_s * 1000))
    doc.add_root(roots)
    doc.title = f"daskflow: {title}"
    doc.template = _TEMPLATES.get_template("page.html")
    doc.template_variables.update(extra)
    names = sorted({model.name for model in doc.models if model.name and model.name.startswith("daskflow-")})
    doc.template_variables.update(title=title, pages=PAGES, prefix=extension.url_prefix, model_names=names)


DURATION_FLOOR_S = 1e-4
MEMORY_FLOOR_BYTES = 1024.0


def _span(values: list[float], floor: float) -> list[float]:
    """[low, high] of the finite values (for the y = x diagonal), or [] when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return [max(min(finite), floor), max(finite)] if finite else []


def _note(name: str) -> Div:
    return Div(text="", name=name, styles={"color": "#555", "font-size": "13px"})


def _set(source: ColumnDataSource, data: dict[str, list]) -> None:
    source.data = data


def _notes(extension, needs: tuple[str, ...]) -> str:
    summary = extension.steering()
    notes = []
    if "recorder" in needs and not summary["recorder"]:
        notes.append("The recorder plugin (daskflow-recorder) is not installed on this scheduler: no task data.")
    if "steering" in needs and not summary["present"]:
        notes.append("The steering plugin (daskflow-steering) is not installed on this scheduler: no predictions or decisions.")
    return " ".join(notes)


# ----------------------------------------------------------------- predictions
def predictions_page(scheduler, extra, doc) -> None:
    """Predicted vs actual duration and peak memory per category, updating live."""
    extension = _extension(scheduler)
    points = ColumnDataSource({k: [] for k in ("key", "category", "colour", "predicted_duration_s", "duration_s", "predicted_peak_memory_bytes", "peak_memory_bytes")}, name="daskflow-predictions-points")
    table_columns = ("category", "count", "predicted_count", "mean_duration_s", "mean_predicted_duration_s", "mean_peak_memory_bytes", "mean_predicted_peak_memory_bytes", "median_model_ape", "median_baseline_ape", "error_ratio")
    categories = ColumnDataSource({k: [] for k in table_columns}, name="daskflow-predictions-categories")
    diagonal = ColumnDataSource({"duration_s": [], "peak_memory_bytes": []}, name="daskflow-predictions-diagonal")
    hover = HoverTool(tooltips=[("key", "@key"), ("category", "@category"), ("predicted", "@predicted_duration_s{0.000} s"), ("actual", "@duration_s{0.000} s")])
    # log-log: task costs span milliseconds to hours; values below the floors are drawn at the floor
    duration = figure(name="daskflow-predictions-duration", title="Duration: predicted vs actual (s, log-log; dashed: perfect)", x_axis_label="predicted duration (s)", y_axis_label="actual duration (s)", x_axis_type="log", y_axis_type="log", height=380, width=520, tools=[hover, "pan,wheel_zoom,box_zoom,reset"])
    duration.scatter("predicted_duration_s", "duration_s", source=points, color="colour", size=6, alpha=0.6)
    duration.line("duration_s", "duration_s", source=diagonal, line_dash="dashed", line_color="#999")
    memory = figure(name="daskflow-predictions-memory", title="Peak memory: predicted vs actual (bytes, log-log)", x_axis_label="predicted peak memory (bytes)", y_axis_label="actual peak memory (bytes)", x_axis_type="log", y_axis_type="log", height=380, width=520, tools="pan,wheel_zoom,box_zoom,reset,hover")
    memory.scatter("predicted_peak_memory_bytes", "peak_memory_bytes", source=points, color="colour", size=6, alpha=0.6)
    memory.line("peak_memory_bytes", "peak_memory_bytes", source=diagonal, line_dash="dashed", line_color="#999")
    three = NumberFormatter(format="0.000")
    size = NumberFormatter(format="0.0 b")
    percent = NumberFormatter(format="0.0%")
    table = DataTable(
        name="daskflow-predictions-table",
        source=categories,
        columns=[
            TableColumn(field="category", title="category", width=260, formatter=full_name_formatter()),
            TableColumn(field="count", title="tasks", width=60),
            TableColumn(field="predicted_count", title="predicted", width=70),
            TableColumn(field="mean_duration_s", title="mean actual s", formatter=three),
            TableColumn(field="mean_predicted_duration_s", title="mean predicted s", formatter=three),
            TableColumn(field="mean_peak_memory_bytes", title="mean actual peak", formatter=size),
            TableColumn(field="mean_predicted_peak_memory_bytes", title="mean predicted peak", formatter=size),
            TableColumn(field="median_model_ape", title="median APE model", formatter=percent),
            TableColumn(field="median_baseline_ape", title="median APE mean", formatter=percent),
            TableColumn(field="error_ratio", title="error ratio (<1 better)", formatter=NumberFormatter(format="0.00")),
        ],
        width=1200,
        height=260,
        index_position=None,
    )
    legend = Div(text="", name="daskflow-predictions-legend", styles={"font-size": "12px", "max-width": "1060px"})
    note = _note("daskflow-predictions-note")
    last = {"signature": None}

    def update() -> None:
        extension.refresh()
        payload = extension.state.predictions_payload()
        signature = (payload["rows_seen"], extension.steering()["present"])
        if signature == last["signature"]:
            return
        last["signature"] = signature
        data = {k: [] for k in points.data}
        floors = {"predicted_duration_s": DURATION_FLOOR_S, "duration_s": DURATION_FLOOR_S, "predicted_peak_memory_bytes": MEMORY_FLOOR_BYTES, "peak_memory_bytes": MEMORY_FLOOR_BYTES}
        for point in payload["points"]:
            data["key"].append(point["key"])
            data["category"].append(point["category"])
            data["colour"].append(_colour(point["category"]))
            for k, floor in floors.items():
                value = point.get(k)
                data[k].append(float("nan") if value is None else max(float(value), floor))
        _set(points, data)
        _set(diagonal, {k: _span([*data[k], *data[f"predicted_{k}"]], floors[k]) for k in ("duration_s", "peak_memory_bytes")})
        _set(categories, {k: [r[k] if r[k] is not None else float("nan") for r in payload["categories"]] if k != "category" else [r[k] for r in payload["categories"]] for k in table_columns})
        extra_note = _notes(extension, ("recorder", "steering"))
        note.text = html.escape(f"{payload['rows_seen']} tasks recorded; showing the last {len(payload['points'])}. "
                                "Errors: median absolute % error per category, of the model and of the per-category "
                                f"running mean (Dask's own estimate); ratio < 1: the model is better. {extra_note}")
        legend.text = colour_legend(sorted({p["category"] for p in payload["points"]}))

    _finish(doc, scheduler, extra, PAGES["predictions"], column(note, legend, row(duration, memory), table), update)


# ------------------------------------------------------------------- decisions
DECISION_COLUMNS = ("time", "key", "action", "reason", "worker", "predicted_duration_s", "predicted_peak_memory_bytes", "alternatives", "model_version")


def decision_rows(decisions: list[dict]) -> dict[str, list]:
    """Table columns for decisions (newest first); ``alternatives`` flattened to text."""
    from scheduler_plugins.dashboard.state import format_alternatives

    data: dict[str, list] = {k: [] for k in DECISION_COLUMNS}
    for decision in decisions:
        stamp = decision.get("time") or decision.get("timestamp")
        data["time"].append(datetime.datetime.fromtimestamp(float(stamp)).strftime("%H:%M:%S.%f")[:-3] if isinstance(stamp, (int, float)) else "")
        for k in ("key", "action", "reason", "worker", "model_version"):
            data[k].append("" if decision.get(k) is None else str(decision.get(k)))
        for k in ("predicted_duration_s", "predicted_peak_memory_bytes"):
            value = decision.get(k)
            data[k].append(float(value) if isinstance(value, (int, float)) else float("nan"))
        data["alternatives"].append(format_alternatives(decision.get("alternatives")))
    return data


def decisions_page(scheduler, extra, doc) -> None:
    """Recent steering decisions with reason, chosen worker and alternatives; mode, version, fallbacks."""
    from scheduler_plugins.dashboard.state import decisions_signature

    extension = _extension(scheduler)
    source = ColumnDataSource({k: [] for k in DECISION_COLUMNS}, name="daskflow-decisions-source")
    reasons = ColumnDataSource({"reason": [], "count": []}, name="daskflow-decisions-reasons-source")
    summary = Div(text="", name="daskflow-steering-summary", styles={"font-size": "15px"})
    table = DataTable(
        name="daskflow-decisions-table",
        source=source,
        columns=[
            TableColumn(field="time", title="time", width=90),
            TableColumn(field="key", title="task key", width=220),
            TableColumn(field="action", title="action", width=70),
            TableColumn(field="reason", title="reason", width=90),
            TableColumn(field="worker", title="worker", width=170),
            TableColumn(field="predicted_duration_s", title="pred. s", formatter=NumberFormatter(format="0.000"), width=70),
            TableColumn(field="predicted_peak_memory_bytes", title="pred. peak", formatter=NumberFormatter(format="0.0 b"), width=80),
            TableColumn(field="alternatives", title="alternatives (worker score)", width=300),
            TableColumn(field="model_version", title="model", width=110),
        ],
        width=1200,
        height=480,
        index_position=None,
    )
    chart = figure(name="daskflow-decisions-reasons", title="Reasons among recent decisions", x_range=[], height=220, width=520, tools="")
    chart.vbar(x="reason", top="count", source=reasons, width=0.8, color="#1f77b4")
    note = _note("daskflow-decisions-note")
    last = {"signature": None}

    def update() -> None:
        steering = extension.steering()
        decisions = extension.decisions()
        signature = (decisions_signature(scheduler), str(steering))
        if signature == last["signature"]:
            return
        last["signature"] = signature
        summary.text = (
            f"<b>steering mode:</b> {html.escape(str(steering['mode']))} &nbsp; "
            f"<b>model version:</b> {html.escape(str(steering['model_version'] or 'none'))} &nbsp; "
            f"<b>fallbacks:</b> {steering['fallback_count'] if steering['fallback_count'] is not None else '-'} &nbsp; "
            f"<b>decisions shown:</b> {len(decisions)}"
        )
        _set(source, decision_rows(decisions))
        counts: dict[str, int] = {}
        for decision in decisions:
            reason = str(decision.get("reason") or decision.get("action") or "?")
            counts[reason] = counts.get(reason, 0) + 1
        chart.x_range.factors = sorted(counts)
        _set(reasons, {"reason": sorted(counts), "count": [counts[r] for r in sorted(counts)]})
        note.text = html.escape(_notes(extension, ("steering",)) or ("" if decisions else "No steering decisions yet: run a pipeline with steering mode shadow or steer."))

    _finish(doc, scheduler, extra, PAGES["decisions"], column(summary, note, chart, table), update)


# ---------------------------------------------------------------------- assets
def assets_page(scheduler, extra, doc) -> None:
    """Lineage graph of the assets in recent runs, coloured by materialization status."""
    from scheduler_plugins.dashboard.assets import STATUS_COLOURS

    extension = _extension(scheduler)
    node_columns = ("asset", "status", "colour", "x", "y", "run_id", "partitions", "rows", "bytes")
    nodes = ColumnDataSource({k: [] for k in node_columns}, name="daskflow-assets-nodes")
    edges = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []}, name="daskflow-assets-edges")
    graph = figure(name="daskflow-assets-graph", title="Asset lineage (recent runs)", height=460, width=1000, tools="pan,wheel_zoom,box_zoom,reset,hover", tooltips=[("asset", "@asset"), ("status", "@status"), ("run", "@run_id"), ("partitions", "@partitions"), ("rows", "@rows")])
    graph.segment("x0", "y0", "x1", "y1", source=edges, line_color="#888", line_width=2)
    graph.scatter("x", "y", source=nodes, size=22, color="colour", line_color="#333")
    graph.add_layout(LabelSet(x="x", y="y", text="asset", source=nodes, x_offset=12, y_offset=8, text_font_size="11px"))
    graph.xaxis.visible = graph.yaxis.visible = False
    graph.xgrid.visible = graph.ygrid.visible = False
    legend = Div(
        name="daskflow-assets-legend",
        text=" ".join(f'<span style="color:{c}">&#9679; {html.escape(s)}</span>' for s, c in STATUS_COLOURS.items()),
    )
    table = DataTable(
        name="daskflow-assets-table",
        source=nodes,
        columns=[TableColumn(field=k, title=k) for k in ("asset", "status", "run_id", "partitions", "rows", "bytes")],
        width=1000,
        height=240,
        index_position=None,
    )
    note = _note("daskflow-assets-note")
    selector = Select(title="pipeline", options=[], value="", name="daskflow-assets-pipeline", width=400)
    last = {"signature": None}
    wanted = {"pipeline": None}

    def update() -> None:
        payload = extension.assets()
        running = {a for a, _ in extension.running()}
        signature = (id(payload), tuple(sorted(running)), wanted["pipeline"])
        if signature == last["signature"]:
            return
        last["signature"] = signature
        shown = live_nodes(payload, running, wanted["pipeline"])
        selector.options = shown["pipelines"]
        selector.value = shown["pipeline"] or ""
        _set(nodes, {k: [n.get(k) for n in shown["nodes"]] for k in node_columns})
        where = {n["asset"]: (n["x"], n["y"]) for n in shown["nodes"]}
        segments = [(where[a], where[b]) for a, b in payload["edges"] if a in where and b in where]
        _set(edges, {"x0": [s[0][0] for s in segments], "y0": [s[0][1] for s in segments], "x1": [s[1][0] for s in segments], "y1": [s[1][1] for s in segments]})
        runs = ", ".join(f"{r['run_id'][:8]} ({r['status']})" for r in payload["runs"] if r["pipeline"] == shown["pipeline"])
        note.text = html.escape(f"catalog {payload['catalog']}; pipeline {shown['pipeline']}; runs: {runs or 'none'}. "
                                f"{payload['note']}")

    def choose(attr, old, new) -> None:
        if new and new != wanted["pipeline"]:
            wanted["pipeline"] = new
            update()

    selector.on_change("value", choose)
    _finish(doc, scheduler, extra, PAGES["assets"], column(row(selector), note, legend, graph, table), update)


def live_nodes(payload: dict, running: set[str], pipeline: str | None) -> dict:
    """The lineage nodes of ONE pipeline (default: the most recently run), ``running`` ones marked so.

    >>> live_nodes({"runs": [{"pipeline": "etl"}], "nodes": [{"asset": "a", "pipeline": "etl", "status": "materialized"},
    ...            {"asset": "b", "pipeline": "ml", "status": "failed"}]}, {"a"}, None)["nodes"][0]["status"]
    'running'
    """
    from scheduler_plugins.dashboard.assets import STATUS_COLOURS

    pipelines = list(dict.fromkeys(r.get("pipeline") for r in payload.get("runs", []) if r.get("pipeline")))
    pipeline = pipeline if pipeline in pipelines else (pipelines[0] if pipelines else None)
    shown = []
    for node in payload.get("nodes", []):
        if pipeline is not None and node.get("pipeline") not in (pipeline, None):
            continue
        if node["asset"] in running:
            node = {**node, "status": "running", "colour": STATUS_COLOURS["running"]}
        shown.append(node)
    return {"pipeline": pipeline, "pipelines": pipelines, "nodes": shown}


# ----------------------------------------------------------------------- model
def model_page(scheduler, extra, doc) -> None:
    """Rolling error of model and baseline over time; drift warning when the model stops beating it."""
    extension = _extension(scheduler)
    series = ColumnDataSource({"time": [], "model_error": [], "baseline_error": [], "memory_model_error": [], "memory_baseline_error": [], "n": []}, name="daskflow-model-series")
    chart = figure(name="daskflow-model-quality", title="Rolling median absolute % error of duration predictions (log scale)", x_axis_type="datetime", y_axis_type="log", y_axis_label="error (fraction of actual)", height=380, width=1000, tools="pan,wheel_zoom,box_zoom,reset,hover")
    chart.line("time", "model_error", source=series, color="#1f77b4", line_width=2, legend_label="model")
    chart.line("time", "baseline_error", source=series, color="#ff7f0e", line_width=2, line_dash="dashed", legend_label="baseline (per-category mean)")
    chart.legend.location = "top_left"
    memory_chart = figure(name="daskflow-model-quality-memory", title="Rolling median absolute % error of peak-memory predictions (log scale)", x_axis_type="datetime", y_axis_type="log", y_axis_label="error (fraction of actual)", x_range=chart.x_range, height=300, width=1000, tools="pan,wheel_zoom,box_zoom,reset,hover")
    memory_chart.line("time", "memory_model_error", source=series, color="#1f77b4", line_width=2, legend_label="model")
    memory_chart.line("time", "memory_baseline_error", source=series, color="#ff7f0e", line_width=2, line_dash="dashed", legend_label="baseline (per-category mean)")
    memory_chart.legend.location = "top_left"
    summary = Div(text="", name="daskflow-model-summary", styles={"font-size": "15px"})
    drift = Div(text="", name="daskflow-drift", styles={"font-size": "15px"})
    model_events = Div(text="", name="daskflow-model-events", styles={"font-size": "14px"})
    note = _note("daskflow-model-note")
    last = {"signature": None}

    def update() -> None:
        extension.refresh()
        payload = extension.model()
        quality = payload["quality"]
        signature = (len(quality["series"]), quality["series"][-1]["time"] if quality["series"] else None, str(payload["steering"]),
                     len(payload.get("model_events") or ()))
        if signature == last["signature"]:
            return
        last["signature"] = signature
        points = quality["series"]
        floor = 1e-4  # log axis: a perfect 0.0 error is drawn at the floor
        def clip(value):
            return float("nan") if value is None else max(value, floor)

        columns = ("model_error", "baseline_error", "memory_model_error", "memory_baseline_error")
        _set(series, {"time": [p["time"] * 1000.0 for p in points], "n": [p["n"] for p in points], **{c: [clip(p.get(c)) for p in points] for c in columns}})
        steering = payload["steering"]
        summary.text = (
            f"<b>model version:</b> {html.escape(str(steering['model_version'] or 'none'))} &nbsp; "
            f"<b>steering mode:</b> {html.escape(str(steering['mode']))} &nbsp; <b>window:</b> {quality['window']} tasks"
        )
        verdict = quality["drift"]
        colour = "#d62728" if verdict["warning"] else "#2ca02c"
        drift.text = f'<span style="color:{colour}">{"&#9888; " if verdict["warning"] else ""}{html.escape(verdict["message"])}</span>'
        model_events.text = format_model_events(payload.get("model_events") or [])
        note.text = html.escape(_notes(extension, ("recorder", "steering")))

    _finish(doc, scheduler, extra, PAGES["model"], column(summary, drift, model_events, note, chart, memory_chart), update)


def format_model_events(events: list[dict]) -> str:
    """HTML list of drift alarms and model loads (newest first) for the model page."""
    if not events:
        return "<b>model events:</b> none in this scheduler (drift alarms and model loads show here)"
    items = []
    for event in events:
        if event.get("event") == "drift":
            text = (f"drift: {event.get('target', 'duration')} of {event.get('category')!s} {event.get('direction')} "
                    f"x{event.get('shift')} after {event.get('observed')} task(s); planned from this run's tasks since "
                    f"(model {event.get('model_version')})")
        else:
            text = f"{event.get('event')}: model {event.get('model_version')}"
        items.append(f"<li>{html.escape(text)}</li>")
    return "<b>model events</b> (also in &lt;models&gt;/events.jsonl):<ul>" + "".join(items) + "</ul>"


APPLICATIONS: dict[str, Callable] = {
    "/predictions": predictions_page,
    "/decisions": decisions_page,
    "/assets": assets_page,
    "/model": model_page,
}


# The asset catalog / asset detail and run timeline pages live in their own modules (same factory shape);
# imported when a document is made, as those modules import the helpers above.
def catalog_page(scheduler, extra, doc) -> None:
    from scheduler_plugins.dashboard.asset_pages import catalog_page as page

    page(scheduler, extra, doc)


def asset_page(scheduler, extra, doc) -> None:
    from scheduler_plugins.dashboard.asset_pages import asset_page as page

    page(scheduler, extra, doc)


def timeline_page(scheduler, extra, doc) -> None:
    from scheduler_plugins.dashboard.run_timeline_page import timeline_page as page

    page(scheduler, extra, doc)


PAGES.update({"catalog": "Asset catalog", "asset": "Asset detail", "timeline": "Run timeline"})
APPLICATIONS.update({"/catalog": catalog_page, "/asset": asset_page, "/timeline": timeline_page})

from scheduler_plugins.dashboard.runs_page import runs_page

APPLICATIONS["/runs"] = runs_page
