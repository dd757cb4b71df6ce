"""How the CLI shows things to people: tables, run results, notes while a run starts.

Design note
-----------
Every human-readable table of the CLI goes through :func:`table` (columns
aligned by ``rich``, never by hand; no colour, no box, trailing spaces
stripped, so the text is the same on a terminal, in a pipe and in a test).
``--json`` output never comes through here.

A run's text (:func:`run_report`) is written for the common case:

* the table lists the asset-partitions that were *attempted*; those found up
  to date (stored status ``stale-skipped``, shown as ``up-to-date``) are one
  summary line, ``24 up to date, 0 run`` (``--verbose``: the table and their
  reasons too);
* failures are grouped by distinct error: one line per group with a count,
  the place in the pipeline file (``at pipeline.py:12 in broken``) and the
  traceback once, trimmed to the user's frames (``--verbose``: in full);
* skipped ones are grouped by reason.

While a run starts, :class:`RunNotes` turns the run loop's log lines
(``daskflow.run``: "starting embedded cluster (2 workers)…", "cluster ready,
dashboard http://…") and daskflow's own ``RuntimeWarning`` s (the
no-model note) into one short line each, printed once, above the progress
bar when there is one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from daskflow.formatting import format_bytes
from daskflow.progress import (
    PHASE_LOGGER as RUN_LOGGER,  # the logger the run loop announces its phases on
)

__all__ = ["RunNotes", "display_status", "failure_groups", "run_report", "table", "user_frame"]

#: the stored status -> the word shown to people
_DISPLAY_STATUS = {"stale-skipped": "up-to-date"}


def display_status(status: str) -> str:
    """The status as shown: ``stale-skipped`` reads as "skipped because stale", so it is shown ``up-to-date``.

    >>> display_status("stale-skipped"), display_status("failed")
    ('up-to-date', 'failed')
    """
    return _DISPLAY_STATUS.get(status, status)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], right: Iterable[str] = ()) -> str:
    """Rows aligned in columns under ``headers`` (``right``: the headers of right-aligned columns).

    >>> print(table([["orders", 3], ["report", 12]], ["asset", "rows"], right=["rows"]))
    asset   rows
    orders     3
    report    12
    """
    from rich.console import Console
    from rich.table import Table

    right = set(right)
    grid = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0), header_style="")
    for header in headers:
        grid.add_column(header, no_wrap=True, justify="right" if header in right else "left")
    for row in rows:
        grid.add_row(*("-" if cell is None else str(cell) for cell in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, force_terminal=False, highlight=False,
            markup=False, emoji=False, soft_wrap=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


# -- a run ---------------------------------------------------------------------
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


def _is_library(path: str) -> bool:
    """Frames of daskflow itself, of Dask and of installed packages are not the user's."""
    import daskflow

    if path == "<dynamic-code>":  # a function cloudpickle shipped by value: the pipeline file's
        return False
    package_dir = daskflow.__file__.rsplit("/", 2)[0] + "/daskflow/"
    return (path.startswith(package_dir) or "site-packages" in path or "dist-packages" in path
            or path.startswith("<frozen") or "/lib/python3" in path)


def user_frame(traceback_text: str | None) -> tuple[str, int, str] | None:
    """``(file, line, function)`` of the innermost frame in the user's code (the pipeline file), else None.

    >>> user_frame('Traceback (most recent call last):\\n  File "/p/pipeline.py", line 12, in broken\\n'
    ...            '    1 / 0\\nZeroDivisionError: division by zero\\n')
    ('/p/pipeline.py', 12, 'broken')
    """
    found = None
    for line in (traceback_text or "").splitlines():
        match = _FRAME.match(line)
        if match and not _is_library(match["file"]):
            found = (match["file"], int(match["line"]), match["func"])
    return found


