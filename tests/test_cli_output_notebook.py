"""Jupyter: the HTML repr of a RunResult and the in-place progress display (no IPython needed for the test)."""

from __future__ import annotations

import logging

from daskflow.notebook import NotebookProgress, in_notebook, run_result_html
from daskflow.run_result import AssetRecord, CheckRecord, RunResult


class FakeDisplay:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def update(self, html_text) -> None:
        self.shown.append(str(html_text))


def test_run_result_html_repr():
    result = RunResult("0123456789abcdef", "failure", [
        AssetRecord("orders", "2024-01-01", "success", duration_s=0.5, rows=3, bytes=2048),
        AssetRecord("report", None, "failed", error="KeyError: 'total' <b>"),
        AssetRecord("old", None, "stale-skipped", reason="unchanged"),
    ], [CheckRecord("orders", "2024-01-01", "positive", "failed", True, "2 negative")])
    text = result._repr_html_()
    assert text == run_result_html(result)
    assert "<b>run 0123456789ab</b>" in text and "1 success, 1 failed, 1 up-to-date" in text
    assert "<td>orders</td><td>2024-01-01</td>" in text and "2.00 kiB" in text
    assert "KeyError: &#x27;total&#x27; &lt;b&gt;" in text  # escaped
    assert "positive on orders[2024-01-01]" in text


def test_notebook_progress_updates_one_area_with_phase_lines_and_a_link():
    display = FakeDisplay()
    bar = NotebookProgress(display=display)
    bar.start("r1", {"orders": 2})
    logging.getLogger("daskflow.run").handlers.clear()
    bar._listen_to_phases()
    logging.getLogger("daskflow.run").info("cluster ready, dashboard %s", "http://127.0.0.1:8787/status")
    bar.update([{"asset": "orders", "status": "success"}, {"asset": "orders", "status": "failed"}])
    bar.finish()
    bar._stop_listening()
    assert not logging.getLogger("daskflow.run").handlers
    last = display.shown[-1]
    assert "2/2 assets, 1 failed" in last
    assert '<a href="http://127.0.0.1:8787/status" target="_blank">http://127.0.0.1:8787/status</a>' in last
    assert not in_notebook()  # pytest is no kernel
