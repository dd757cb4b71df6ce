"""daskflow in Jupyter: an HTML view of a :class:`~daskflow.run_result.RunResult` and a live progress display.

Design note
-----------
Nothing here imports IPython at module import: :func:`in_notebook` looks for
a running kernel, and :class:`NotebookProgress` (a
:class:`~daskflow.progress.RunProgress`, so a run listener) draws the same
counts as the terminal bar into ONE output area that it updates in place
(``IPython.display.display(..., display_id=True)``), at most five times a
second, with the run's phase lines ("starting embedded cluster…", "cluster
ready, dashboard …" as a link). ipywidgets are not needed.
:func:`run_result_html` is what ``RunResult._repr_html_`` shows: a status
line and one row per asset-partition (failed ones with their error).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable
from typing import Any

from daskflow.formatting import format_bytes
from daskflow.progress import _DONE_STATUSES, RunProgress

__all__ = ["NotebookProgress", "in_notebook", "run_result_html"]

_COLOURS = {"success": "#2e7d32", "failed": "#c62828", "skipped": "#8d6e63", "stale-skipped": "#546e7a",
            "passed": "#2e7d32", "failure": "#c62828"}
_SHOWN = {"stale-skipped": "up-to-date"}
_LINK = re.compile(r"(https?://\S+)")


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel app), without importing IPython."""
    import sys

    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _status(status: str) -> str:
    colour = _COLOURS.get(status, "#424242")
    return f'<span style="color:{colour};font-weight:600">{html.escape(_SHOWN.get(status, status))}</span>'


def _linkify(text: str) -> str:
    return _LINK.sub(lambda m: f'<a href="{m.group(1)}" target="_blank">{m.group(1)}</a>', html.escape(text))


def run_result_html(result: Any, max_rows: int = 200) -> str:
    """HTML for a run result: the status line, then a table of asset-partitions (at most ``max_rows``).

    >>> from daskflow.run_result import AssetRecord, RunResult
    >>> "<td>orders</td>" in run_result_html(RunResult("r1", "success", [AssetRecord("orders", None, "success")]))
    True
    """
    counts: dict[str, int] = {}
    for rec in result.records:
        counts[rec.status] = counts.get(rec.status, 0) + 1
    summary = ", ".join(f"{n} {_SHOWN.get(s, s)}" for s, n in counts.items()) or "nothing"
    head = (f"<p><b>run {html.escape(result.run_id[:12])}</b>: {_status(result.status)} in "
            f"{result.duration_s:.1f} s &mdash; {html.escape(summary)}</p>")
    rows = []
    for rec in result.records[:max_rows]:
        cells = [html.escape(rec.asset), html.escape(rec.partition or "-"), _status(rec.status),
                 "-" if rec.duration_s is None else f"{rec.duration_s:.2f} s",
                 "-" if rec.rows is None else str(rec.rows), html.escape(format_bytes(rec.bytes)),
                 html.escape(rec.error or rec.reason or "")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = len(result.records) - max_rows
    tail = f"<p>&hellip; and {more} more</p>" if more > 0 else ""
    checks = "".join(f"<li>{html.escape(c.check)} on {html.escape(c.asset)}"
                     + (f"[{html.escape(c.partition)}]" if c.partition else "")
                     + f": {_status(c.status)} {html.escape(c.message or '')}</li>"
                     for c in result.checks if c.status != "passed")
    header = "".join(f"<th>{h}</th>" for h in ("asset", "partition", "status", "duration", "rows", "size", "note"))
    return (f'<div class="daskflow-run">{head}<table><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table>{tail}" + (f"<ul>{checks}</ul>" if checks else "") + "</div>")


class NotebookProgress(RunProgress):
    """The progress bar as one HTML output area, updated in place."""

    def __init__(self, display: Any = None) -> None:
        super().__init__(enabled=True)
        self._display = display  # tests pass a fake: an object with .update(html_text)
        self.notes: list[str] = []

    def _handle(self):
        if self._display is None:
            from IPython.display import HTML, display

            self._display = display(HTML(""), display_id=True)
            self._html = HTML
        return self._display

    def html(self) -> str:
        total = max(self.total, 1)
        percent = 100.0 * self.done / total
        failed = f", {self.failures} failed" if self.failures else ""
        notes = "".join(f"<div>{_linkify(n)}</div>" for n in self.notes)
        return (f'<div class="daskflow-progress">{notes}<div style="width:320px;border:1px solid #999;height:10px">'
                f'<div style="width:{percent:.0f}%;background:#1976d2;height:10px"></div></div>'
                f"<div>{self.done}/{self.total} assets{failed} | {time.monotonic() - self.started_at:.1f} s</div></div>")

    def _show(self) -> None:
        handle = self._handle()
        text = self.html()
        html_type = getattr(self, "_html", None)
        handle.update(html_type(text) if html_type is not None else text)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        self._show()

    def note(self, line: str) -> None:
        if line not in self.notes:
            self.notes.append(line)
        self._draw(force=True)

    def finish(self) -> None:
        self._draw(force=True)

    def counts_by_asset(self) -> Iterable[tuple[str, dict[str, int]]]:
        for asset in self.totals:
            yield asset, {s: self.counts[asset][s] for s in _DONE_STATUSES if self.counts[asset][s]}