def trim_traceback(traceback_text: str) -> str:
    """The traceback with only the user's frames (all of it when none is the user's)."""
    lines = traceback_text.rstrip().splitlines()
    out, keep, any_user = [], True, False
    for line in lines:
        match = _FRAME.match(line)
        if match:
            keep = not _is_library(match["file"])
            any_user = any_user or keep
            if keep:
                out.append(line)
        elif line.startswith("  ") and not line.startswith("Traceback"):
            if keep:
                out.append(line)
        else:  # the header, the exception lines, "During handling ..." separators
            keep = True
            out.append(line)
    return "\n".join(out) if any_user else traceback_text.rstrip()


def _where(asset: str, partition: str | None) -> str:
    return asset if partition is None else f"{asset}[{partition}]"


def _names(wheres: list[str], limit: int = 3) -> str:
    shown = ", ".join(wheres[:limit])
    return shown + (f" and {len(wheres) - limit} more" if len(wheres) > limit else "")


def _generic(text: str, partition: str | None) -> str:
    """``text`` with this record's partition key replaced by ``…`` where it is clearly the key."""
    if not partition:
        return text
    text = text.replace(f"[{partition}]", "[\u2026]").replace(f"'{partition}'", "'\u2026'")
    if len(partition) >= 4:  # long enough not to hit ordinary words ("a", "b", "eu")
        text = re.sub(rf"(?<![\w-]){re.escape(partition)}(?![\w-])", "\u2026", text)
    return text


