"""Dispatch rounds of the steering plugin: the policy's view of the scheduler, and binding.

Design note
-----------
A :class:`Dispatcher` is owned by :class:`scheduler_plugins.steering.SteeringPlugin`
and gets everything it uses in its constructor: the plugin's one
:class:`~scheduler_plugins.steering_state.SteeringState`, the frozen
:class:`~scheduler_plugins.policy.PolicyConfig`, the clocks, and the plugin's
event and fallback callbacks. A *round* reads the clock once, turns the
scheduler's state into the pure policy's inputs (:class:`WorkerInfo` with each
worker's predicted backlog, :class:`TaskInfo` for ready tasks in priority
order, a :class:`RoundContext` with the adaptive lookahead), asks
:func:`~scheduler_plugins.policy.plan_dispatch` for placements, pins each placed
task to its worker (loose or strict: :func:`~scheduler_plugins.policy.pin_is_loose`)
and recommends ``processing``. Rounds run soon after events that may open a
worker, when the next busy worker is predicted to open (a timer:
:func:`~scheduler_plugins.policy.plan_timer`), and from the watchdog. Every
scheduler internal goes through :mod:`scheduler_plugins.compat`.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Hashable
from typing import Any

from daskflow.contracts import STEERING_PLUGIN
from daskflow.daskgraph import annotations_of
from scheduler_plugins import compat
from scheduler_plugins.policy import (
    DependencyInfo,
    PolicyConfig,
    RoundContext,
    TaskInfo,
    TaskPrediction,
    WorkerInfo,
    admission_peak_memory_bytes,
    admitted_memory_bytes,
    choose_worker,
    is_baseline,
    is_memory_heavy,
    lookahead_s,
    memory_refresh_due,
    pin_is_loose,
    plan_dispatch,
    plan_timer,
    planned_duration_s,
    relative_speed,
    speed_for,
    watchdog_action,
    worker_backlog_s,
)
from scheduler_plugins.policy.stragglers import (
    Orphan,
    RunningTask,
)
from scheduler_plugins.policy.correction import is_saturated
from scheduler_plugins.speed_store import address_host
from scheduler_plugins.steering_state import SteeringState
from scheduler_plugins.straggler_watch import StragglerWatch

__all__ = ["Dispatcher"]


class Dispatcher:
    """Dispatch rounds, the worker view and the timer of one steering plugin."""

    def __init__(
        self,
        state: SteeringState,
        config: PolicyConfig,
        *,
        steer: bool,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        log: Callable[..., None],
        fallback: Callable[[str, BaseException, list], None],
        predictor: Callable[[], Any],
        learn_speeds: bool = True,
        straggler_factor: float = 0.0,
    ) -> None:
        self.state = state
        self.straggler_factor = straggler_factor  # 0: no straggler rules
        self.learn_speeds = learn_speeds  # use learned speed factors where no daskflow-speed is declared
        self.config = config
        self.steer = steer  # False in shadow mode: rounds never run, only the worker view is used
        self.clock = clock  # monotonic seconds
        self.wall_clock = wall_clock  # wall seconds (latency probes are compared with worker startstops)
        self.log = log
        self.fallback = fallback
        self.predictor = predictor  # the plugin's predictor (loaded late, on the scheduler)
        self.stragglers = StragglerWatch(
            state, config, clock=clock, wall_clock=wall_clock, log=log, learn_speeds=learn_speeds,
            straggler_factor=straggler_factor, worker_infos=self.worker_infos, planned_s=self.planned_s,
            speed_of=self.speed_of, speed_level=self.speed_level, task_info=self.task_info,
            round_context=self.round_context,
        )  # fmt: skip

    # ---------------------------------------------------------------- triggers
    def request(self, scheduler: Any) -> None:
        """A round soon (after the current stimulus), unless one is already requested."""
        if self.state.dispatch_pending or scheduler is None:
            return
        self.state.dispatch_pending = True
        compat.call_soon(scheduler, functools.partial(self.run_round, scheduler))

    def watchdog(self, scheduler: Any) -> None:
        state = self.state
        state.ticks += 1
        if not self.steer:
            return
        if self.straggler_factor and state.dispatched_at:
            self.check_stragglers(scheduler)
        action = watchdog_action(state.ticks, len(state.ready), len(state.managed), self.config)
        if action == "dispatch":
            self.run_round(scheduler)
        elif action == "recover":
            self.recover_lost(scheduler)

    # straggler rules: scheduler_plugins.straggler_watch (these delegates are the Dispatcher's API)
    def running_tasks(self, scheduler: Any, workers: dict[str, WorkerInfo], cache: dict, now: float) -> list[RunningTask]:
        return self.stragglers.running_tasks(scheduler, workers, cache, now)

    def live_orphans_of(self, address: str, nthreads: int, now: float) -> list[Orphan]:
        return self.stragglers.live_orphans_of(address, nthreads, now)

    def check_stragglers(self, scheduler: Any) -> None:
        self.stragglers.check(scheduler)

    def observe_finished(self, host: str, category: str, duration_s: float, planned_s: float, speed: float) -> None:
        self.stragglers.observe_finished(host, category, duration_s, planned_s, speed)

    def recover_lost(self, scheduler: Any) -> None:
        """Safety net: a held task the heap does not know about is put back in it."""
        state = self.state
        queued = {key for _, _, key in state.ready}
        for ts in compat.unrunnable_tasks(scheduler):
            key = compat.key_of(ts)
            if key in state.managed and key not in queued:
                if not compat.is_held(ts):
                    compat.hold(ts)
                heapq.heappush(state.ready, (compat.priority(ts), next(state.seq), key))
        if state.ready:
            self.run_round(scheduler)

    def _timed_round(self, scheduler: Any) -> None:
        self.state.timer = None
        self.state.timer_at = float("inf")
        self.run_round(scheduler)

    def cancel_timer(self, scheduler: Any) -> None:
        if self.state.timer is not None:
            compat.cancel_timer(scheduler, self.state.timer)
            self.state.timer = None
            self.state.timer_at = float("inf")

    def _schedule_timer(self, scheduler: Any, workers: dict[str, WorkerInfo], context: RoundContext) -> None:
        state = self.state
        due = plan_timer(workers.values(), context.lookahead_s, context.now, state.timer_at)
        if due is None:
            return
        if state.timer is not None:
            compat.cancel_timer(scheduler, state.timer)
        state.timer_at = due
        state.timer = compat.call_later(scheduler, due - context.now, functools.partial(self._timed_round, scheduler))

    # ------------------------------------------------------------------- views
    def planned_s(self, prediction: TaskPrediction, cache: dict) -> float:
        """The planned duration: a model's corrected prediction, or the running per-category mean for a baseline guess.

        A model prediction whose category's correction sits at its clamp
        (:func:`is_saturated`: off by over ×100) is planned at the running mean too.

        A baseline of a category that drifted in this run is corrected too (the running mean lags a change).
        """
        correction = self.state.correction
        saturated = prediction.quality == "model" and is_saturated(correction, prediction.category)
        if not saturated and (not is_baseline(prediction.quality) or prediction.category in correction.drifted):
            return planned_duration_s(prediction, correction)
        # (a model off by over x100 for its category, its correction at the clamp: the running mean instead)
        value = cache.get(prediction.category)
        if value is None:
            baseline_for = getattr(self.predictor(), "baseline_for", None)
            value = baseline_for(prediction.category)[0] if baseline_for is not None else prediction.duration_s
            cache[prediction.category] = value
        return value

    def facts_of(self, ws: Any) -> dict:
        """A worker's static facts (host, threads, speed, memory limit), cached until it leaves or rejoins."""
        address = compat.worker_address(ws)
        facts = self.state.facts.get(address)
        if facts is None:
            facts = self.state.facts[address] = {**compat.worker_facts(ws), "speed_declared": compat.speed_declared(ws)}
        return facts

    def speed_of(self, address: str, facts: dict) -> tuple[float, str]:
        """The speed placement uses for a worker, and its source: declared (daskflow-speed), learned or default.

        A learned speed is relative to the median learned speed of the
        workers (:func:`relative_speed`): the in-run corrector learns each
        category's durations at that median speed, so a plan divided by the
        absolute factor would count the model's bias twice (on one host every
        worker "learns" the bias the corrector is about to remove).
        """
        declared = facts["speed"] if facts.get("speed_declared") else None
        if declared is None and not self.learn_speeds:
            return 1.0, "default"
        if declared is not None and declared > 0:
            return speed_for(declared, 1.0)
        speeds = self.state.speeds
        return speed_for(None, relative_speed(speeds.speed(address, facts["host"]), self.speed_level(),
                                              speeds.dead_band))

    def speed_level(self) -> float:
        """The median learned speed of the known workers (what the in-run corrector's durations are relative to).

        The same definition as the feedback's: the upper median over the
        workers without a declared speed. Recomputed after 1, 2, 4, 8 and
        then every 16 speed observations (it moves slowly), so a round and a
        finished task read one cached float.
        """
        state = self.state
        observed = state.counts.get("speed_observed", 0)
        at = state.speed_level_at
        if at is not None and observed - at < min(16, max(at, 1)):
            return state.speed_level
        state.speed_level = state.median_learned_speed()
        state.speed_level_at = observed
        return state.speed_level

    def worker_infos(self, scheduler: Any, now: float, cache: dict) -> dict[str, WorkerInfo]:
        """The policy's view of every running worker (static facts and memory readings cached)."""
        state = self.state
        refresh_memory = memory_refresh_due(state.memory_read_at, now, self.config)
        if refresh_memory:
            state.memory_read_at = now
        infos = {}
        for ws in compat.running_workers(scheduler):
            address = compat.worker_address(ws)
            facts = self.facts_of(ws)
            entries, peaks, max_peak = self._processing(ws, now, cache)
            speed, speed_source = self.speed_of(address, facts)
            # a restarted task still running there holds a thread and its memory until it ends
            orphans = self.live_orphans_of(address, facts["nthreads"], now)
            orphan_backlog_s = sum(max(o.ends_at - now, 0.0) for o in orphans) * speed  # speed-1 seconds
            peaks += sum(o.peak_memory_bytes for o in orphans)
            max_peak = max([max_peak] + [o.peak_memory_bytes for o in orphans])
            process_bytes = compat.worker_process_bytes(ws)
            if address not in state.unmanaged_floor or refresh_memory:
                self._read_memory(ws, address, process_bytes, bool(entries or orphans), now)
            baseline = state.memory_baseline.bytes_for(address, state.unmanaged_floor.get(address))
            # the reading still holds tasks that ended after it: not memory held outside the running tasks
            ended = state.memory_baseline.ended_since_reading(address, self._reading_at(ws, now))
            infos[address] = WorkerInfo(
                address=address,
                host=facts["host"],
                nthreads=facts["nthreads"],
                speed=speed,
                speed_source=speed_source,
                memory_limit_bytes=facts["memory_limit_bytes"],
                memory_bytes=admitted_memory_bytes(compat.worker_managed_bytes(ws), baseline, process_bytes, peaks + ended),
                pause_fraction=state.pause_fraction,
                terminate_fraction=state.terminate_fraction,
                backlog_s=worker_backlog_s(entries, facts["nthreads"], state.last_finish_at.get(address, 0.0), now)
                + orphan_backlog_s,
                n_processing=len(entries) + len(orphans),
                running_peak_bytes=int(peaks),
                max_running_peak_bytes=int(max_peak),
            )
        return infos

    def _read_memory(self, ws: Any, address: str, process_bytes: int | None, busy_now: bool, now: float) -> None:
        """Take a worker's heartbeat memory reading: distributed's ``unmanaged_old``, and an idle one for the baseline.

        A reading is idle when nothing ran there at the heartbeat: nothing
        processing now and no task finished there since the heartbeat.
        """
        state = self.state
        managed, unmanaged_old = compat.worker_memory(ws)
        if unmanaged_old is not None:
            state.unmanaged_floor[address] = unmanaged_old
        seen_wall = compat.worker_heartbeat_at(ws)
        seen_at = self._reading_at(ws, now)
        if seen_wall is None or seen_at is None:
            return
        busy = busy_now or state.last_finish_at.get(address, float("-inf")) >= seen_at
        state.memory_baseline.observe(address, seen_wall, process_bytes, managed, busy)

    def _reading_at(self, ws: Any, now: float) -> float | None:
        """When the worker's heartbeat memory reading was measured, on the monotonic clock (None: unknown)."""
        seen_wall = compat.worker_heartbeat_at(ws)
        return None if seen_wall is None else now - max(self.wall_clock() - seen_wall, 0.0)

    def _processing(self, ws: Any, now: float, cache: dict) -> tuple[list[tuple[float, float]], float, float]:
        """``(sent_at, predicted_s)`` of each task processing on a worker, the sum and the max of their p90 peaks."""
        state = self.state
        entries = []
        peaks = 0.0
        max_peak = 0.0
        for pts in compat.worker_processing(ws):
            pkey = compat.key_of(pts)
            prediction = state.predictions.get(pkey)
            if prediction is not None:
                predicted_s = self.planned_s(prediction, cache)
                reserved = admission_peak_memory_bytes(prediction, state.correction)  # admitted with its p90: reserved so
                peaks += reserved
                max_peak = max(max_peak, reserved)
            else:
                predicted_s = compat.prefix_duration_s(pts)
            entries.append((state.dispatched_at.get(pkey, now), predicted_s))
        return entries, peaks, max_peak

    def task_info(self, scheduler: Any, ts: Any, key: Hashable, cache: dict) -> TaskInfo:
        prediction = self.state.predictions.get(key)
        deps = tuple(DependencyInfo(nbytes, holders) for nbytes, holders in compat.dependencies_with_locations(ts))
        locations: tuple[tuple[str, int], ...] = ()
        raw = annotations_of(compat.annotations(ts)).get("input_locations")
        if raw:
            locations = tuple((str(item.get("host", "")), int(item.get("bytes", 0) or 0)) for item in raw if isinstance(item, dict))
        return TaskInfo(
            key=key,
            duration_s=self.planned_s(prediction, cache) if prediction is not None else compat.prefix_duration_s(ts),
            # admission uses the p90 (corrected in-run); the p50 is for display and explain
            peak_memory_bytes=int(admission_peak_memory_bytes(prediction, self.state.correction)) if prediction is not None else 0,
            dependencies=deps,
            input_locations=locations,
            allowed_workers=compat.allowed_workers(scheduler, ts),
        )

    def round_context(self, scheduler: Any, now: float) -> RoundContext:
        state = self.state
        transfers = state.transfers
        learned = transfers.learned
        if learned:
            state.link_load.prune(now)
        return RoundContext(
            now=now,
            lookahead_s=lookahead_s(self.config, state.latency.estimate_s),
            bandwidth_bytes_per_s=compat.bandwidth(scheduler),
            pair_rates=transfers.rates if learned else {},  # read-only in the policy: no copy per round
            remote_rate_bytes_per_s=transfers.remote_rate,
            host_of={address: facts["host"] for address, facts in state.facts.items()} if learned else {},
            link_load=state.link_load if learned and self.config.link_contention else None,
        )

    def observe_transfers(self, worker: str | None, reads: Any) -> None:
        """A finished task's own reads ``[[source host, bytes, seconds], ...]`` (task metadata) feed the pair rates.

        O(reads) per task, and nothing for a task that reported none (every task outside the test bed).
        """
        if not worker or not isinstance(reads, (list, tuple)):
            return
        facts = self.state.facts.get(worker)
        destination = str(facts["host"]) if facts is not None else address_host(worker)
        transfers = self.state.transfers
        for read in reads[:64]:
            try:
                source, nbytes, seconds = read
                if transfers.observe(str(source), destination, float(nbytes), float(seconds)):
                    self.state.counts["transfer_observed"] += 1
            except (TypeError, ValueError):
                continue

    # ------------------------------------------------------------------ rounds
    def run_round(self, scheduler: Any) -> None:
        state = self.state
        state.dispatch_pending = False
        if not self.steer or not state.ready or scheduler is None:
            return
        popped: list = []
        try:
            now = self.clock()
            wall_now = self.wall_clock()
            cache: dict = {}
            workers = self.worker_infos(scheduler, now, cache)
            if not workers:
                return
            context = self.round_context(scheduler, now)
            tasks_by_key: dict = {}
            infos_by_key: dict[Hashable, TaskInfo] = {}

            def ready_tasks():
                while state.ready:
                    entry = heapq.heappop(state.ready)
                    key = entry[2]
                    ts = compat.task_state(scheduler, key)
                    if ts is None or key not in state.managed or compat.state_of(ts) != "no-worker":
                        continue  # stale entry: cancelled, forgotten or already placed
                    popped.append(entry)
                    tasks_by_key[key] = ts
                    infos_by_key[key] = info = self.task_info(scheduler, ts, key, cache)
                    yield info

            placed = []
            retry = []
            for placement in plan_dispatch(ready_tasks(), workers, self.config, context):
                (placed if placement.action == "place" else retry).append(placement)
            placed_keys = {p.key for p in placed}
            for entry in popped:
                if entry[2] not in placed_keys:
                    heapq.heappush(state.ready, entry)
            popped = []
            for placement in placed:
                heavy = is_memory_heavy(infos_by_key[placement.key], workers[placement.worker], self.config)
                compat.pin(tasks_by_key[placement.key], placement.worker, loose=pin_is_loose(placement, heavy))
                state.dispatched_at[placement.key] = now
                state.planned_speed[placement.key] = workers[placement.worker].speed
                if placement.data_s > 0.0:  # reads inside the task's time: no straggler for them
                    self.stragglers.planned_data_s[placement.key] = placement.data_s
                state.note_sent(placement.key, placement.worker, wall_now, probe=placement.wait_s == 0.0)
                held_since = state.held_since.pop(placement.key, None)
                chosen = workers[placement.worker]
                self.log(
                    "release" if held_since is not None else "place",
                    placement.key,
                    worker=placement.worker,
                    reason=placement.reason,
                    alternatives=placement.alternatives,
                    predicted_finish_s=round(placement.finish_s or 0.0, 6),
                    held_s=None if held_since is None else round(now - held_since, 6),
                    worker_speed=round(chosen.speed, 4),
                    speed_source=chosen.speed_source,
                )
            for placement in retry:
                if placement.reason in ("memory", "speed", "locality") and placement.key not in state.held_since:
                    state.held_since[placement.key] = now
                    self.log("hold", placement.key, reason=placement.reason, alternatives=placement.alternatives)
            compat.dispatch(scheduler, [p.key for p in placed], f"{STEERING_PLUGIN}-dispatch-{wall_now}")
            if state.ready:
                self._schedule_timer(scheduler, workers, context)
        except Exception as exc:  # noqa: BLE001 - release everything we hold to stock
            for entry in popped:
                heapq.heappush(state.ready, entry)
            keys = list(state.managed)
            state.ready.clear()
            self.fallback("dispatch", exc, keys)

    def shadow_place(self, scheduler: Any, key: Hashable) -> None:
        """Shadow mode: log where the policy would have put a task the scheduler just placed."""
        ts = compat.task_state(scheduler, key)
        if ts is None or key not in self.state.predictions:
            return
        cache: dict = {}
        workers = self.worker_infos(scheduler, self.clock(), cache)
        choice = choose_worker(self.task_info(scheduler, ts, key, cache), workers.values(), self.config, open_only=False)
        self.log("shadow", key, worker=compat.processing_on(ts), would_place=choice.worker,
                 reason=choice.reason, alternatives=choice.alternatives)

