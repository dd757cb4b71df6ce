"""Bokeh document for ``/daskflow/timeline``: a run's tasks per worker, predicted vs actual.

Design note. One lane per worker; per task a grey bar for the prediction
(drawn from the task's start, behind) and a coloured bar for what it took;
a red outline marks a straggler, a black one the critical path, a triangle
each steering decision that held, placed or released a task. Data:
:func:`scheduler_plugins.dashboard.run_timeline.run_timeline` through the
dashboard extension (bounded by the recorder's recent rows). A selector
picks the run (newest first; ``?run=PREFIX`` in the URL preselects one).
"""

from __future__ import annotations

import html

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, FactorRange, HoverTool, Select
from bokeh.plotting import figure

from scheduler_plugins.dashboard.asset_pages import _argument
from scheduler_plugins.dashboard.pages import (
    PAGES,
    _colour,
    _extension,
    _finish,
    _note,
    _set,
)

TASK_COLUMNS = ("key", "worker", "category", "start", "stop", "duration_s", "predicted_duration_s",
                "predicted_stop", "colour", "outline", "outline_width", "straggler", "critical")
DECISION_COLUMNS = ("key", "worker", "time", "action", "reason")


def task_columns(timeline: dict) -> dict[str, list]:
    data: dict[str, list] = {k: [] for k in TASK_COLUMNS}
    for task in timeline["tasks"]:
        for k in ("key", "worker", "category", "start", "stop", "duration_s"):
            data[k].append(task[k])
        predicted = task["predicted_duration_s"]
        data["predicted_duration_s"].append(float("nan") if predicted is None else predicted)
        # no prediction: a zero-length grey bar (nothing drawn)
        data["predicted_stop"].append(task["start"] if task["predicted_stop"] is None else task["predicted_stop"])
        data["colour"].append(_colour(task["category"]))
        data["straggler"].append("yes" if task["straggler"] else "")
        data["critical"].append("yes" if task["critical"] else "")
        data["outline"].append("#d62728" if task["straggler"] else ("#000000" if task["critical"] else None))
        data["outline_width"].append(2.5 if task["straggler"] or task["critical"] else 0.0)
    return data


def decision_columns(timeline: dict) -> dict[str, list]:
    lane = {t["key"]: t["worker"] for t in timeline["tasks"]}
    data: dict[str, list] = {k: [] for k in DECISION_COLUMNS}
    for mark in timeline["decisions"]:
        data["key"].append(mark["key"])
        data["worker"].append(lane.get(mark["key"], mark["worker"]))
        data["time"].append(mark["time"])
        data["action"].append(mark["action"])
        data["reason"].append(mark["reason"])
    return data


def timeline_page(scheduler, extra, doc) -> None:
    """The selected run's tasks on their workers over time, with predictions, decisions, stragglers, critical path."""
    extension = _extension(scheduler)
    wanted = {"run": _argument(doc, "run")}
    selector = Select(title="run", options=[], value="", name="daskflow-timeline-run", width=400)
    tasks = ColumnDataSource({k: [] for k in TASK_COLUMNS}, name="daskflow-timeline-tasks")
    marks = ColumnDataSource({k: [] for k in DECISION_COLUMNS}, name="daskflow-timeline-decisions")
    lanes = FactorRange(factors=[])
    plot = figure(name="daskflow-timeline-plot", title="Run timeline: one lane per worker (s since the run's first "
                  "task started)", y_range=lanes, height=420, width=1200, x_axis_label="seconds",
                  tools="xpan,xwheel_zoom,box_zoom,reset")
    predicted = plot.hbar(y="worker", left="start", right="predicted_stop", height=0.8, source=tasks,
                          color="#bdbdbd", alpha=0.6, legend_label="predicted")
    actual = plot.hbar(y="worker", left="start", right="stop", height=0.45, source=tasks, fill_color="colour",
                       line_color="outline", line_width="outline_width", legend_label="actual")
    decided = plot.scatter(x="time", y="worker", source=marks, marker="triangle", size=9, color="#111111",
                           legend_label="steering decision")
    plot.add_tools(HoverTool(renderers=[actual, predicted], tooltips=[
        ("task", "@key"), ("worker", "@worker"), ("actual", "@duration_s{0.000} s"),
        ("predicted", "@predicted_duration_s{0.000} s"), ("straggler", "@straggler"), ("critical path", "@critical")]))
    plot.add_tools(HoverTool(renderers=[decided], tooltips=[("task", "@key"), ("decision", "@action"),
                                                           ("reason", "@reason")]))
    plot.legend.location = "top_right"
    legend = Div(name="daskflow-timeline-legend", text=(
        "grey: predicted duration (from the task's start) &nbsp; coloured: actual (colour = category) &nbsp; "
        "<span style='color:#d62728'>red outline</span>: straggler (&ge; 2&times; the prediction) &nbsp; "
        "black outline: critical path &nbsp; &#9650;: steering decision"))
    note = _note("daskflow-timeline-note")
    last = {"payload": None}

    def update() -> None:
        payload = extension.timeline(_full_run(extension, wanted["run"]))
        if payload == last["payload"]:
            return
        last["payload"] = payload
        selector.options = [(r, r[:12]) for r in payload["runs"]]
        selector.value = payload["run_id"] or ""
        lanes.factors = list(payload["workers"])
        _set(tasks, task_columns(payload))
        _set(marks, decision_columns(payload))
        stragglers = sum(1 for t in payload["tasks"] if t["straggler"])
        note.text = html.escape(
            f"run {payload['run_id'] or '-'}: {len(payload['tasks'])} tasks on {len(payload['workers'])} workers, "
            f"{stragglers} stragglers, critical path {len(payload['critical_path'])} tasks, "
            f"{len(payload['decisions'])} steering decisions. {payload['note']}")

    def choose(attr, old, new) -> None:
        if new and new != wanted["run"]:
            wanted["run"] = new
            update()

    selector.on_change("value", choose)
    _finish(doc, scheduler, extra, PAGES["timeline"], column(row(selector), note, legend, plot), update)


def _full_run(extension, prefix: str | None) -> str | None:
    """A run id from the prefix in ``?run=`` (the 12 characters `daskflow runs` prints)."""
    if not prefix:
        return None
    matches = [r for r in extension.timeline(None)["runs"] if r.startswith(prefix)]
    return matches[0] if len(matches) == 1 else prefix
