"""The policy's inputs as plain data: tasks, workers, tunables, one round's context.

Design note
-----------
Everything the steering policy decides from is one of these records, built by
the plugin from the scheduler's state (:mod:`scheduler_plugins.dispatch`) or by
a test by hand. Durations are seconds on a speed-1 worker; times (``now``,
``sent_at``) are seconds on whatever monotonic clock the caller uses — the
policy only subtracts them.

* :class:`PolicyConfig` — tunables, frozen, built once by the plugin from
  ``daskflow.steering.*``.
* :class:`RoundContext` — values that change every dispatch round (the
  adaptive lookahead, the measured bandwidth), so the frozen config is never
  overwritten.
* :class:`TaskPrediction` — what the plugin predicted for one task and where
  it put it in the order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from daskflow.contracts import PredictionQuality
from scheduler_plugins.policy.transfer import LinkLoad

__all__ = [
    "DependencyInfo",
    "PolicyConfig",
    "RoundContext",
    "TaskInfo",
    "TaskPrediction",
    "WorkerInfo",
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
    """A worker's state: capacity, speed, memory and predicted backlog.

    Mutable on purpose: :func:`~scheduler_plugins.policy.placement.assign`
    accounts each task placed during a round on its worker.
    """

    address: str
    host: str = ""
    nthreads: int = 1
    speed: float = 1.0  # relative compute speed: 2.0 runs a task in half the time
    speed_source: str = "default"  # "declared" (daskflow-speed), "learned" or "default"
    memory_limit_bytes: int = 0  # 0: no limit
    memory_bytes: int = 0  # memory held outside the tasks now processing
    pause_fraction: float = 0.8  # distributed.worker.memory.pause
    terminate_fraction: float = 0.95  # distributed.worker.memory.terminate (the nanny kills past it)
    backlog_s: float = 0.0  # predicted remaining work already there (speed-1 seconds)
    n_processing: int = 0
    running_peak_bytes: int = 0  # sum of predicted peaks of tasks processing there
    max_running_peak_bytes: int = 0  # the largest predicted peak among them (the pair rule)
    reserved_peak_bytes: int = 0  # this round: the peak of a task held for memory that waits for this worker to drain

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


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Tunables (the plugin builds one from ``daskflow.steering.*``; the defaults here are for tests)."""

    bandwidth_bytes_per_s: float = 100e6  # between workers, until the scheduler measured one (Dask's default)
    storage_bandwidth_bytes_per_s: float = 100e6  # reading a stored input from another host
    link_contention: bool = True  # price a remote read by the reads already placed on its links (transfer.LinkLoad)
    lookahead_s: float = 0.05  # a busy worker is still open when its backlog per thread is below this
    max_depth: int = 64  # ... and it holds fewer than nthreads * max_depth tasks
    n_alternatives: int = 3
    max_scan: int = 256  # tasks examined per dispatch round (bounds the cost of memory holds)
    max_lookahead_s: float = 10.0  # the adaptive lookahead never grows past this
    min_task_duration_s: float = 0.005  # shorter tasks keep stock placement (priorities only)
    memory_share: float = 0.05  # ... unless their peak is above this share of the smallest pause threshold
    calibration_weight: float = 0.3  # EWMA weight of one finished task in a category's calibration
    memory_refresh_s: float = 0.25  # worker memory readings only change with heartbeats
    latency_weight: float = 0.2  # EWMA weight of one dispatch-latency measurement
    max_latency_s: float = 5.0  # longer "latencies" are a task that queued behind another, not a round trip
    hold_latency_factor: float = 4.0  # place late only tasks longer than this many dispatch latencies
    lookahead_latency_factor: float = 2.0  # keep a worker fed for this many dispatch latencies
    recover_every_ticks: int = 10  # watchdog ticks between safety-net scans for lost held tasks


@dataclass(frozen=True, slots=True)
class RoundContext:
    """What one dispatch round decides with, besides the frozen config.

    >>> RoundContext(now=12.0, lookahead_s=0.1, bandwidth_bytes_per_s=1e8).lookahead_s
    0.1
    """

    now: float  # the caller's monotonic clock, seconds
    lookahead_s: float  # the adaptive lookahead (see estimates.lookahead_s)
    bandwidth_bytes_per_s: float  # measured between workers
    # learned from the tasks' own reads (policy.transfer): (source host, destination host) -> bytes/s; empty: none
    pair_rates: Mapping[tuple[str, str], float] = field(default_factory=dict)
    remote_rate_bytes_per_s: float | None = None  # the median learned rate between different hosts
    host_of: Mapping[str, str] = field(default_factory=dict)  # worker address -> host (the pair rates' identity)
    # the remote reads placed so far (policy.transfer.LinkLoad; None: links priced idle); placements add to it
    link_load: LinkLoad | None = None


class TaskPrediction(NamedTuple):
    """What the plugin predicted for one task, and where it put it in the order.

    A named tuple of plain values, not a dataclass: the plugin keeps one per
    live task, and a tuple of atomic values is untracked by the cyclic garbage
    collector, so 20k predictions do not make every full collection of the
    scheduler longer. ``_replace`` makes the ordered copy.
    """

    duration_s: float
    peak_memory_bytes: float
    quality: PredictionQuality
    model_version: str | None
    rank_s: float = 0.0
    priority_index: int = -1
    run_id: str | None = None
    category: str = ""
    p90_duration_s: float = 0.0  # the predictor's p90 (0: none); the plan's p90 is corrected in-run (policy.correction)
    p90_peak_memory_bytes: float = 0.0
    memory_quality: str = ""  # where the peak came from ("": as ``quality``)

    @property
    def predicted_duration_s(self) -> float:
        return self.duration_s

    def ordered(self, rank_s: float, priority_index: int) -> TaskPrediction:
        """The same prediction with its place in the dispatch order."""
        return self._replace(rank_s=rank_s, priority_index=priority_index)

    @property
    def predicted_peak_memory_bytes(self) -> float:
        return self.peak_memory_bytes
