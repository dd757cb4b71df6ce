"""Driving a backfill in the foreground: ``daskflow backfill`` / ``daskflow backfill resume``.

Design note
-----------
The command is a :class:`~daskflow.timeline.queue.QueueRunner` restricted to
its backfill's chunks (``only=("backfill", ID)``) with a launcher pool as
large as the backfill's ``max_concurrent_runs``; the queue enforces that
limit (and the global / pool limits) across every runner of the catalog, so a
daemon helping at the same time never makes it exceed. Each tick: reap,
admit, launch, redraw the progress line. Launchers run in their own sessions:
Ctrl-C stops the command and *pauses* the backfill (runs in flight finish;
nothing new starts until ``resume``); SIGKILL leaves it running for a daemon
or a later ``resume``. State lives only in the catalog
(:mod:`daskflow.timeline.backfill`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from daskflow import config
from daskflow.timeline.backfill import Backfills
from daskflow.timeline.launch import LauncherPool
from daskflow.timeline.queue import QueueRunner
from daskflow.timeline.store import TimelineStore

__all__ = ["BackfillProgress", "drive_backfill", "progress_line"]


def _seconds(setting: str) -> float:
    from dask.utils import parse_timedelta

    return float(parse_timedelta(config.get(setting), default="s"))


def progress_line(status: dict[str, Any], width: int = 30) -> str:
    """One line: bar, done/total partitions, failed, running, pending (pure).

    >>> progress_line({"backfill_id": "bf-1", "n_partitions": 4, "done": 2, "failed": 1, "running": 1,
    ...                "pending": 0, "canceled": 0}, width=8)
    'bf-1 [####--..] 2/4 done, 1 failed, 1 running, 0 pending'
    """
    total = max(1, int(status["n_partitions"]))
    done_cells = int(width * status["done"] / total)
    failed_cells = int(width * status["failed"] / total)
    bar = "#" * done_cells + "-" * failed_cells + "." * max(0, width - done_cells - failed_cells)
    line = (f"{status['backfill_id']} [{bar}] {status['done']}/{status['n_partitions']} done, "
            f"{status['failed']} failed, {status['running']} running, {status['pending']} pending")
    return line + (f", {status['canceled']} canceled" if status.get("canceled") else "")


class BackfillProgress:
    """Redraws :func:`progress_line` in place on a TTY; elsewhere prints it when it changes (at most every 5 s)."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line, self._last_print = "", 0.0

    def update(self, status: dict[str, Any], final: bool = False) -> None:
        if not self.enabled:
            return
        line = progress_line(status)
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
            self.stream.flush()
        elif line != self._last_line and (final or time.monotonic() - self._last_print >= 5.0):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_print = time.monotonic()
        self._last_line = line


def drive_backfill(backfill_id: str, catalog_path: str | None = None, address: str | None = None,
                   stop_event: threading.Event | None = None, progress: BackfillProgress | None = None,
                   clock: Callable[[], float] = time.time, max_iterations: int | None = None,
                   pool: Any = None) -> dict[str, Any]:
    """Launch the backfill's chunks until none is pending or running; returns its final status.

    On ``stop_event`` (SIGINT/SIGTERM in the main thread) the backfill is paused
    and the status returned has ``"interrupted": True``. ``pool``: a launcher
    pool (default: a :class:`LauncherPool` of ``max_concurrent_runs`` processes).
    """
    store = TimelineStore(catalog_path)
    backfills = Backfills(store)
    row = backfills.get(backfill_id)
    log_dir = config.get("timeline.log-dir") or (store.path.parent / "timeline-logs")
    pool = pool or LauncherPool(int(row["max_concurrent_runs"]), str(store.path), address, log_dir)
    runner = QueueRunner(store, pool, only=("backfill", backfill_id))
    tick_s = _seconds("backfill.tick-interval")
    progress = progress or BackfillProgress(enabled=False)
    stop = stop_event or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    iterations = 0
    try:
        while True:
            runner.step(clock())
            status = backfills.status(backfill_id)
            progress.update(status)
            iterations += 1
            if status["finished"] and not pool.in_flight:
                progress.update(status, final=True)
                return {**status, "interrupted": False}
            if status["status"] in ("canceled", "paused") and not pool.in_flight:
                progress.update(status, final=True)
                return {**status, "interrupted": status["status"] == "paused"}
            if stop.is_set() or (max_iterations is not None and iterations >= max_iterations):
                backfills.set_status(backfill_id, "paused", only_from="running")
                status = backfills.status(backfill_id)
                progress.update(status, final=True)
                return {**status, "interrupted": True, "in_flight": sorted(pool.in_flight)}
            stop.wait(tick_s)
    finally:
        close = getattr(pool, "close", None)
        if close is not None:  # warm launchers exit after their runs
            close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
