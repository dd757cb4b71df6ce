"""The steering plugin's mutable state: one declared dataclass.

Design note
-----------
Everything :class:`scheduler_plugins.steering.SteeringPlugin` changes while it
runs lives in :class:`SteeringState` — nothing else on the plugin is mutated
after the constructor (config is read once there; the scheduler reference is
set on start). Times are on the plugin's injectable clocks: ``*_at`` fields
on the monotonic one, ``probe_sent_wall`` on the wall clock (worker
``startstops`` are wall times). The state is never pickled: a plugin shipped
with ``Client.register_plugin`` builds a fresh one on the scheduler.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Hashable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from daskflow.contracts import DecisionEvent
from daskflow.learning.corrector import OnlineCorrector
from scheduler_plugins.policy import (
    CategoryCorrection,
    DispatchLatency,
    MemoryBaseline,
    SpeedEstimates,
    TaskPrediction,
)
from scheduler_plugins.policy.stragglers import CategorySpread, HostActivity, Orphan
from scheduler_plugins.policy.transfer import LinkLoad, TransferRates
from scheduler_plugins.speed_store import address_host

__all__ = ["PredictionStore", "ReadyEntry", "SteeringState"]

#: an entry of the ready heap: (scheduler priority, insertion sequence, key)
ReadyEntry = tuple[Any, int, Hashable]


class PredictionStore(MutableMapping[Hashable, TaskPrediction]):
    """Key -> :class:`TaskPrediction`, kept as plain tuples (one per live task).

    A plain tuple of atomic values is untracked by Python's cyclic garbage
    collector after the first collection it survives; a ``TaskPrediction``
    (a tuple subclass) or a dataclass stays tracked. With 20k live tasks that
    made every full collection of the scheduler process visit 20k more
    objects. Reading builds the named tuple again (no copy of the values).

    >>> store = PredictionStore()
    >>> store["a"] = TaskPrediction(1.0, 0.0, "model", "v1", category="fit")
    >>> store.get("a").category, store.get("b"), len(store), "a" in store
    ('fit', None, 1, True)
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[Hashable, tuple] = {}

    def __setitem__(self, key: Hashable, prediction: TaskPrediction) -> None:
        self._rows[key] = tuple(prediction)

    def __getitem__(self, key: Hashable) -> TaskPrediction:
        return tuple.__new__(TaskPrediction, self._rows[key])

    def get(self, key: Hashable, default: Any = None) -> Any:  # type: ignore[override] - the hot path: no try/except
        row = self._rows.get(key)
        return default if row is None else tuple.__new__(TaskPrediction, row)

    def pop(self, key: Hashable, *default: Any) -> Any:  # type: ignore[override]
        row = self._rows.pop(key, None)
        if row is None:
            if default:
                return default[0]
            raise KeyError(key)
        return tuple.__new__(TaskPrediction, row)

    def __delitem__(self, key: Hashable) -> None:
        del self._rows[key]

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()


