"""Stopping local processes: SIGTERM, a grace period, then SIGKILL (used by ``cluster`` and ``testbed``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def terminate_then_kill(processes: Sequence[Any], grace_s: float) -> None:
    """SIGTERM ``processes`` (``psutil.Process``), wait ``grace_s``, SIGKILL the rest and reap them.

    ``grace_s <= 0`` sends SIGKILL at once. Processes that are already gone are ignored.
    """
    import psutil

    alive = list(processes)
    if grace_s > 0:
        for process in alive:
            try:
                process.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