def failure_groups(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Failed records grouped by distinct error, first seen first: ``{error, where: [...], traceback}``.

    Partitions of one asset failing the same way differ only in the partition key inside the
    message; those are one group.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        if rec.status != "failed":
            continue
        error = rec.error or "failed"
        generic = _generic(error, rec.partition)
        group = groups.setdefault((rec.asset, generic), {
            "asset": rec.asset, "error": error if generic == error else generic, "where": [],
            "traceback": rec.traceback})
        group["where"].append(_where(rec.asset, rec.partition))
    return list(groups.values())


def _with_source(traceback_text: str, source_file: str | None) -> str:
    """Name the pipeline file where cloudpickle's ``<dynamic-code>`` stands, and show the source lines."""
    if not source_file:
        return traceback_text
    import linecache

    out = []
    lines = traceback_text.splitlines()
    for index, line in enumerate(lines):
        match = _FRAME.match(line)
        if match and match["file"] == "<dynamic-code>":
            out.append(line.replace('"<dynamic-code>"', f'"{source_file}"'))
            following = lines[index + 1] if index + 1 < len(lines) else ""
            code = linecache.getline(source_file, int(match["line"])).strip()
            if code and not following.startswith("    "):
                out.append(f"    {code}")
        else:
            out.append(line)
    return "\n".join(out)


def run_report(result: Any, verbose: bool = False, source_file: str | None = None) -> tuple[list[str], list[str]]:
    """The text of a finished run: ``(stdout lines, stderr lines)``; ``source_file``: the pipeline file."""
    out: list[str] = []
    err: list[str] = []
    up_to_date = [r for r in result.records if r.status == "stale-skipped"]
    shown = result.records if verbose else [r for r in result.records if r.status != "stale-skipped"]
    if shown:
        rows = [[rec.asset, rec.partition or "-", display_status(rec.status),
                 "-" if rec.duration_s is None else f"{rec.duration_s:.2f}s",
                 "-" if rec.rows is None else rec.rows, format_bytes(rec.bytes), rec.worker or "-"]
                for rec in shown]
        out.append(table(rows, ["asset", "partition", "status", "duration", "rows", "size", "worker"],
                         right=["duration", "rows", "size"]))
    attempted = len(result.records) - len(up_to_date)
    if up_to_date:
        out.append(f"{len(up_to_date)} up to date, {attempted} run")
        if verbose:
            out += [f"  {_where(r.asset, r.partition)} up to date: {r.reason}" for r in up_to_date]
    passed = [c for c in result.checks if c.status == "passed"]
    if passed and not verbose and len(passed) > 3:
        out.append(f"checks: {len(passed)} passed")
        passed_shown: list = []
    else:
        passed_shown = passed
    for check in result.checks:
        if check.status == "passed" and check not in passed_shown:
            continue
        kind = "blocking" if check.blocking else "warning"
        out.append(f"check {check.check} on {_where(check.asset, check.partition)} ({kind}): {check.status}"
                   + (f" - {check.message}" if check.message else ""))
    skipped: dict[tuple[str, str], list[Any]] = {}
    for rec in result.records:
        if rec.status == "skipped":
            reason = rec.reason or "not attempted"
            skipped.setdefault((rec.asset, _generic(reason, rec.partition)), []).append(rec)
    for (_, reason), recs in skipped.items():
        shown_reason = recs[0].reason if len(recs) == 1 else reason
        out.append(f"{_names([_where(r.asset, r.partition) for r in recs])} skipped: {shown_reason}")
    for group in failure_groups(result.records):
        count = len(group["where"])
        tb = _with_source(group["traceback"], source_file) if group["traceback"] else None
        err.append("")
        err.append(f"{_names(group['where'])} failed" + (f" ({count}x)" if count > 1 else "") + f": {group['error']}")
        frame = user_frame(tb)
        if frame is not None:
            err.append(f"  at {frame[0]}:{frame[1]} in {frame[2]}")
        if tb and (verbose or frame is not None):
            err.append(tb.rstrip() if verbose else trim_traceback(tb))
        elif tb:  # raised by daskflow's own checks (a schema mismatch, ...): the message says it all
            err.append("  (raised inside daskflow or a library, not in your pipeline: --verbose shows the traceback)")
    out.append(f"run {result.run_id[:12]}: {result.status} in {result.duration_s:.1f}s")
    return out, err


# -- notes while a run starts --------------------------------------------------
_NO_MODEL = re.compile(r"no model at .*predicting per-category means")


def short_warning(message: str) -> str:
    """daskflow's warnings as one short line (the no-model note is the common one).

    >>> short_warning("daskflow: no model at '/h/models' (no manifest.json); predicting per-category means / "
    ...               "defaults. Train one with `daskflow model train`.")
    'note: no cost model yet: predicting per-category means (train one with `daskflow model train`)'
    """
    text = " ".join(str(message).split())
    text = text.removeprefix("daskflow: ")
    if _NO_MODEL.search(text):
        return "note: no cost model yet: predicting per-category means (train one with `daskflow model train`)"
    return f"warning: {text}"


class RunNotes(logging.Handler):
    """Prints the run loop's phase lines and daskflow's warnings, each distinct line once, through ``write``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.write = write
        self.seen: list[str] = []

    def note(self, line: str) -> None:
        if line not in self.seen:
            self.seen.append(line)
            self.write(line)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.note(record.getMessage())
        except Exception:  # noqa: BLE001 - a note never breaks the run
            self.handleError(record)

    def _showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text.startswith("daskflow") or "daskflow" in str(filename):
            self.note(short_warning(text))
        else:
            self._original_showwarning(message, category, filename, lineno, file, line)

    @contextlib.contextmanager
    def active(self) -> Iterator[RunNotes]:
        """Route ``daskflow.run`` log lines and warnings here for the duration of the block."""
        logger = logging.getLogger(RUN_LOGGER)
        old_level, old_propagate = logger.level, logger.propagate
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        self._original_showwarning = warnings.showwarning
        with warnings.catch_warnings():
            # daskflow's own warnings reach us every time; "once per distinct line" is done by self.seen
            warnings.filterwarnings("always", message="daskflow", category=RuntimeWarning)
            warnings.showwarning = self._showwarning
            try:
                yield self
            finally:
                logger.removeHandler(self)
                logger.setLevel(old_level)
                logger.propagate = old_propagate
