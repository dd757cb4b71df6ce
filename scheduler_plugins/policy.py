"""The steering policy: pure functions over plain data.

Design note
-----------
The policy is a *list scheduler* (what a clairvoyant critical-path schedule
does), fed with predicted task costs:

* **Order** — a task's rank is its predicted duration plus the longest
  predicted path from it to a sink (:func:`critical_path_ranks`). Ready tasks
  are dispatched highest rank first; user priorities always come first
  (:func:`order_keys`).
* **Place, late** — a task is bound only when it is ready and a worker is
  *open* (a free thread, or a backlog shorter than ``lookahead_s``). Among the
  open workers it goes where its predicted *finish time* is earliest
  (:func:`estimate_finish`): wait for a thread (predicted backlog per thread /
  speed) + moving dependencies that are not local (bytes / bandwidth) + reading
  stored inputs that live on another host (bytes / storage bandwidth) +
  predicted duration / speed.
* **Memory headroom** — a task never goes where ``memory + predicted peaks of
  tasks already there + its own predicted peak`` passes the worker's pause
  threshold while another worker fits. When no worker fits it is *held* (memory
  frees when running tasks finish); when nothing is running anywhere it goes to
  the worker with the most headroom, so a run never stalls.

State is plain dataclasses (:class:`TaskInfo`, :class:`WorkerInfo`); results
are :class:`Placement` records with the alternatives and a reason, which the
plugin logs as events. No ``distributed`` import here: everything is testable
with fake tasks and workers.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "DependencyInfo",
    "Estimate",
    "Placement",
    "PolicyConfig",
    "TaskInfo",
    "WorkerInfo",
    "assign",
    "choose_worker",
    "critical_path_ranks",
    "estimate_finish",
    "fits_memory",
    "order_keys",
    "plan_dispatch",
    "remaining_s",
]


@dataclass(slots=True)
class DependencyInfo:
    """One input of a task: its size and the workers that hold a replica."""

    nbytes: int
    workers: frozenset[str] = frozenset()


@dataclass(slots=True)
class TaskInfo:
    """A ready task as the policy sees it (durations in seconds on a speed-1 worker)."""

    key: Hashable
    duration_s: float
    peak_memory_bytes: int = 0
    dependencies: tuple[DependencyInfo, ...] = ()
    input_locations: tuple[tuple[str, int], ...] = ()  # (host, bytes) of stored inputs
    allowed_workers: frozenset[str] | None = None  # hard constraints (resources); None: any


@dataclass(slots=True)
class WorkerInfo:
    """A worker's state: capacity, speed, memory and predicted backlog."""

    address: str
    host: str = ""
    nthreads: int = 1
    speed: float = 1.0  # relative compute speed: 2.0 runs a task in half the time
    memory_limit_bytes: int = 0  # 0: no limit
    memory_bytes: int = 0  # memory held outside the tasks now processing
    pause_fraction: float = 0.8  # distributed.worker.memory.pause
    terminate_fraction: float = 0.95  # distributed.worker.memory.terminate (the nanny kills past it)
    backlog_s: float = 0.0  # predicted remaining work already there (speed-1 seconds)
    n_processing: int = 0
    running_peak_bytes: int = 0  # sum of predicted peaks of tasks processing there

    @property
    def pause_bytes(self) -> float:
        """Memory at which the worker pauses (infinite without a limit)."""
        if not self.memory_limit_bytes or not self.pause_fraction:
            return math.inf
        return self.memory_limit_bytes * self.pause_fraction

    @property
    def terminate_bytes(self) -> float:
        """Memory at which the nanny kills the worker (infinite without a limit)."""
        if not self.memory_limit_bytes or not self.terminate_fraction:
            return math.inf
        return self.memory_limit_bytes * self.terminate_fraction

    @property
    def headroom_bytes(self) -> float:
        """Memory left before the pause threshold, counting predicted peaks of its tasks."""
        return self.pause_bytes - self.memory_bytes - self.running_peak_bytes

    def wait_s(self) -> float:
        """Predicted wait for a free thread (wall seconds)."""
        if self.n_processing < self.nthreads:
            return 0.0
        return self.backlog_s / (self.nthreads * self.speed)


@dataclass(slots=True)
class PolicyConfig:
    """Tunables (read from ``daskflow.steering.*`` by the plugin)."""

    bandwidth_bytes_per_s: float = 100e6  # between workers (Dask's own default)
    storage_bandwidth_bytes_per_s: float = 100e6  # reading a stored input from another host
    lookahead_s: float = 0.05  # a busy worker is still open when its backlog per thread is below this
    max_depth: int = 64  # ... and it holds fewer than nthreads * max_depth tasks
    n_alternatives: int = 3
    max_scan: int = 256  # tasks examined per dispatch round (bounds the cost of memory holds)


