"""Memory admission: what a worker really holds, and a learned baseline of memory it does not give back.

Design note
-----------
Zero lost workers is a hard goal, whatever the model says. A worker is
killed when its *process* memory passes the terminate threshold, so
admission counts what the process holds, not what Dask manages. Readings
come from heartbeats (distributed's ``WorkerState.memory``, read through
:mod:`scheduler_plugins.compat`): ``process`` is the RSS, ``managed`` the
``sizeof`` of keys in RAM, ``unmanaged = process - managed`` (interpreter,
temporaries of running tasks, fragmentation, leaks, memory not yet given
back), ``unmanaged_old`` the minimum of ``unmanaged`` over the last
``distributed.worker.memory.recent-to-old-time`` (30 s).

* **Baseline** (:class:`MemoryBaseline`) — per worker, the unmanaged memory
  that *stays after tasks finish*: ``process - managed`` of heartbeats taken
  while nothing ran there, rolling (the median of the last few, so one
  transient spike or one lucky trim does not move it, and a baseline that
  grows — a leak, fragmentation — is followed within a few readings). Before
  the first idle reading it is distributed's ``unmanaged_old``. A lifetime
  minimum (what was used before) never follows a baseline that grows.
* **Admission** (:func:`admitted_memory_bytes`) — the memory a worker holds
  outside the predicted peaks of what runs there: the larger of
  ``managed + baseline`` and ``process now - predicted running peaks``, so
  an underpredicted task or memory not yet released counts too. The policy
  adds the predicted peaks of running tasks (and of orphans of restarts,
  :mod:`.stragglers`) and of tasks placed earlier in the same round
  (:func:`~scheduler_plugins.policy.placement.assign`), so a task sent in
  this round counts at once, before any heartbeat shows it.
* **Strict pins for heavy tasks** — see
  :func:`~scheduler_plugins.policy.placement.pin_is_loose`: a loose pin lets
  work stealing move a queued task to any worker, past every memory rule.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

__all__ = ["MemoryBaseline", "admitted_memory_bytes"]


@dataclass(slots=True)
class MemoryBaseline:
    """Per worker: unmanaged bytes of recent idle heartbeats (what stays after tasks finish).

    >>> baseline = MemoryBaseline(recent_n=3)
    >>> baseline.bytes_for("w", unmanaged_old=100)  # no idle reading yet: distributed's rolling minimum
    100
    >>> for at, process in [(1.0, 300), (2.0, 1_300), (3.0, 1_200), (4.0, 1_250)]:
    ...     _ = baseline.observe("w", reading_at=at, process_bytes=process, managed_bytes=50, busy=False)
    >>> baseline.bytes_for("w", unmanaged_old=100)  # it grew: memory the process does not give back
    1200
    >>> baseline.observe("w", reading_at=4.0, process_bytes=9_999, managed_bytes=0, busy=False)  # the same heartbeat
    False
    """

    recent_n: int = 3  # idle readings the baseline is the median of
    samples: dict[str, deque[int]] = field(default_factory=dict)  # worker -> unmanaged bytes of idle readings
    reading_at: dict[str, float] = field(default_factory=dict)  # worker -> time of the last reading taken

    def observe(self, worker: str, reading_at: float | None, process_bytes: int | None, managed_bytes: int,
                busy: bool) -> bool:  # fmt: skip
        """Take one heartbeat reading (once per heartbeat); only idle ones teach the baseline. True when used."""
        if reading_at is None or process_bytes is None or self.reading_at.get(worker) == reading_at:
            return False
        self.reading_at[worker] = reading_at
        if busy:
            return False
        unmanaged = max(0, int(process_bytes) - min(int(managed_bytes), int(process_bytes)))
        self.samples.setdefault(worker, deque(maxlen=max(self.recent_n, 1))).append(unmanaged)
        return True

    def bytes_for(self, worker: str, unmanaged_old: int | None) -> int:
        """The worker's baseline: median of its recent idle readings, else ``unmanaged_old`` (0 before any)."""
        samples = self.samples.get(worker)
        if samples:
            return int(statistics.median(samples))
        return int(unmanaged_old or 0)

    def forget_worker(self, worker: str) -> None:
        self.samples.pop(worker, None)
        self.reading_at.pop(worker, None)


def admitted_memory_bytes(managed_bytes: int, unmanaged_floor: int | None, process_bytes: int | None,
                          running_peaks_bytes: float) -> int:  # fmt: skip
    """Memory a worker holds outside the predicted peaks of its running tasks, for admission.

    The larger of (managed + the unmanaged memory it does not give back:
    the learned baseline) and (the whole process now − the predicted peaks of
    what runs there): memory that a prediction did not account for — an
    underpredicted task, memory not yet released — counts, so the next big
    task is not admitted on top of it.

    >>> admitted_memory_bytes(100, 50, None, 0), admitted_memory_bytes(100, 50, 1_000, 300)
    (150, 700)
    """
    base = int(managed_bytes) + int(unmanaged_floor or 0)
    if process_bytes is None:
        return base
    return max(base, int(process_bytes - running_peaks_bytes))
