"""A terminal progress bar for runs: a run listener.

Design note: :class:`RunProgress` is a :class:`~daskflow.listeners.RunListener`;
the run loop already waits on its futures with ``distributed.as_completed``
and emits one event per finished asset-partition, which the bar counts
(:meth:`RunProgress.update`). It therefore costs no extra round trip to the
scheduler and shows exactly what the run recorded: done/total, per-asset
counts and failures. It draws on a TTY only (or when
``daskflow.execution.progress`` is ``always``); in pipes, logs and ``--json``
mode it is a no-op object, so callers never check for ``None``.

State is plain data (counts per asset and status) that can be printed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import IO, Any

from daskflow import config
from daskflow.listeners import RunListener

#: the logger on which the run loop announces its phases (cluster start, dashboard link)
PHASE_LOGGER = "daskflow.run"
#: statuses that count as "finished" for the bar
_DONE_STATUSES = ("success", "failed", "skipped", "stale-skipped")
#: how a stored status reads to people ("stale-skipped" reads as "skipped because stale")
_SHOWN = {"stale-skipped": "up-to-date"}


class RunProgress(RunListener):
    """Counts finished asset-partitions and draws one status line.

    >>> import io
    >>> bar = RunProgress(stream=io.StringIO(), enabled=True, width=10)
    >>> bar.start("run-1", {"orders": 2, "report": 1})
    >>> bar.update([{"asset": "orders", "status": "success"}])
    >>> bar.done, bar.total
    (1, 3)
    """

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = should_show_progress(self.stream)
        self.enabled = enabled
        self.width = width
        #: print the per-asset counts when the run finishes (the CLI prints its table instead)
        self.summary = True
        self.run_id = ""
        self.totals: dict[str, int] = {}
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.started_at = time.monotonic()
        self._last_draw = 0.0
        self._last_len = 0

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def done(self) -> int:
        return sum(sum(c[s] for s in _DONE_STATUSES) for c in self.counts.values())

    @property
    def failures(self) -> int:
        return sum(c["failed"] for c in self.counts.values())

    def start(self, run_id: str, totals_by_asset: dict[str, int]) -> None:
        """Begin a run of ``sum(totals_by_asset.values())`` asset-partitions."""
        self.run_id = run_id
        self.totals = dict(totals_by_asset)
        self.counts = defaultdict(Counter)
        self.started_at = time.monotonic()
        self._draw(force=True)

    def update(self, records: Iterable[dict[str, Any]]) -> None:
        """Count finished records (dicts with ``asset`` and ``status``)."""
        for record in records:
            self.counts[record["asset"]][record["status"]] += 1
        self._draw()

    def note(self, line: str) -> None:
        """Print ``line`` above the bar (the bar is redrawn below it); without a bar, print it alone."""
        if self.enabled:
            self.stream.write("\r" + " " * self._last_len + "\r" + line + "\n")
            self._last_len = 0
            self._draw(force=True)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        self._draw(force=True)
        self.stream.write("\n")
        for asset, total in (self.totals.items() if self.summary else ()):
            counts = self.counts.get(asset, Counter())
            parts = [f"{counts[s]} {_SHOWN.get(s, s)}" for s in _DONE_STATUSES if counts[s]]
            self.stream.write(f"  {asset}: {', '.join(parts) or 'not run'} (of {total})\n")
        self.stream.flush()

    # -- run listener ------------------------------------------------------
    def run_started(self, run) -> None:
        self.start(run.run_id, run.totals)
        self._listen_to_phases()

    def asset_materialized(self, run, record, stored) -> None:
        self.update([vars(record)])

    def asset_failed(self, run, record) -> None:
        self.update([vars(record)])

    def asset_skipped(self, run, record) -> None:
        self.update([vars(record)])

    def run_finished(self, run, result) -> None:
        self.finish()
        self._stop_listening()

    # -- the run loop's phase lines ("starting embedded cluster ...") above the bar --------
    def _listen_to_phases(self) -> None:
        """Show the phase lines while drawing, unless someone (the CLI) already prints them."""
        logger = logging.getLogger(PHASE_LOGGER)
        if not self.enabled or logger.handlers:
            return
        self._phase_handler = _NoteHandler(self.note)
        logger.addHandler(self._phase_handler)
        if logger.getEffectiveLevel() > logging.INFO:
            self._phase_level = logger.level
            logger.setLevel(logging.INFO)

    def _stop_listening(self) -> None:
        handler = getattr(self, "_phase_handler", None)
        if handler is None:
            return
        logger = logging.getLogger(PHASE_LOGGER)
        logger.removeHandler(handler)
        if hasattr(self, "_phase_level"):
            logger.setLevel(self._phase_level)
            del self._phase_level
        self._phase_handler = None

    def line(self) -> str:
        """The status line as it would be drawn."""
        total = max(self.total, 1)
        filled = int(self.width * self.done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed_s = time.monotonic() - self.started_at
        running = [a for a, t in self.totals.items() if sum(self.counts[a][s] for s in _DONE_STATUSES) < t]
        current = f" | {running[0]}" if running else ""
        failed = f" | {self.failures} failed" if self.failures else ""
        return f"[{bar}] {self.done}/{self.total} assets{failed}{current} | {elapsed_s:.1f}s"

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:  # at most 10 redraws per second
            return
        self._last_draw = now
        text = self.line()
        pad = " " * max(0, self._last_len - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._last_len = len(text)


class _NoteHandler(logging.Handler):
    def __init__(self, note) -> None:
        super().__init__(logging.INFO)
        self._note = note

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._note(record.getMessage())
        except Exception:  # noqa: BLE001 - a note never breaks the run
            self.handleError(record)


def should_show_progress(stream: IO[str] | None = None) -> bool:
    """Whether to draw: config ``daskflow.execution.progress`` (auto|always|never); auto = on a TTY."""
    mode = str(config.get("execution.progress")).lower()
    if mode in ("always", "true", "on"):
        return True
    if mode in ("never", "false", "off"):
        return False
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def make_progress(progress: bool | RunProgress | None, stream: IO[str] | None = None) -> RunProgress:
    """Normalise ``materialize(progress=...)``: a bar, ``True``/``False`` to force, ``None`` for config."""
    if isinstance(progress, RunProgress):
        return progress
    if progress is None and stream is None:
        from daskflow.notebook import in_notebook

        if in_notebook() and str(config.get("execution.progress")).lower() not in ("never", "false", "off"):
            from daskflow.notebook import NotebookProgress

            return NotebookProgress()
    return RunProgress(stream=stream, enabled=progress if isinstance(progress, bool) else None)