@dataclass(slots=True)
class Estimate:
    """Predicted finish time of one task on one worker, and its parts (seconds from now)."""

    worker: str
    wait_s: float
    transfer_s: float
    storage_s: float
    compute_s: float
    fits_memory: bool

    @property
    def finish_s(self) -> float:
        return self.wait_s + self.transfer_s + self.storage_s + self.compute_s

    def as_dict(self) -> dict:
        return {
            "worker": self.worker,
            "score": self.finish_s,
            "wait_s": self.wait_s,
            "transfer_s": self.transfer_s + self.storage_s,
            "compute_s": self.compute_s,
            "fits_memory": self.fits_memory,
        }


@dataclass(slots=True)
class Placement:
    """A decision for one task: ``place`` on ``worker`` or ``hold``."""

    key: Hashable
    action: str  # "place" | "hold"
    worker: str | None
    reason: str  # "finish-time" | "memory" | "locality" | "speed" | "memory-overcommit"
    finish_s: float | None = None
    alternatives: list[dict] = field(default_factory=list)
    wait_s: float | None = None  # predicted wait for a thread on the chosen worker


# --------------------------------------------------------------------- order


def critical_path_ranks(
    durations: Mapping[Hashable, float], parents: Mapping[Hashable, Iterable[Hashable]]
) -> dict[Hashable, float]:
    """Duration plus the longest path (sum of durations) from each task to a sink.

    Parents outside ``durations`` are ignored (they belong to an earlier graph).

    >>> ranks = critical_path_ranks({"a": 1.0, "b": 5.0, "c": 1.0}, {"b": ["a"], "c": ["a"]})
    >>> ranks["a"], ranks["b"], ranks["c"]
    (6.0, 5.0, 1.0)
    """
    children: dict[Hashable, list[Hashable]] = {key: [] for key in durations}
    n_children: dict[Hashable, int] = dict.fromkeys(durations, 0)
    for child, its_parents in parents.items():
        if child not in durations:
            continue
        for parent in set(its_parents):
            if parent in durations:
                children[parent].append(child)
                n_children[parent] += 1
    # Walk from the sinks upwards: a task is final once all its children are.
    parents_of = {key: [p for p in set(parents.get(key, ())) if p in durations] for key in durations}
    best_child: dict[Hashable, float] = dict.fromkeys(durations, 0.0)
    ranks: dict[Hashable, float] = {}
    stack = [key for key, n in n_children.items() if n == 0]
    while stack:
        key = stack.pop()
        rank = max(float(durations[key]), 0.0) + best_child[key]
        ranks[key] = rank
        for parent in parents_of[key]:
            best_child[parent] = max(best_child[parent], rank)
            n_children[parent] -= 1
            if n_children[parent] == 0:
                stack.append(parent)
    if len(ranks) != len(durations):  # a cycle cannot come from Dask; rank the rest by duration
        for key in durations:
            ranks.setdefault(key, max(float(durations[key]), 0.0))
    return ranks


def order_keys(
    ranks: Mapping[Hashable, float],
    user_priority: Mapping[Hashable, float] | None = None,
    tie_break: Mapping[Hashable, object] | None = None,
) -> list[Hashable]:
    """Keys in dispatch order: highest user priority, then highest rank, then ``tie_break``.

    >>> order_keys({"a": 1.0, "b": 5.0, "c": 3.0}, user_priority={"a": 10})
    ['a', 'b', 'c']
    """
    user_priority = user_priority or {}
    tie_break = tie_break or {}
    return sorted(
        ranks,
        key=lambda k: (-float(user_priority.get(k, 0)), -ranks[k], tie_break.get(k, 0)),
    )


# ----------------------------------------------------------------- placement


def remaining_s(predicted_s: float, elapsed_s: float) -> float:
    """Predicted remaining time of a task that has run ``elapsed_s``.

    Before its prediction runs out this is ``predicted - elapsed`` (so the
    worker opens just as the task is predicted to end); an overrunning task is
    assumed to need about half as long again as it has run, so a worker stuck
    on a mispredicted task never looks free.

    >>> remaining_s(1.0, 0.9), remaining_s(1.0, 4.0)
    (0.09999999999999998, 2.0)
    """
    if elapsed_s <= predicted_s:
        return max(predicted_s - elapsed_s, 0.0)
    return elapsed_s / 2.0


def fits_memory(task: TaskInfo, worker: WorkerInfo) -> bool:
    """Whether the task's predicted peak stays under the worker's pause threshold."""
    if not task.peak_memory_bytes:
        return True
    return task.peak_memory_bytes <= worker.headroom_bytes


def estimate_finish(task: TaskInfo, worker: WorkerInfo, config: PolicyConfig) -> Estimate:
    """Predicted finish time of ``task`` on ``worker`` (see the module note)."""
    moved_bytes = 0
    for dep in task.dependencies:
        if worker.address not in dep.workers:
            moved_bytes += dep.nbytes
    remote_stored = 0
    for host, nbytes in task.input_locations:
        if host != worker.host:
            remote_stored += nbytes
    speed = worker.speed if worker.speed > 0 else 1.0
    return Estimate(
        worker=worker.address,
        wait_s=worker.wait_s(),
        transfer_s=moved_bytes / config.bandwidth_bytes_per_s,
        storage_s=remote_stored / config.storage_bandwidth_bytes_per_s,
        compute_s=max(task.duration_s, 0.0) / speed,
        fits_memory=fits_memory(task, worker),
    )


