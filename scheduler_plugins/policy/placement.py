"""Place, late: finish-time placement with transfer, locality, speed and memory costs.

Design note
-----------
The policy is a *list scheduler* (what a clairvoyant critical-path schedule
does), fed with predicted task costs:

* **Place, late** — a task is bound only when it is ready and a worker is
  *open* (a free thread, or a backlog shorter than the round's lookahead).
  Among the open workers it goes where its predicted *finish time* is earliest
  (:func:`estimate_finish`): wait for a thread (predicted backlog per thread /
  speed) + moving dependencies that are not local (bytes / bandwidth) + reading
  stored inputs that live on another host (bytes / storage bandwidth) +
  predicted duration / speed. Where the tasks reported their own reads, both
  data terms use the learned per-host-pair rates instead
  (:mod:`.transfer`: a stored handle's ``sizeof`` makes Dask's measured
  bandwidth far too high).
* **Memory headroom** — a task never goes where ``memory + predicted peaks of
  tasks already there + its own predicted peak`` passes the worker's pause
  threshold while another worker fits. When no worker fits it is *held* (memory
  frees when running tasks finish); when nothing is running anywhere it goes to
  the worker with the most headroom, so a run never stalls.
* **Wait for a better busy worker** — when a busy worker would still finish
  the task well before the best open one (:data:`FASTER_WORKER_MARGIN`; or
  by a gain many times its wait there, :data:`LONG_GAIN_WAITS`, for a long
  task on a worker faster beyond the speed dead band), the
  task is held for it (HEFT's earliest finish over *all* workers, which is
  also stock Dask's objective: occupancy + transfer): reason ``speed`` when
  that worker is clearly faster (:data:`FASTER_WORKER_MIN_RATIO`), else
  ``locality`` when the gain is the data it would not have to read (its
  data seconds are lower than the open one's by more than its wait). The
  waited-for worker's next thread is reserved for the round (:func:`reserve`),
  so smaller tasks behind it may take the open worker.
* **Loose or strict** — a placement decided by memory pins the task strictly
  (the scheduler must not move it back); any other is a preference
  (:func:`pin_is_loose`).

Per-round values (lookahead, measured bandwidth) come in a
:class:`~scheduler_plugins.policy.model.RoundContext`; without one the frozen
:class:`~scheduler_plugins.policy.model.PolicyConfig` values are used. Results
are :class:`Placement` records with the alternatives and a typed reason.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from daskflow.contracts import DecisionReason
from scheduler_plugins.policy.memory import fits_beside_reservation, reserve_memory
from scheduler_plugins.policy.model import (
    PolicyConfig,
    RoundContext,
    TaskInfo,
    WorkerInfo,
)

__all__ = [
    "Estimate",
    "Placement",
    "assign",
    "choose_worker",
    "estimate_finish",
    "fits_memory",
    "is_memory_heavy",
    "is_open",
    "note_reads",
    "pair_allowed",
    "pin_is_loose",
    "plan_dispatch",
    "reserve",
]

PlacementAction = Literal["place", "hold"]
#: reasons a placement may pin strictly (the scheduler must not override them)
STRICT_REASONS: frozenset[str] = frozenset({"memory", "memory-overcommit"})


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Placement:
    """A decision for one task: ``place`` on ``worker`` or ``hold``."""

    key: Hashable
    action: PlacementAction
    worker: str | None
    reason: DecisionReason
    finish_s: float | None = None
    alternatives: list[dict] = field(default_factory=list)
    wait_s: float | None = None  # predicted wait for a thread on the chosen worker
    data_s: float = 0.0  # predicted seconds moving its dependencies and stored inputs to the chosen worker


def fits_memory(task: TaskInfo, worker: WorkerInfo) -> bool:
    """Whether the task's predicted peak stays under the worker's pause threshold."""
    if not task.peak_memory_bytes:
        return True
    return task.peak_memory_bytes <= worker.headroom_bytes


def pair_allowed(task: TaskInfo, worker: WorkerInfo) -> bool:
    """The hard rule: never co-locate two tasks whose predicted peaks together pass the pause threshold.

    It holds in every path: in the normal one the headroom check implies it
    (``memory + peaks there + its peak <= pause``) and it is checked anyway;
    a task too big for any worker's headroom (the overcommit path) runs
    alone — nothing joins it, not even a task predicted to need no memory.

    >>> w = WorkerInfo("w", memory_limit_bytes=1000, pause_fraction=0.8, n_processing=1,
    ...                running_peak_bytes=500, max_running_peak_bytes=500)
    >>> pair_allowed(TaskInfo("a", 1.0, peak_memory_bytes=300), w), pair_allowed(TaskInfo("b", 1.0, peak_memory_bytes=301), w)
    (True, False)
    >>> overcommitted = WorkerInfo("w", memory_limit_bytes=1000, pause_fraction=0.8, n_processing=1,
    ...                            running_peak_bytes=900, max_running_peak_bytes=900)
    >>> pair_allowed(TaskInfo("tiny", 1.0), overcommitted)
    False
    """
    if not fits_beside_reservation(task, worker):
        return False
    if worker.n_processing == 0:
        return True
    return max(task.peak_memory_bytes, 0) + worker.max_running_peak_bytes <= worker.pause_bytes


def estimate_finish(
    task: TaskInfo, worker: WorkerInfo, config: PolicyConfig, context: RoundContext | None = None
) -> Estimate:
    """Predicted finish time of ``task`` on ``worker`` (see the module note)."""
    bandwidth = context.bandwidth_bytes_per_s if context is not None else config.bandwidth_bytes_per_s
    speed = worker.speed if worker.speed > 0 else 1.0
    if context is not None and context.pair_rates:
        transfer_s, storage_s = _priced_by_learned_rates(task, worker, context, config)
    else:
        moved_bytes = 0
        for dep in task.dependencies:
            if worker.address not in dep.workers:
                moved_bytes += dep.nbytes
        remote_stored = 0
        for host, nbytes in task.input_locations:
            if host != worker.host:
                remote_stored += nbytes
        transfer_s = moved_bytes / bandwidth
        storage_s = remote_stored / config.storage_bandwidth_bytes_per_s
    return Estimate(
        worker=worker.address,
        wait_s=worker.wait_s(),
        transfer_s=transfer_s,
        storage_s=storage_s,
        compute_s=max(task.duration_s, 0.0) / speed,
        fits_memory=fits_memory(task, worker),
    )


def _priced_by_learned_rates(task: TaskInfo, worker: WorkerInfo, context: RoundContext,
                             config: PolicyConfig) -> tuple[float, float]:  # fmt: skip
    """``(transfer_s, storage_s)`` at the read rates the tasks observed (:mod:`.transfer`).

    A dependency is read from its cheapest replica's host; a stored input
    from its host. A pair never observed between different hosts costs the
    other links' median rate (``remote_rate_bytes_per_s``), else the old
    defaults; a read on the worker's own host costs its learned local rate,
    or nothing when none was learned. A remote read also waits for the reads
    already planned on its source's or this host's link in the same window
    (``context.link_load``, :class:`~.transfer.LinkLoad`).
    """
    transfer_s = storage_s = 0.0
    load = context.link_load
    start = context.now + worker.wait_s()
    for source, seconds, stored in _reads(task, worker, context, config):
        if load is not None and source is not None and source != worker.host:
            seconds += load.delay_s(source, worker.host, start, seconds)
        if stored:
            storage_s += seconds
        else:
            transfer_s += seconds
    return transfer_s, storage_s


def _reads(task: TaskInfo, worker: WorkerInfo, context: RoundContext,
           config: PolicyConfig) -> list[tuple[str | None, float, bool]]:  # fmt: skip
    """The task's reads on ``worker``: ``(source host or None, seconds alone on the link, stored input?)``."""
    rates = context.pair_rates
    remote = context.remote_rate_bytes_per_s
    here = worker.host

    def seconds(source: str | None, nbytes: float, default_rate: float) -> float:
        if source is None:
            return nbytes / default_rate
        rate = rates.get((source, here))
        if rate is None:
            if source == here:
                return 0.0
            rate = remote or default_rate
        return nbytes / rate

    reads: list[tuple[str | None, float, bool]] = []
    for dep in task.dependencies:
        if not dep.nbytes:
            continue
        best: tuple[float, str | None] | None = None
        for holder in dep.workers:
            source = context.host_of.get(holder)
            cost = seconds(source, dep.nbytes, context.bandwidth_bytes_per_s)
            if best is None or cost < best[0]:
                best = (cost, source)
        reads.append((best[1], best[0], False) if best is not None
                     else (None, dep.nbytes / (remote or context.bandwidth_bytes_per_s), False))
    for host, nbytes in task.input_locations:
        if nbytes:
            reads.append((host, seconds(host, nbytes, config.storage_bandwidth_bytes_per_s), True))
    return reads


