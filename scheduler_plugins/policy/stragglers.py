"""Stragglers and slow hosts: detect a task running well past its plan, and decide whether to restart it.

Design note
-----------
Pure rules over plain data; ``now`` is an argument (seconds on the caller's
monotonic clock), so every rule is tested with a fake clock.

* **Spread** (:class:`CategorySpread`) — per category the recent
  ``actual / planned`` ratios of finished tasks; its p90 says how far past its
  plan a healthy task of that category may run.
* **Straggler** (:func:`find_stragglers`) — a running task whose elapsed time
  passed ``planned × max(straggler_factor, p90 ratio)``. Elapsed time starts
  when the task could start: when it was sent, or when its worker's previous
  task finished if that is later (the scheduler is not told when compute
  starts).
* **Evidence** — while it runs, a straggler is a *censored* observation of its
  worker's speed (at least ``elapsed / planned`` slower): the plugin feeds it
  to :class:`~scheduler_plugins.policy.estimates.SpeedEstimates` once, so a
  host that slows mid-run stops getting long work before its slow tasks end.
* **Restart** (:func:`restart_decision`) — restart a straggler on an idle
  worker when its whole planned duration there (plus moving its inputs)
  finishes earlier than the time it is still expected to need where it is
  (at least as long again as it has already overrun, the usual heavy-tail
  rule), by a margin. Never for an asset or a check (``kind`` not
  ``"replay"``): a materialization must not be written twice, and the
  scheduler cannot stop a running Python function, so the old copy keeps
  running (its result is discarded).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from scheduler_plugins.policy.model import WorkerInfo

__all__ = ["CategorySpread", "RestartDecision", "RunningTask", "Straggler", "find_stragglers", "restart_decision"]

#: a restart must be predicted to finish at least this much earlier (fraction of the current estimate)
RESTART_MARGIN = 0.75
#: kinds of task that may be restarted (never an asset or a check: no double materialization)
RESTARTABLE_KINDS = frozenset({"replay"})


@dataclass(slots=True)
class CategorySpread:
    """Recent ``actual / planned`` ratios per category (p90 of healthy overruns).

    >>> spread = CategorySpread(window=10)
    >>> for r in [1.0, 1.1, 0.9, 1.2, 1.0, 1.05, 0.95, 1.0, 1.3, 1.0]:
    ...     spread.observe("fit", actual_s=r, planned_s=1.0)
    >>> spread.p90("fit"), spread.p90("never-seen")
    (1.2, None)
    """

    window: int = 64
    ratios: dict[str, deque[float]] = field(default_factory=dict)

    def observe(self, category: str, actual_s: float, planned_s: float) -> None:
        if actual_s > 0 and planned_s > 0:
            self.ratios.setdefault(category, deque(maxlen=self.window)).append(actual_s / planned_s)

    def p90(self, category: str, min_n: int = 5) -> float | None:
        """The 90th percentile ratio (nearest rank), None with fewer than ``min_n`` finished tasks."""
        values = sorted(self.ratios.get(category, ()))
        if len(values) < min_n:
            return None
        return values[min(len(values) - 1, int(0.9 * (len(values) - 1) + 0.5))]


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task processing on a worker, as the straggler rules see it."""

    key: Hashable
    worker: str
    host: str
    category: str
    kind: str
    planned_s: float  # speed-1 seconds
    worker_speed: float  # the speed the plan used for its worker
    could_start_at: float  # when it could start there (caller's monotonic clock)
    input_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Straggler:
    task: RunningTask
    elapsed_s: float
    expected_s: float  # planned on its worker: planned_s / worker_speed
    threshold_s: float  # past this it is a straggler

    @property
    def overrun(self) -> float:
        """How many times its expected duration it has run so far."""
        return self.elapsed_s / self.expected_s if self.expected_s > 0 else float("inf")


def find_stragglers(running: Iterable[RunningTask], now: float, spread: CategorySpread, straggler_factor: float,
                    min_planned_s: float = 0.0) -> list[Straggler]:  # fmt: skip
    """Running tasks past ``expected × max(straggler_factor, category p90)``, longest overrun first.

    >>> task = RunningTask("k", "w", "h", "fit", "replay", planned_s=1.0, worker_speed=1.0, could_start_at=0.0)
    >>> [s.task.key for s in find_stragglers([task], now=3.5, spread=CategorySpread(), straggler_factor=3.0)]
    ['k']
    >>> find_stragglers([task], now=2.0, spread=CategorySpread(), straggler_factor=3.0)
    []
    """
    found = []
    for task in running:
        if task.planned_s <= 0 or task.planned_s < min_planned_s:
            continue
        expected = task.planned_s / (task.worker_speed if task.worker_speed > 0 else 1.0)
        factor = max(straggler_factor, spread.p90(task.category) or 0.0)
        elapsed = now - task.could_start_at
        if elapsed > expected * factor:
            found.append(Straggler(task, elapsed, expected, expected * factor))
    return sorted(found, key=lambda s: (-s.overrun, str(s.task.key)))


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    worker: str | None
    reason: str  # "straggler-restart", "straggler" (keep it: no better idle worker), "straggler-asset"
    remaining_here_s: float
    finish_there_s: float | None


def restart_decision(straggler: Straggler, idle: Sequence[WorkerInfo], bandwidth_bytes_per_s: float) -> RestartDecision:
    """Restart on the idle worker that finishes it first, when that beats letting it run (see the module note).

    ``idle`` are workers with a free thread (the straggler's own worker is
    skipped; others on its host count with their own learned speed, so a
    host slowed as a whole does not attract the restart).
    """
    task = straggler.task
    remaining = max(straggler.elapsed_s - straggler.expected_s, straggler.expected_s)
    if task.kind not in RESTARTABLE_KINDS:
        return RestartDecision(False, None, "straggler-asset", remaining, None)
    best: tuple[float, str] | None = None
    for worker in idle:
        if worker.address == task.worker or worker.n_processing >= worker.nthreads:
            continue
        speed = worker.speed if worker.speed > 0 else 1.0
        finish = task.planned_s / speed + task.input_bytes / max(bandwidth_bytes_per_s, 1.0)
        if best is None or (finish, worker.address) < best:
            best = (finish, worker.address)
    if best is not None and best[0] < RESTART_MARGIN * remaining:
        return RestartDecision(True, best[1], "straggler-restart", remaining, best[0])
    return RestartDecision(False, None, "straggler", remaining, None if best is None else best[0])
