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

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
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
    """Result of :func:`heft_schedule`: per task its start, finish and worker index, and the remote bytes read."""

    makespan_s: float
    start_s: list[float]
    finish_s: list[float]
    worker: list[int]
    remote_bytes: int


def heft_schedule(
    durations: Sequence[float],
    parents: Sequence[Sequence[int]],
    output_bytes: Sequence[int],
    worker_speeds: Sequence[float],
    worker_hosts: Sequence[int | str],
    bandwidth_bytes_per_s: float,
    external_bytes: Sequence[int] | None = None,
    external_hosts: Sequence[int | str | None] | None = None,
) -> HeftSchedule:
    """Clairvoyant HEFT-style schedule: known speeds, transfers between hosts cost ``bytes / bandwidth``.

    Task ``i`` reads every parent's ``output_bytes`` and its own
    ``external_bytes[i]`` stored on ``external_hosts[i]``; a read from another
    host occupies the task's slot for ``bytes / bandwidth`` (link contention
    is ignored), then it computes ``durations[i] / speed``. Non-insertion
    list scheduling: in decreasing upward rank (computed on the mean speed and
    the mean transfer cost), each task goes to the worker with the earliest
    finish (ties: lower index).

    >>> heft_schedule([1.0, 1.0], [[], [0]], [100, 0], [1.0, 2.0], [0, 1], 100.0).makespan_s  # both on the fast one
    1.0
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
    remote_total = 0
    pending = list(schedule)
    while pending:
        index = next(k for k, t in enumerate(pending) if all(done[p] for p in parents[t]))
        task = pending.pop(index)
        ready = max((finish_s[p] for p in parents[task]), default=0.0)
        best: tuple[float, int, float, int] | None = None
        for w in range(n_workers):
            remote = sum(output_bytes[p] for p in parents[task] if hosts[worker_of[p]] != hosts[w])
            if external_bytes[task] and external_hosts[task] is not None and external_hosts[task] != hosts[w]:
                remote += external_bytes[task]
            begin = max(free_at[w], ready)
            finish = begin + remote / bandwidth_bytes_per_s + float(durations[task]) / worker_speeds[w]
            if best is None or finish < best[0] - 1e-12:
                best = (finish, w, begin, remote)
        assert best is not None
        finish, w, begin, remote = best
        start_s[task], finish_s[task], worker_of[task] = begin, finish, w
        free_at[w] = finish
        remote_total += remote
        done[task] = True
    return HeftSchedule(max(finish_s, default=0.0), start_s, finish_s, worker_of, int(remote_total))
