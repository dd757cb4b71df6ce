"""A peak measured while other tasks shared the worker process is not the task's own (pure, fake worker).

The memory-pressure bag on 4 workers x 2 threads: a 50 MB task beside a 1.3 GB
one read ~1.3 GB, the in-run corrector learned "light tasks peak at ~1 GB",
and admission held every light task as if it were heavy (1.8-2.4 x LB).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from daskflow.contracts import METADATA_KEY
from scheduler_plugins.task_feedback import peak_of
from scheduler_plugins.worker_memory import PeakMemoryPlugin

pytestmark = pytest.mark.timeout(30)


def plugin_on_fake_worker():
    plugin = PeakMemoryPlugin()
    plugin.method = "rss-end"  # no /proc reset in a test: RSS deltas are enough to check the bookkeeping
    plugin._proc = SimpleNamespace(rss_bytes=lambda: 100 * 2**20, mark_bytes=lambda: None, reset_mark=lambda: None)
    tasks = {key: SimpleNamespace(metadata={}, startstops=[]) for key in ("alone", "light", "heavy")}
    plugin.worker = SimpleNamespace(state=SimpleNamespace(tasks=tasks))
    return plugin, tasks


def test_a_task_that_ran_alone_reports_its_peak():
    plugin, tasks = plugin_on_fake_worker()
    plugin.transition("alone", "ready", "executing")
    plugin.transition("alone", "executing", "memory")
    measured = tasks["alone"].metadata[METADATA_KEY]
    assert measured["concurrent_tasks"] == 1 and isinstance(measured["peak_memory_bytes"], int)
    assert peak_of(tasks["alone"].metadata) is not None


def test_tasks_that_shared_the_process_report_no_peak_of_their_own():
    plugin, tasks = plugin_on_fake_worker()
    plugin.transition("heavy", "ready", "executing")
    plugin.transition("light", "ready", "executing")
    plugin.transition("light", "executing", "memory")
    plugin.transition("heavy", "executing", "memory")
    for key in ("light", "heavy"):
        measured = tasks[key].metadata[METADATA_KEY]
        assert measured["concurrent_tasks"] == 2 and measured["peak_memory_bytes"] is None
        assert isinstance(measured["shared_peak_memory_bytes"], int)
        assert peak_of(tasks[key].metadata) is None  # the in-run corrector learns nothing from it
