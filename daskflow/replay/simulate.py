"""Pure schedule arithmetic for traces: lower bound, upward ranks, list schedule.

Three numbers put a measured makespan in context:

* ``lower_bound_s``: ``max(critical path, total work / slots)`` — no schedule
  on ``slots`` identical single-threaded slots can beat it (transfers ignored).
* ``critical_path_ranks``: the *upward rank* of each task, its own duration
  plus the longest duration-weighted path from it to a sink (HEFT's rank_u).
  Ordering ready tasks by it is the classic critical-path priority. It is the
  one definition in :mod:`daskflow.critical_path`, which the steering policy
  uses too (re-exported here); a cycle raises ``GraphCycleError``.
* ``list_schedule_makespan_s``: a clairvoyant critical-path list schedule —
  whenever a slot frees, start the ready task with the highest upward rank on
  it; true durations, no overheads, no transfers. It is what "perfect
  predictions plus late binding" can reach, a realistic target between the
  lower bound and stock Dask.

* ``heft_schedule``: the same clairvoyant list schedule on *heterogeneous*
  workers that live on hosts (HEFT-style): it knows every worker's speed and
  that moving bytes between different hosts costs ``bytes / bandwidth``
  (same host: free). Tasks go in upward-rank order (ranks on mean speed plus
  mean transfer cost) to the worker with the earliest finish, where a task's
  slot is busy while it reads its remote inputs and then computes
  ``duration / speed``. It is the bound for the multi-host test bed.

Everything is index based (task ``i`` has ``parents[i]``) and O((V + E) log V)
with ``heapq``: 1,000 tasks take a few milliseconds.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from daskflow.critical_path import critical_path_ranks, topological_order

if TYPE_CHECKING:
    from daskflow.replay.trace import Trace

__all__ = [
    "HeftSchedule",
    "ListSchedule",
    "critical_path_ranks",
    "critical_path_s",
    "heft_schedule",
    "piecewise_compute_s",
    "list_schedule",
    "list_schedule_makespan_s",
    "lower_bound_s",
]

def critical_path_s(trace: Trace) -> float:
    """Length of the longest duration-weighted path."""
    return max(critical_path_ranks(trace.durations_s(), trace.parent_indices()), default=0.0)


def lower_bound_s(trace: Trace, slots: int) -> float:
    """``max(critical path, total work / slots)``."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1 (workers x threads per worker), got {slots}")
    return max(critical_path_s(trace), trace.total_work_s() / slots)


@dataclass(frozen=True)
class ListSchedule:
    """Result of :func:`list_schedule`: per task its start time and slot."""

    makespan_s: float
    start_s: list[float]
    slot: list[int]