def note_reads(task: TaskInfo, worker: WorkerInfo, config: PolicyConfig, context: RoundContext | None) -> None:
    """Add the remote reads of ``task`` bound to ``worker`` to the round's link load (later placements wait for them).

    Called before :func:`assign` (the reads start when the task does: after the worker's current wait).
    """
    if context is None or context.link_load is None or not context.pair_rates:
        return
    start = context.now + worker.wait_s()
    for source, seconds, _ in _reads(task, worker, context, config):
        if source is not None and source != worker.host:
            context.link_load.add(source, worker.host, start, seconds)


def is_open(worker: WorkerInfo, config: PolicyConfig, context: RoundContext | None = None) -> bool:
    """Whether a task bound now would start (almost) at once on this worker."""
    if worker.n_processing < worker.nthreads:
        return True
    if worker.n_processing >= worker.nthreads * max(config.max_depth, 1):
        return False
    return worker.wait_s() < (context.lookahead_s if context is not None else config.lookahead_s)


def _argmin(estimates: list[Estimate], key) -> Estimate:
    return min(estimates, key=lambda e: (key(e), e.worker))


def choose_worker(
    task: TaskInfo,
    workers: Iterable[WorkerInfo],
    config: PolicyConfig,
    open_only: bool = True,
    context: RoundContext | None = None,
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
    estimates = [estimate_finish(task, w, config, context) for w in candidates]
    by_address = {w.address: w for w in candidates}
    openable = [e for e in estimates if not open_only or is_open(by_address[e.worker], config, context)]
    ranked = heapq.nsmallest(config.n_alternatives + 1, estimates, key=lambda e: (e.finish_s, e.worker))
    alternatives = [e.as_dict() for e in ranked]
    if not openable:
        return Placement(task.key, "hold", None, "no-open-worker", alternatives=alternatives)
    fitting = [e for e in openable if e.fits_memory and pair_allowed(task, by_address[e.worker])]
    overcommit = False
    if not fitting and all(task.peak_memory_bytes > w.pause_bytes - w.memory_bytes for w in candidates):
        # Too big for the pause threshold even on an empty worker: waiting cannot help, so
        # accept pausing but never the kill threshold (counting what runs there).
        overcommit = True
        fitting = [
            e for e in openable
            if task.peak_memory_bytes <= by_address[e.worker].terminate_bytes - by_address[e.worker].memory_bytes
            - by_address[e.worker].running_peak_bytes and pair_allowed(task, by_address[e.worker])
        ]
    if not fitting:
        anything_running = any(w.n_processing > 0 for w in candidates)
        if anything_running:
            return Placement(task.key, "hold", None, "memory", alternatives=alternatives)
        # Nothing will free memory by waiting: take the most headroom, never stall.
        best = max(openable, key=lambda e: (by_address[e.worker].headroom_bytes, e.worker))
        # (nothing runs anywhere here, so the pair rule holds trivially)
        return Placement(task.key, "place", best.worker, "memory-overcommit", best.finish_s, alternatives, best.wait_s,
                         best.transfer_s + best.storage_s)  # fmt: skip
    best = _argmin(fitting, lambda e: e.finish_s)
    if open_only and not overcommit:
        waiting = _better_busy_worker(task, best, estimates, by_address)
        if waiting is not None:  # a better worker frees soon enough: wait for it (what HEFT does)
            # (``worker``: the one it waits for, so the round can reserve it; a hold binds nothing)
            return Placement(task.key, "hold", waiting[0].worker, waiting[1], alternatives=alternatives)
    reason: DecisionReason = "finish-time"
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
    return Placement(task.key, "place", best.worker, reason, best.finish_s, alternatives, best.wait_s,
                     best.transfer_s + best.storage_s)  # fmt: skip


#: hold a task for a better busy worker only when it finishes there by this factor earlier
FASTER_WORKER_MARGIN = 0.7
#: a hold is for *speed* only for a worker at least this much faster: learned speeds closer than that are one
#: speed as far as waiting goes (what is left of noise, a host's shrunk first estimate)
FASTER_WORKER_MIN_RATIO = 1.5
#: ... or, for a task whose gain is many waits long, when it saves over LONG_GAIN_WAITS times its wait there and
#: finishes by LONG_GAIN_MARGIN earlier, on a worker faster by LONG_GAIN_MIN_RATIO (beyond the 1.2 speed dead band)
LONG_GAIN_WAITS = 4.0
LONG_GAIN_MARGIN = 0.9
LONG_GAIN_MIN_RATIO = 1.2


def _better_busy_worker(task: TaskInfo, best: Estimate, estimates: list[Estimate],
                        by_address: Mapping[str, WorkerInfo]) -> tuple[Estimate, DecisionReason] | None:  # fmt: skip
    """A busy worker on which the task would finish clearly earlier than on ``best`` (the open one), and why.

    ``speed``: it is :data:`FASTER_WORKER_MIN_RATIO` faster. ``locality``: it
    need not read (most of) the task's data - what it saves in data seconds
    exceeds its wait - at about the same speed. A gain that is neither (a
    shorter backlog than the open worker's: impossible, or speed noise) is no
    reason to leave an open worker idle.

    >>> near = WorkerInfo("near", host="h0", n_processing=1, backlog_s=0.5)
    >>> far = WorkerInfo("far", host="h1")
    >>> task = TaskInfo("t", 1.0, input_locations=(("h0", 300e6),))   # 3 s to read from h1 at 100 MB/s
    >>> config = PolicyConfig()
    >>> estimates = [estimate_finish(task, w, config) for w in (near, far)]
    >>> found = _better_busy_worker(task, estimates[1], estimates, {"near": near, "far": far})
    >>> found[0].worker, found[1]
    ('near', 'locality')

    A long task, a worker 1.34 x faster (short of the 1.5 ratio) busy for 0.8 s: 20 s saved, held for it.

    >>> slow, fast = WorkerInfo("slow", host="h2", speed=0.54), WorkerInfo("fast", host="h1", speed=0.72, n_processing=1, backlog_s=0.8)
    >>> long = TaskInfo("merge", 41.25)
    >>> estimates = [estimate_finish(long, w, config) for w in (slow, fast)]
    >>> found = _better_busy_worker(long, estimates[0], estimates, {"slow": slow, "fast": fast})
    >>> found[0].worker, found[1], round(estimates[0].finish_s - found[0].finish_s, 1)
    ('fast', 'speed', 18.0)
    """
    best_worker = by_address[best.worker]
    chosen_speed = best_worker.speed
    best_data_s = best.transfer_s + best.storage_s
    found: tuple[Estimate, DecisionReason] | None = None
    for e in estimates:
        if not e.fits_memory or e.worker == best.worker:
            continue
        # a long gain for a short wait (the run's longest task: 20 s saved for 0.8 s of waiting is a 25 % gain,
        # short of the margin, and a learned ratio of 1.34 where the truth is 2: placed on the slow host)
        long_gain = (best.finish_s - e.finish_s > LONG_GAIN_WAITS * e.wait_s
                     and e.finish_s < LONG_GAIN_MARGIN * best.finish_s)
        well_before = e.finish_s < FASTER_WORKER_MARGIN * best.finish_s
        speed = by_address[e.worker].speed
        if well_before and speed >= FASTER_WORKER_MIN_RATIO * chosen_speed:
            reason: DecisionReason = "speed"
        elif well_before and best_data_s - (e.transfer_s + e.storage_s) > e.wait_s:
            reason = "locality"
        elif long_gain and speed >= LONG_GAIN_MIN_RATIO * chosen_speed:
            reason = "speed"
        else:
            continue
        if found is None or (e.finish_s, e.worker) < (found[0].finish_s, found[0].worker):
            found = (e, reason)
    return found


def assign(task: TaskInfo, worker: WorkerInfo) -> None:
    """Account for ``task`` now processing on ``worker`` (updates it in place)."""
    worker.n_processing += 1
    worker.backlog_s += max(task.duration_s, 0.0)
    worker.running_peak_bytes += max(task.peak_memory_bytes, 0)
    worker.max_running_peak_bytes = max(worker.max_running_peak_bytes, task.peak_memory_bytes)


def reserve(task: TaskInfo, worker: WorkerInfo) -> None:
    """A task held for the busy, better ``worker`` takes its next free thread: later tasks of the round wait behind it.

    Without the reservation every task of a wide level is held for the same
    faster worker, each as if it were first in line (its wait is only what
    runs there now), while the slower open workers idle: HEFT puts a task
    on a processor's *earliest free slot after the tasks already assigned to
    it*. The reservation is the task's planned work in the worker's
    backlog (its wait grows by it), not a thread (it does not open or close
    the worker) and not its memory (nothing is bound yet).

    >>> fast = WorkerInfo("fast", speed=2.0, n_processing=1, backlog_s=0.2)
    >>> reserve(TaskInfo("a", 1.0), fast)
    >>> fast.wait_s(), fast.n_processing
    (0.6, 1)
    """
    worker.backlog_s += max(task.duration_s, 0.0)


def plan_dispatch(
    ready: Iterable[TaskInfo],
    workers: Mapping[str, WorkerInfo],
    config: PolicyConfig,
    context: RoundContext | None = None,
) -> Iterator[Placement]:
    """One list-scheduling round: yield a placement for ready tasks, best first.

    ``ready`` is consumed lazily in priority order and only while some worker is
    open, so tasks it never reached stay where they are (the plugin's heap).
    Placed tasks are accounted on their worker (``workers`` is updated in
    place); held tasks do not block lower-priority tasks that fit; a task
    held for a better busy worker (speed or locality) reserves its next
    thread there (:func:`reserve`). At most ``config.max_scan`` tasks are examined.
    """
    iterator = iter(ready)
    scanned = 0
    while scanned < config.max_scan:
        if not any(is_open(w, config, context) for w in workers.values()):
            return
        try:
            task = next(iterator)
        except StopIteration:
            return
        scanned += 1
        placement = choose_worker(task, workers.values(), config, context=context)
        if placement.action == "place" and placement.worker is not None:
            note_reads(task, workers[placement.worker], config, context)
            assign(task, workers[placement.worker])
        elif placement.reason in ("speed", "locality") and placement.worker in workers:
            reserve(task, workers[placement.worker])
        elif placement.reason == "memory":
            reserve_memory(task, workers.values())
        yield placement


def is_memory_heavy(task: TaskInfo, worker: WorkerInfo, config: PolicyConfig) -> bool:
    """Whether a task's predicted peak is a real share (``memory_share``) of the worker's pause threshold.

    >>> w = WorkerInfo("w", memory_limit_bytes=1000, pause_fraction=0.8)
    >>> is_memory_heavy(TaskInfo("a", 1.0, peak_memory_bytes=40), w, PolicyConfig()), is_memory_heavy(TaskInfo("b", 1.0), w, PolicyConfig())
    (True, False)
    """
    return bool(task.peak_memory_bytes) and task.peak_memory_bytes >= config.memory_share * worker.pause_bytes


def pin_is_loose(placement: Placement, memory_heavy: bool = False) -> bool:
    """Whether the pin for ``placement`` is a preference the scheduler may override (stealing, a lost worker).

    A placement decided by memory is strict: moving the task back to the
    worker with less headroom is what the decision avoided. So is any
    placement of a memory-heavy task (:func:`is_memory_heavy`): work stealing
    moves a loosely pinned queued task to *any* worker, past the headroom
    check and the pair rule (two big tasks on one worker: it pauses or is
    killed).

    >>> pin_is_loose(Placement("k", "place", "w", "finish-time")), pin_is_loose(Placement("k", "place", "w", "memory"))
    (True, False)
    >>> pin_is_loose(Placement("k", "place", "w", "finish-time"), memory_heavy=True)
    False
    """
    return placement.reason not in STRICT_REASONS and not memory_heavy
