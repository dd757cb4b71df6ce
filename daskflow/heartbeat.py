"""The run heartbeat: a listener whose background thread tells the catalog the run's client is alive.

Design note
-----------
A run whose client dies (SIGKILL, a lost laptop) would stay ``running``
forever. While a run runs, :class:`RunHeartbeat` updates its
``runs.heartbeat_at`` every ``daskflow.runs.heartbeat-interval`` from a
daemon thread (the run loop may block for minutes in ``as_completed``); a run
without a heartbeat for ``daskflow.runs.abandon-after`` is marked failed
(abandoned) by :meth:`daskflow.catalog.Catalog.mark_abandoned_runs`, which
the next command writing the catalog (and the timeline daemon) calls. A
heartbeat that cannot be written (the catalog is busy) is skipped, never an
error: the next one retries, and abandon-after is several intervals long.
"""

from __future__ import annotations

import threading

from daskflow import config
from daskflow.catalog import Catalog
from daskflow.listeners import RunInfo, RunListener
from daskflow.run_result import RunResult

__all__ = ["RunHeartbeat", "heartbeat_interval_s"]


def heartbeat_interval_s() -> float:
    """Config ``daskflow.runs.heartbeat-interval`` in seconds."""
    from dask.utils import parse_timedelta

    return float(parse_timedelta(config.get("runs.heartbeat-interval"), default="s"))


class RunHeartbeat(RunListener):
    """Beats for one run from ``run_started`` until ``run_finished``."""

    def __init__(self, catalog: Catalog, interval_s: float | None = None):
        self.catalog = catalog
        self.interval_s = heartbeat_interval_s() if interval_s is None else float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_started(self, run: RunInfo) -> None:
        self._thread = threading.Thread(target=self._beat, args=(run.run_id,), daemon=True,
                                        name=f"daskflow-heartbeat-{run.run_id[:12]}")
        self._thread.start()

    def _beat(self, run_id: str) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.catalog.heartbeat(run_id):
                    return  # the run is no longer running
            except Exception:  # noqa: BLE001 - a busy catalog: the next beat retries
                continue

    def run_finished(self, run: RunInfo, result: RunResult) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