def list_schedule(durations: Sequence[float], parents: Sequence[Sequence[int]], slots: int) -> ListSchedule:
    """Clairvoyant critical-path list schedule on ``slots`` identical slots.

    Event simulation: at each instant, every free slot takes the ready task
    with the highest upward rank (ties: lower index first); a task becomes
    ready when its last parent finishes. No overheads, no transfers.
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1 (workers x threads per worker), got {slots}")
    durations = [float(d) for d in durations]
    n = len(durations)
    ranks = critical_path_ranks(durations, parents)
    _, children = topological_order(parents)
    missing = [len(p) for p in parents]
    ready = [(-ranks[i], i) for i in range(n) if missing[i] == 0]
    heapq.heapify(ready)
    free_slots = list(range(slots))  # heap of idle slot ids: lowest id first
    running: list[tuple[float, int, int]] = []  # (finish time, task, slot)
    start_s = [0.0] * n
    slot_of = [-1] * n
    now = 0.0
    done = 0
    makespan = 0.0
    while done < n:
        while free_slots and ready:
            _, task = heapq.heappop(ready)
            slot = heapq.heappop(free_slots)
            start_s[task], slot_of[task] = now, slot
            heapq.heappush(running, (now + durations[task], task, slot))
        if not running:  # cannot happen for a DAG; guards against a bad input
            raise ValueError("list schedule stalled: some tasks never became ready")
        now = running[0][0]
        while running and running[0][0] <= now:
            finish, task, slot = heapq.heappop(running)
            done += 1
            makespan = max(makespan, finish)
            heapq.heappush(free_slots, slot)
            for child in children[task]:
                missing[child] -= 1
                if missing[child] == 0:
                    heapq.heappush(ready, (-ranks[child], child))
    return ListSchedule(makespan_s=makespan, start_s=start_s, slot=slot_of)


def list_schedule_makespan_s(trace: Trace, slots: int) -> float:
    """Makespan of the clairvoyant critical-path list schedule of ``trace``."""
    return list_schedule(trace.durations_s(), trace.parent_indices(), slots).makespan_s


@dataclass(frozen=True)
class HeftSchedule:
    """Result of :func:`heft_schedule`: per task its start, finish and worker index, and the remote bytes read.

    ``transfers``: every read between hosts as ``(source host, destination
    host, start, end)`` (in booking order).
    """

    makespan_s: float
    start_s: list[float]
    finish_s: list[float]
    worker: list[int]
    remote_bytes: int
    transfers: list[tuple[int | str, int | str, float, float]] = field(default_factory=list)


def _earliest_common_gap(a: list[tuple[float, float]], b: list[tuple[float, float]], t: float, d: float) -> float:
    """The earliest time ``>= t`` at which both busy lists (sorted ``(start, end)``) are free for ``d`` seconds.

    >>> _earliest_common_gap([(0.0, 2.0)], [(3.0, 4.0)], 0.0, 1.5)
    4.0
    >>> _earliest_common_gap([(0.0, 2.0)], [(3.0, 4.0)], 0.0, 0.5)
    2.0
    """
    candidate = t
    moved = True
    while moved:
        moved = False
        for busy in (a, b):
            k = bisect.bisect_right(busy, (candidate, math.inf)) - 1  # the last interval starting at or before it
            for start, end in busy[max(k, 0):]:
                if start >= candidate + d - 1e-12:
                    break
                if end > candidate + 1e-12:
                    candidate, moved = end, True
    return candidate


class _Links:
    """Each host's shaped out-link and in-link (the bed's tbf on both veth ends) as insertion-scheduled resources."""

    def __init__(self) -> None:
        self.out: dict[int | str, list[tuple[float, float]]] = {}
        self.into: dict[int | str, list[tuple[float, float]]] = {}

    def slot(self, source: int | str, dest: int | str, t: float, d: float) -> float:
        return _earliest_common_gap(self.out.get(source, []), self.into.get(dest, []), t, d)

    def book(self, source: int | str, dest: int | str, start: float, d: float) -> None:
        if d > 0:
            bisect.insort(self.out.setdefault(source, []), (start, start + d))
            bisect.insort(self.into.setdefault(dest, []), (start, start + d))


def piecewise_compute_s(work_s: float, speed: float, start_s: float, switch_s: float | None = None, factor: float = 1.0) -> float:
    """Wall seconds that ``work_s`` of nominal (speed 1) work take from ``start_s`` on a worker of ``speed``
    that becomes ``factor`` times slower at ``switch_s`` (``None``: never): a task that straddles the switch
    runs at the old speed until it and at the new one after.

    >>> piecewise_compute_s(4.0, 1.0, start_s=8.0, switch_s=10.0, factor=2.0)  # 2 s at speed 1, then 2 s of work at 0.5
    6.0
    >>> piecewise_compute_s(1.0, 0.5, start_s=0.0, switch_s=10.0, factor=4.0), piecewise_compute_s(1.0, 0.5, 12.0, 10.0, 4.0)
    (2.0, 8.0)
    """
    if work_s <= 0:
        return 0.0
    if switch_s is None or factor == 1.0 or start_s >= switch_s:
        return work_s / (speed / factor if switch_s is not None and start_s >= switch_s else speed)
    until_switch_s = switch_s - start_s
    if work_s <= until_switch_s * speed:
        return work_s / speed
    return until_switch_s + (work_s - until_switch_s * speed) / (speed / factor)


def heft_schedule(
    durations: Sequence[float],
    parents: Sequence[Sequence[int]],
    output_bytes: Sequence[int],
    worker_speeds: Sequence[float],
    worker_hosts: Sequence[int | str],
    bandwidth_bytes_per_s: float,
    external_bytes: Sequence[int] | None = None,
    external_hosts: Sequence[int | str | None] | None = None,
    *,
    link_contention: bool = False,
    replicas: bool = False,
    slowdown: tuple[int | str, float, float] | None = None,
) -> HeftSchedule:
    """Clairvoyant HEFT-style schedule: known speeds, transfers between hosts cost ``bytes / bandwidth``.

    Task ``i`` reads every parent's ``output_bytes`` and its own
    ``external_bytes[i]`` stored on ``external_hosts[i]``; a read from another
    host occupies the task's slot for ``bytes / bandwidth``, then it computes
    ``durations[i] / speed``. Non-insertion list scheduling: in decreasing
    upward rank (computed on the mean speed and the mean transfer cost), each
    task goes to the worker with the earliest finish (ties: lower index).

    By default links are uncontended (every read at the full rate however
    many run at once) and every consumer on another host pays again. The test
    bed's fidelity, as flags:

    * ``link_contention``: every host has one out-link and one in-link of
      ``bandwidth`` (the bed shapes both ends of its veth pair); a transfer
      from host a to host b holds a's out-link and b's in-link for
      ``bytes / bandwidth``, at the earliest time both are free (insertion:
      a gap left between earlier bookings can be used). A task's reads run
      one after another (as ``hosted_task`` does), and its slot is held from
      its start until its compute ends.
    * ``replicas``: a parent's output, once read onto a host, is there for
      every later consumer on that host at no cost (a later consumer waits for
      that copy if it is still arriving); reads always come from the
      producing host, as on the bed.
    * ``slowdown``: ``(host, at_s, factor)`` - the workers of ``host`` become
      ``factor`` times slower ``at_s`` seconds into the run (the bed's
      ``--slowdown``, :func:`piecewise_compute_s`). The simulation knows it in
      advance (clairvoyant), so it schedules around it; its ranks still use
      the speeds without it.

    >>> heft_schedule([1.0, 1.0], [[], [0]], [100, 0], [1.0, 2.0], [0, 1], 100.0).makespan_s  # both on the fast one
    1.0

    Two tasks each read 100 B made on host 0 (whose only worker is ten times
    slower), one link of 100 B/s: uncontended both go to host 1 and read at
    once; contended they share h0's out-link (and h1's in-link), so the
    second read waits 1 s:

    >>> args = ([0.0, 1.0, 1.0], [[], [0], [0]], [100, 0, 0], [0.1, 1.0, 1.0], [0, 1, 1], 100.0)
    >>> heft_schedule(*args).makespan_s, heft_schedule(*args, link_contention=True).makespan_s
    (2.0, 3.0)

    With replicas the second consumer on host 1 reads the copy the first one
    brought (it waits for it to arrive, then reads for free):

    >>> heft_schedule(*args, replicas=True).makespan_s
    2.0

    Two 4 s tasks on two single-worker hosts, host 0 four times slower from
    1 s: each host takes one (host 0's ends at 1 + 3 x 4 = 13 s) - unless
    host 1 runs both, one after the other (8 s):

    >>> heft_schedule([4.0, 4.0], [[], []], [0, 0], [1.0, 1.0], [0, 1], 1.0).makespan_s
    4.0
    >>> heft_schedule([4.0, 4.0], [[], []], [0, 0], [1.0, 1.0], [0, 1], 1.0, slowdown=(0, 1.0, 4.0)).makespan_s
    8.0
    """
    n = len(durations)
    if not worker_speeds or len(worker_speeds) != len(worker_hosts):
        raise ValueError("heft_schedule: one speed and one host per worker, at least one worker")
    if any(not s > 0 for s in worker_speeds) or not bandwidth_bytes_per_s > 0:
        raise ValueError("heft_schedule: speeds and bandwidth must be positive")
    external_bytes = list(external_bytes or [0] * n)
    external_hosts = list(external_hosts or [None] * n)
    n_workers = len(worker_speeds)
    mean_speed = sum(worker_speeds) / n_workers
    hosts = list(worker_hosts)
    remote_share = 1.0 - sum(hosts.count(h) ** 2 for h in set(hosts)) / n_workers**2  # P(two workers differ)
    costs = [
        float(durations[i]) / mean_speed
        + remote_share * (sum(output_bytes[p] for p in parents[i]) + external_bytes[i]) / bandwidth_bytes_per_s
        for i in range(n)
    ]
    ranks = critical_path_ranks(costs, parents)
    order, _ = topological_order(parents)
    position = {task: k for k, task in enumerate(order)}
    # Decreasing rank is a topological order when costs are positive; the position breaks ties safely.
    schedule = sorted(range(n), key=lambda i: (-ranks[i], position[i]))
    done = [False] * n
    start_s, finish_s, worker_of = [0.0] * n, [0.0] * n, [-1] * n
    free_at = [0.0] * n_workers
    links = _Links() if link_contention else None
    copies: list[dict[int | str, float]] = [{} for _ in range(n)]  # per task: host -> when its output is there
    remote_total = 0
    transfers: list[tuple[int | str, int | str, float, float]] = []
    pending = list(schedule)
    while pending:
        index = next(k for k, t in enumerate(pending) if all(done[p] for p in parents[t]))
        task = pending.pop(index)
        best: tuple[float, int, float, int, list] | None = None
        for w in range(n_workers):
            here = hosts[w]
            begin = max(free_at[w], max((finish_s[p] for p in parents[task]), default=0.0))
            # (source host, bytes, parent or None) of each read from another host, in the task's order
            reads: list[tuple[int | str, int, int | None]] = []
            if external_bytes[task] and external_hosts[task] is not None and external_hosts[task] != here:
                reads.append((external_hosts[task], int(external_bytes[task]), None))
            clock = begin
            for p in parents[task]:
                source = hosts[worker_of[p]]
                if source == here or not output_bytes[p]:
                    continue
                if replicas and here in copies[p]:
                    clock = max(clock, copies[p][here])  # the copy an earlier consumer here brings
                    continue
                reads.append((source, int(output_bytes[p]), p))
            booked = []
            remote = 0
            for source, nbytes, p in reads:
                d = nbytes / bandwidth_bytes_per_s
                at = links.slot(source, here, clock, d) if links is not None else clock
                booked.append((source, here, at, d, p))
                clock = at + d
                remote += nbytes
            if slowdown is not None and here == slowdown[0]:
                finish = clock + piecewise_compute_s(float(durations[task]), worker_speeds[w], clock, slowdown[1], slowdown[2])
            else:
                finish = clock + float(durations[task]) / worker_speeds[w]
            if best is None or finish < best[0] - 1e-12:
                best = (finish, w, begin, remote, booked)
        assert best is not None
        finish, w, begin, remote, booked = best
        for source, dest, at, d, p in booked:
            if links is not None:
                links.book(source, dest, at, d)
            transfers.append((source, dest, at, at + d))
            if replicas and p is not None:
                copies[p].setdefault(dest, at + d)
        start_s[task], finish_s[task], worker_of[task] = begin, finish, w
        free_at[w] = finish
        remote_total += remote
        done[task] = True
    return HeftSchedule(max(finish_s, default=0.0), start_s, finish_s, worker_of, int(remote_total), transfers)
