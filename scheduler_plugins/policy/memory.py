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
* **Reservation for a held task** (:func:`reserve_memory`) — a task held
  for memory waits for memory to free, but every finished task frees a
  thread too, and a smaller task in the same round takes it: a task that fits
  only a (nearly) drained worker is never admitted while small tasks keep
  both threads busy, and runs last, alone (the tail of big tasks). So the held
  task reserves, for the rest of the round, the busy worker where it fits once
  its running tasks end and that drains first; a later (lower-priority) task
  goes there only where it fits *beside* the reserved one
  (:func:`fits_beside_reservation`, checked with the pair rule): small tasks
  still fill a thread beside a task that leaves room for them, and a worker
  is left to drain only for one that does not. Nothing is bound: the next
  round decides again, in priority order.
* **Strict pins for heavy tasks** — see
  :func:`~scheduler_plugins.policy.placement.pin_is_loose`: a loose pin lets
  work stealing move a queued task to any worker, past every memory rule.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # model imports nothing from here; placement imports both
    from scheduler_plugins.policy.model import TaskInfo, WorkerInfo

__all__ = ["MemoryBaseline", "admitted_memory_bytes", "fits_beside_reservation", "reserve_memory"]


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

    finished: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)  # worker -> (sent, ended, peak)

    def task_finished(self, worker: str, sent_at: float, ended_at: float, peak_bytes: float) -> None:
        """A task that ran there with ``peak_bytes`` reserved ended (times on the admission clock)."""
        if peak_bytes > 0:
            self.finished.setdefault(worker, []).append((float(sent_at), float(ended_at), int(peak_bytes)))

    def ended_since_reading(self, worker: str, reading_at: float | None) -> int:
        """Reserved peaks of tasks that ran at the worker's last reading and ended after it.

        A heartbeat's process memory still holds them, but they no longer
        count among the running peaks: ``process - running peaks`` would count
        their memory as held outside any task until the next heartbeat (up to
        half a second in which nothing big fits a worker that just freed it).
        Older entries are dropped.

        >>> b = MemoryBaseline()
        >>> b.task_finished("w", sent_at=1.0, ended_at=2.0, peak_bytes=900)   # ran at the 1.5 reading, ended after
        >>> b.task_finished("w", sent_at=1.8, ended_at=1.9, peak_bytes=50)    # started after it: not in it
        >>> b.ended_since_reading("w", 1.5), b.ended_since_reading("w", 2.5), b.finished["w"]
        (900, 0, [])
        """
        entries = self.finished.get(worker)
        if not entries or reading_at is None:
            return 0
        entries[:] = [e for e in entries if e[1] > reading_at]
        return sum(peak for sent, _, peak in entries if sent <= reading_at)

    def forget_worker(self, worker: str) -> None:
        self.samples.pop(worker, None)
        self.reading_at.pop(worker, None)
        self.finished.pop(worker, None)


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


def fits_beside_reservation(task: "TaskInfo", worker: "WorkerInfo") -> bool:
    """Whether ``task`` leaves room, on a worker reserved this round, for the held task waiting for it.

    The worker's memory outside its running tasks + the reserved peak + this
    task's peak stays under the pause threshold (what runs there now will have
    ended when the reserved task starts). True on a worker with no reservation.

    >>> from scheduler_plugins.policy.model import TaskInfo, WorkerInfo
    >>> w = WorkerInfo("w", memory_limit_bytes=1000, pause_fraction=0.8, memory_bytes=100, reserved_peak_bytes=650)
    >>> fits_beside_reservation(TaskInfo("small", 1.0, peak_memory_bytes=50), w)
    True
    >>> fits_beside_reservation(TaskInfo("blocks-it", 1.0, peak_memory_bytes=51), w)
    False
    """
    if worker.reserved_peak_bytes <= 0:
        return True
    return max(task.peak_memory_bytes, 0) + worker.reserved_peak_bytes + worker.memory_bytes <= worker.pause_bytes


def reserve_memory(task: "TaskInfo", workers: Iterable["WorkerInfo"]) -> "WorkerInfo | None":
    """Reserve for a task held for memory the busy worker it fits once drained, and that drains first.

    Candidates: allowed for the task, not reserved yet this round, running
    something (an idle worker it does not fit will not free memory), and with
    ``pause - memory held outside running tasks >= its peak``. The first to
    drain is the one with the least predicted backlog (per thread and speed);
    ties: the most headroom after draining. Returns the worker (updated in
    place: :attr:`~scheduler_plugins.policy.model.WorkerInfo.reserved_peak_bytes`) or ``None``.

    >>> from scheduler_plugins.policy.model import TaskInfo, WorkerInfo
    >>> a = WorkerInfo("a", nthreads=2, memory_limit_bytes=1000, pause_fraction=0.8, memory_bytes=100,
    ...                n_processing=2, backlog_s=2.0, running_peak_bytes=100)
    >>> b = WorkerInfo("b", nthreads=2, memory_limit_bytes=1000, pause_fraction=0.8, memory_bytes=100,
    ...                n_processing=1, backlog_s=0.5, running_peak_bytes=600)
    >>> reserve_memory(TaskInfo("big", 1.0, peak_memory_bytes=650), [a, b]).address, b.reserved_peak_bytes
    ('b', 650)
    >>> reserve_memory(TaskInfo("next", 1.0, peak_memory_bytes=650), [a, b]).address   # b is taken this round
    'a'
    >>> reserve_memory(TaskInfo("huge", 1.0, peak_memory_bytes=701), [a, b]) is None   # fits no drained worker
    True
    """
    peak = max(int(task.peak_memory_bytes or 0), 0)
    if peak <= 0:
        return None
    allowed = task.allowed_workers
    candidates = [
        w for w in workers
        if (allowed is None or w.address in allowed) and w.reserved_peak_bytes <= 0 and w.n_processing > 0
        and peak + w.memory_bytes <= w.pause_bytes
    ]  # fmt: skip
    if not candidates:
        return None

    def drains(w: "WorkerInfo") -> tuple[float, float, str]:
        return (w.backlog_s / (max(w.nthreads, 1) * (w.speed if w.speed > 0 else 1.0)), w.memory_bytes, w.address)

    chosen = min(candidates, key=drains)
    chosen.reserved_peak_bytes = peak
    return chosen