@dataclass(slots=True)
class SteeringState:
    """All mutable state of one steering plugin."""

    max_decisions: int
    # -- what it predicted and decided
    predictions: PredictionStore = field(default_factory=PredictionStore)  # key -> prediction (cleaned on forget)
    decisions: deque[DecisionEvent] = field(init=False)  # the last max_decisions events, for `daskflow explain`
    counts: Counter[str] = field(default_factory=Counter)  # action -> events; "observed"; "abs_error_ms"
    fallback_count: int = 0  # hook failures that gave stock behaviour
    warned: bool = False  # the one warning for a failure was given
    # -- tasks the plugin places itself
    managed: set[Hashable] = field(default_factory=set)  # held for late binding (until forgotten or released)
    ready: list[ReadyEntry] = field(default_factory=list)  # heap of managed tasks waiting in no-worker
    seq: itertools.count = field(default_factory=itertools.count)  # tie-breaker of ready entries
    held_since: dict[Hashable, float] = field(default_factory=dict)  # key -> when a memory hold began
    dispatched_at: dict[Hashable, float] = field(default_factory=dict)  # key -> when it was sent to its worker
    # -- rounds and timers
    dispatch_pending: bool = False  # a round is already requested with call_soon
    timer: Any = None  # handle of the next timed round (a worker predicted to open), or None
    timer_at: float = math.inf  # when that timed round is due
    ticks: int = 0  # watchdog ticks so far
    # -- what it learned about this cluster
    corrector: OnlineCorrector = field(default_factory=OnlineCorrector)  # in-run learner: online correction + drift (reset per model)
    correction: CategoryCorrection = field(default_factory=CategoryCorrection)  # the corrector's factors, as the policy reads them
    model_events: deque[dict[str, Any]] = field(init=False)  # drift alarms and model loads (newest last), for the model page
    latency: DispatchLatency = field(default_factory=DispatchLatency)  # sent to an idle thread -> compute started
    # key -> (wall time sent to an idle thread, wall time the next task was sent to the same worker; inf: none yet):
    # a worker runs its tasks in priority order, so a probe is a round trip only if it started before the next send
    probe_sent_wall: dict[Hashable, tuple[float, float]] = field(default_factory=dict)
    probe_of_worker: dict[str, Hashable] = field(default_factory=dict)  # worker -> its latest probe's key
    last_finish_at: dict[str, float] = field(default_factory=dict)  # worker -> when its last task finished
    speeds: SpeedEstimates = field(default_factory=SpeedEstimates)  # learned per-worker / per-host speed factors
    speeds_saved_at_n: int = 0  # observations counted when the speed file was last written
    transfers: TransferRates = field(default_factory=TransferRates)  # per host pair: read rates the tasks observed
    link_load: LinkLoad = field(default_factory=LinkLoad)  # remote reads placed and not yet over (priced by later placements)
    transfers_saved_at_n: int = 0  # transfer observations counted when they were last written
    speed_level: float = 1.0  # median learned speed of the workers (learned speeds are used relative to it)
    speed_level_at: int | None = None  # speed observations counted when speed_level was last computed
    spread: CategorySpread = field(default_factory=CategorySpread)  # per category recent actual / planned
    stragglers: set[Hashable] = field(default_factory=set)  # keys flagged as stragglers (once each)
    restarted: set[Hashable] = field(default_factory=set)  # keys restarted once (never twice)
    # categories whose stragglers ran on two or more hosts at once (under-predicted: a copy pays the same cost
    # anywhere), until one of theirs finishes within OVERRUN_RATIO of its plan (TaskFeedback.finished) or a model loads
    overrunning: set[str] = field(default_factory=set)
    straggler_logged: set[tuple[Hashable, str]] = field(default_factory=set)  # (key, reason) already logged
    planned_speed: dict[Hashable, float] = field(default_factory=dict)  # key -> its worker's speed when it was placed
    host_activity: HostActivity = field(default_factory=HostActivity)  # host -> recent finished (at, actual / expected)
    orphans: dict[str, list[Orphan]] = field(default_factory=dict)  # worker -> restarted tasks still running there
    # -- worker facts and memory readings
    facts: dict[str, dict] = field(default_factory=dict)  # worker -> compat.worker_facts, until it leaves or rejoins
    unmanaged_floor: dict[str, int] = field(default_factory=dict)  # worker -> unmanaged_old at its last reading
    memory_baseline: MemoryBaseline = field(default_factory=MemoryBaseline)  # worker -> unmanaged memory kept when idle
    memory_read_at: float = 0.0  # when worker memory readings were last refreshed
    pause_fraction: float = 0.0  # distributed.worker.memory.pause where the state was built (the scheduler)
    terminate_fraction: float = 0.0  # distributed.worker.memory.terminate, likewise

    def __post_init__(self) -> None:
        self.decisions = deque(maxlen=self.max_decisions)
        self.model_events = deque(maxlen=self.max_decisions)

    def clear_task(self, key: Hashable) -> None:
        """Forget everything about a task the scheduler forgot."""
        self.managed.discard(key)
        self.probe_sent_wall.pop(key, None)
        self.predictions.pop(key, None)
        self.held_since.pop(key, None)
        self.dispatched_at.pop(key, None)
        self.stragglers.discard(key)
        self.restarted.discard(key)
        self.planned_speed.pop(key, None)
        if self.straggler_logged:  # (per forgotten task: no set built while nothing was logged)
            self.straggler_logged.difference_update({(key, r) for r in ("straggler", "straggler-asset")})

    def median_learned_speed(self) -> float:
        """The upper median learned speed over the known workers without a declared speed (1.0: none).

        What the in-run corrector's durations are relative to. Callers cache it
        (it moves slowly): the dispatcher and the feedback each decide when.
        """
        learned = sorted(self.speeds.speed(address, str(facts.get("host") or address_host(address)))
                         for address, facts in self.facts.items() if not facts.get("speed_declared"))
        return learned[len(learned) // 2] if learned else 1.0

    def note_sent(self, key: Hashable, worker: str, wall_now: float, probe: bool) -> None:
        """A task was sent to ``worker``: mark that worker's pending latency probe (the task may start first);
        with ``probe`` (sent to an idle thread) the task is the worker's new probe."""
        probe_key = self.probe_of_worker.get(worker)
        if probe_key is not None:
            pending = self.probe_sent_wall.get(probe_key)
            if pending is None:  # measured or forgotten
                del self.probe_of_worker[worker]
            elif pending[1] == math.inf:
                self.probe_sent_wall[probe_key] = (pending[0], wall_now)
        if probe and len(self.probe_sent_wall) < 10_000:
            self.probe_sent_wall[key] = (wall_now, math.inf)
            self.probe_of_worker[worker] = key

    def forget_worker(self, address: str) -> None:
        """Drop a worker's cached facts and readings (it left, or rejoins with new ones)."""
        self.last_finish_at.pop(address, None)
        self.speeds.forget_worker(address)
        self.unmanaged_floor.pop(address, None)
        self.memory_baseline.forget_worker(address)
        self.facts.pop(address, None)
        self.orphans.pop(address, None)
        self.probe_of_worker.pop(address, None)
