"""Retention of launcher logs (``<log dir>/<run_id>.log``, one file per run).

Design note
-----------
Every launched run leaves one log file; without pruning a daemon that runs for
months fills the disk. The rule is pure (:func:`logs_to_prune`, ``now_s`` is an
argument): a log is removed when it is older than ``max_age_s`` (by its last
modification) or when more than ``max_files`` newer logs exist. ``None``
switches a rule off. Logs of runs still in flight are never removed, whatever
their age. The daemon applies it (:func:`prune_launcher_logs`) when it starts
and then every :data:`PRUNE_INTERVAL_S`; settings
``daskflow.timeline.log-max-age`` and ``daskflow.timeline.log-max-files``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Collection, Sequence

__all__ = ["PRUNE_INTERVAL_S", "LogFile", "logs_to_prune", "prune_launcher_logs", "retention_from_config"]

#: how often the daemon prunes (seconds): listing a directory is cheap, but not every tick
PRUNE_INTERVAL_S = 600.0


@dataclasses.dataclass(frozen=True)
class LogFile:
    """One launcher log: its run id (the file's stem) and last modification (epoch seconds)."""

    run_id: str
    modified_s: float


def logs_to_prune(logs: Sequence[LogFile], now_s: float, max_age_s: float | None, max_files: int | None,
                  active: Collection[str] = ()) -> list[str]:
    """Run ids whose logs to remove, oldest first (pure).

    >>> logs = [LogFile("a", 0.0), LogFile("b", 50.0), LogFile("c", 90.0)]
    >>> logs_to_prune(logs, now_s=100.0, max_age_s=60.0, max_files=None)
    ['a']
    >>> logs_to_prune(logs, now_s=100.0, max_age_s=None, max_files=1, active={"a"})
    ['b']
    """
    newest_first = sorted(logs, key=lambda log: (log.modified_s, log.run_id), reverse=True)
    doomed = []
    kept = 0
    for log in newest_first:
        if log.run_id in active:
            continue  # an in-flight run's log is neither removed nor counted
        too_old = max_age_s is not None and now_s - log.modified_s > max_age_s
        too_many = max_files is not None and kept >= max_files
        if too_old or too_many:
            doomed.append(log.run_id)
        else:
            kept += 1
    return doomed[::-1]


def retention_from_config() -> tuple[float | None, int | None]:
    """``(max_age_s, max_files)`` from ``daskflow.timeline.log-max-age`` / ``log-max-files``."""
    from dask.utils import parse_timedelta

    from daskflow import config

    age, files = config.get("timeline.log-max-age"), config.get("timeline.log-max-files")
    return (None if age is None else float(parse_timedelta(age, default="s")),
            None if files is None else int(files))


def prune_launcher_logs(log_dir: pathlib.Path, now_s: float, max_age_s: float | None, max_files: int | None,
                        active: Collection[str] = ()) -> list[str]:
    """Remove the launcher logs :func:`logs_to_prune` picks in ``log_dir``; returns their run ids.

    A file that vanishes meanwhile (another daemon pruned it) is not an error.
    """
    logs = []
    try:
        entries = list(pathlib.Path(log_dir).glob("*.log"))
    except OSError:
        return []
    for path in entries:
        try:
            logs.append(LogFile(path.stem, path.stat().st_mtime))
        except OSError:
            continue
    removed = []
    for run_id in logs_to_prune(logs, now_s, max_age_s, max_files, active):
        try:
            (pathlib.Path(log_dir) / f"{run_id}.log").unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(run_id)
    return removed