def is_open(worker: WorkerInfo, config: PolicyConfig) -> bool:
    """Whether a task bound now would start (almost) at once on this worker."""
    if worker.n_processing < worker.nthreads:
        return True
    if worker.n_processing >= worker.nthreads * max(config.max_depth, 1):
        return False
    return worker.wait_s() < config.lookahead_s


def _argmin(estimates: list[Estimate], key) -> Estimate:
    return min(estimates, key=lambda e: (key(e), e.worker))


def choose_worker(
    task: TaskInfo,
    workers: Iterable[WorkerInfo],
    config: PolicyConfig,
    open_only: bool = True,
) -> Placement:
    """Pick the worker with the earliest predicted finish that fits the task's memory.

    ``workers`` are the running workers. With ``open_only`` only open workers
    (:func:`is_open`) may be chosen; the others still appear in the
    alternatives. Returns a ``hold`` placement when no allowed worker is open, or
    when none fits the memory while some task is still running (memory frees).
    """
    allowed = task.allowed_workers
    candidates = [w for w in workers if allowed is None or w.address in allowed]
    if not candidates:
        return Placement(task.key, "hold", None, "no-valid-worker")
    estimates = [estimate_finish(task, w, config) for w in candidates]
    by_address = {w.address: w for w in candidates}
    openable = [e for e in estimates if not open_only or is_open(by_address[e.worker], config)]
    ranked = heapq.nsmallest(config.n_alternatives + 1, estimates, key=lambda e: (e.finish_s, e.worker))
    alternatives = [e.as_dict() for e in ranked]
    if not openable:
        return Placement(task.key, "hold", None, "no-open-worker", alternatives=alternatives)
    fitting = [e for e in openable if e.fits_memory]
    overcommit = False
    if not fitting and all(task.peak_memory_bytes > w.pause_bytes - w.memory_bytes for w in candidates):
        # Too big for the pause threshold even on an empty worker: waiting cannot help, so
        # accept pausing but never the kill threshold (counting what runs there).
        overcommit = True
        fitting = [
            e for e in openable
            if task.peak_memory_bytes <= by_address[e.worker].terminate_bytes - by_address[e.worker].memory_bytes
            - by_address[e.worker].running_peak_bytes
        ]
    if not fitting:
        anything_running = any(w.n_processing > 0 for w in candidates)
        if anything_running:
            return Placement(task.key, "hold", None, "memory", alternatives=alternatives)
        # Nothing will free memory by waiting: take the most headroom, never stall.
        best = max(openable, key=lambda e: (by_address[e.worker].headroom_bytes, e.worker))
        return Placement(task.key, "place", best.worker, "memory-overcommit", best.finish_s, alternatives, best.wait_s)
    best = _argmin(fitting, lambda e: e.finish_s)
    reason = "finish-time"
    if overcommit:
        reason = "memory-overcommit"
    elif len(openable) > 1:
        if _argmin(openable, lambda e: e.finish_s).worker != best.worker:
            reason = "memory"
        elif (task.dependencies or task.input_locations) and _argmin(
            fitting, lambda e: e.wait_s + e.compute_s
        ).worker != best.worker:
            reason = "locality"
        elif _argmin(fitting, lambda e: e.wait_s + e.transfer_s + e.storage_s + task.duration_s).worker != best.worker:
            reason = "speed"
    return Placement(task.key, "place", best.worker, reason, best.finish_s, alternatives, best.wait_s)


def assign(task: TaskInfo, worker: WorkerInfo) -> None:
    """Account for ``task`` now processing on ``worker`` (updates it in place)."""
    worker.n_processing += 1
    worker.backlog_s += max(task.duration_s, 0.0)
    worker.running_peak_bytes += max(task.peak_memory_bytes, 0)


def plan_dispatch(
    ready: Iterable[TaskInfo],
    workers: Mapping[str, WorkerInfo],
    config: PolicyConfig,
) -> Iterator[Placement]:
    """One list-scheduling round: yield a placement for ready tasks, best first.

    ``ready`` is consumed lazily in priority order and only while some worker is
    open, so tasks it never reached stay where they are (the plugin's heap).
    Placed tasks are accounted on their worker (``workers`` is updated in
    place); held tasks do not block lower-priority tasks that fit. At most
    ``config.max_scan`` tasks are examined.
    """
    iterator = iter(ready)
    scanned = 0
    while scanned < config.max_scan:
        if not any(is_open(w, config) for w in workers.values()):
            return
        try:
            task = next(iterator)
        except StopIteration:
            return
        scanned += 1
        placement = choose_worker(task, workers.values(), config)
        if placement.action == "place" and placement.worker is not None:
            assign(task, workers[placement.worker])
        yield placement
