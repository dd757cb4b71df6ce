"""Dispatch rounds of the steering plugin: the policy's view of the scheduler, and binding.

Design note
-----------
A mixin of :class:`scheduler_plugins.steering.SteeringPlugin` (it shares the
plugin's state: the ready heap, predictions, the managed set). A *round* turns
the scheduler's state into the pure policy's inputs (:class:`WorkerInfo` with
each worker's predicted backlog, :class:`TaskInfo` for ready tasks in priority
order), asks :func:`~scheduler_plugins.policy.plan_dispatch` for placements,
pins each placed task to its worker and recommends ``processing``. Rounds run
soon after events that may open a worker, at the moment the next busy worker is
predicted to open (a timer), and from a watchdog. Every scheduler internal goes
through :mod:`scheduler_plugins.compat`.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Hashable
from typing import Any

from daskflow.daskgraph import annotations_of
from scheduler_plugins import compat
from scheduler_plugins.policy import (
    DependencyInfo,
    TaskInfo,
    WorkerInfo,
    choose_worker,
    plan_dispatch,
    remaining_s,
)

__all__ = ["DispatchRounds"]


class DispatchRounds:
    """Dispatch rounds, the worker view and the timer (mixed into the steering plugin)."""

    def _request_dispatch(self) -> None:
        if self._dispatch_pending or self.scheduler is None:
            return
        self._dispatch_pending = True
        compat.call_soon(self.scheduler, self._dispatch_round)

    def _watchdog(self) -> None:
        self._ticks += 1
        if self.mode != "steer":
            return
        if self._ready:
            self._dispatch_round()
        elif self._managed and self._ticks % 10 == 0:
            self._recover_lost()

    def _recover_lost(self) -> None:
        """Safety net: a held task the heap does not know about is put back in it."""
        queued = {key for _, _, key in self._ready}
        for ts in compat.unrunnable_tasks(self.scheduler):
            key = compat.key_of(ts)
            if key in self._managed and key not in queued:
                if not compat.is_held(ts):
                    compat.hold(ts)
                heapq.heappush(self._ready, (compat.priority(ts), next(self._seq), key))
        if self._ready:
            self._dispatch_round()

    def _duration_s(self, prediction: Any, cache: dict) -> float:
        """The planned duration: a model's calibrated prediction, or the running per-category mean for a baseline guess."""
        if prediction.quality not in ("default", "prefix-mean"):
            return self._planned_s(prediction)
        value = cache.get(prediction.category)
        if value is None:
            baseline_for = getattr(self.predictor, "baseline_for", None)
            value = baseline_for(prediction.category)[0] if baseline_for is not None else prediction.duration_s
            cache[prediction.category] = value
        return value

    def _facts_of(self, ws: Any) -> dict:
        """A worker's static facts (host, threads, speed, memory limit), cached until it leaves or rejoins."""
        address = compat.worker_address(ws)
        facts = self._facts.get(address)
        if facts is None:
            facts = self._facts[address] = compat.worker_facts(ws)
        return facts

    def _worker_infos(self, now: float, cache: dict) -> dict[str, WorkerInfo]:
        """The policy's view of every running worker (static facts and memory readings cached)."""
        pause = self._pause_fraction
        refresh_memory = now - self._memory_read_at > self.memory_refresh_s
        if refresh_memory:
            self._memory_read_at = now
        infos = {}
        for ws in compat.running_workers(self.scheduler):
            address = compat.worker_address(ws)
            facts = self._facts_of(ws)
            floor = self._unmanaged_floor.get(address)
            if floor is None or refresh_memory:
                _, unmanaged_old = compat.worker_memory(ws)
                if unmanaged_old is not None:
                    floor = unmanaged_old if floor is None else min(floor, unmanaged_old)
                    self._unmanaged_floor[address] = floor
            backlog_s, peaks, processing = self._backlog(ws, address, facts["nthreads"], now, cache)
            infos[address] = WorkerInfo(
                address=address,
                host=facts["host"],
                nthreads=facts["nthreads"],
                speed=facts["speed"],
                memory_limit_bytes=facts["memory_limit_bytes"],
                memory_bytes=compat.worker_managed_bytes(ws) + (floor or 0),
                pause_fraction=pause,
                terminate_fraction=self._terminate_fraction,
                backlog_s=backlog_s,
                n_processing=len(processing),
                running_peak_bytes=int(peaks),
            )
        return infos

    def _backlog(self, ws: Any, address: str, nthreads: int, now: float, cache: dict) -> tuple[float, float, list]:
        """Predicted remaining work (speed-1 seconds) and predicted peaks of the tasks on a worker.

        The scheduler does not hear when a queued task starts, so the first
        ``nthreads`` tasks (in dispatch order) count as running since they were
        sent or since the worker last finished a task, whichever is later; the
        rest count in full.
        """
        processing = compat.worker_processing(ws)
        entries = []
        peaks = 0.0
        for pts in processing:
            pkey = compat.key_of(pts)
            prediction = self.predictions.get(pkey)
            if prediction is not None:
                predicted_s = self._duration_s(prediction, cache)
                peaks += prediction.peak_memory_bytes
            else:
                predicted_s = compat.prefix_duration_s(pts)
            entries.append((self._dispatched_at.get(pkey, now), predicted_s))
        if len(entries) > 1:
            entries.sort(key=lambda entry: entry[0])
        last_finish = self._last_finish.get(address, 0.0)
        backlog_s = 0.0
        for index, (sent, predicted_s) in enumerate(entries):
            if index < nthreads:
                backlog_s += remaining_s(predicted_s, now - max(sent, last_finish))
            else:
                backlog_s += predicted_s
        return backlog_s, peaks, processing

    def _schedule_timer(self, workers: dict[str, WorkerInfo], now: float) -> None:
        """Run a dispatch round when the next busy worker is predicted to open.

        Without it a worker whose long task ends gets its next task only after
        telling the scheduler (one round trip of idle time); with it the next
        task is already queued on the worker when the running one ends.
        Workers open already are not waited for: when tasks still wait beside
        them, something else holds them (memory, resources), and finished tasks
        and the watchdog bring the next round.
        """
        lookahead = self.policy_config.lookahead_s
        soonest = float("inf")
        for worker in workers.values():
            if worker.n_processing >= worker.nthreads:
                wait_s = worker.wait_s()
                if wait_s >= lookahead:
                    soonest = min(soonest, wait_s - lookahead)
        if soonest == float("inf"):
            return
        at = now + soonest + 0.001  # just past the moment it opens
        if self._timer is not None and self._timer_at <= at:
            return  # an earlier round is already due
        if self._timer is not None:
            compat.cancel_timer(self.scheduler, self._timer)
        self._timer_at = at
        self._timer = compat.call_later(self.scheduler, at - now, self._timed_round)

    def _timed_round(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self._dispatch_round()

    def _task_info(self, ts: Any, key: Hashable, cache: dict) -> TaskInfo:
        prediction = self.predictions.get(key)
        deps = tuple(DependencyInfo(nbytes, holders) for nbytes, holders in compat.dependencies_with_locations(ts))
        locations = ()
        raw = annotations_of(compat.annotations(ts)).get("input_locations")
        if raw:
            locations = tuple((str(item.get("host", "")), int(item.get("bytes", 0) or 0)) for item in raw if isinstance(item, dict))
        return TaskInfo(
            key=key,
            duration_s=self._duration_s(prediction, cache) if prediction is not None else compat.prefix_duration_s(ts),
            peak_memory_bytes=int(prediction.peak_memory_bytes) if prediction is not None else 0,
            dependencies=deps,
            input_locations=locations,
            allowed_workers=compat.allowed_workers(self.scheduler, ts),
        )

    def _dispatch_round(self) -> None:
        self._dispatch_pending = False
        if self.mode != "steer" or not self._ready or self.scheduler is None:
            return
        popped: list = []
        try:
            now = time.monotonic()
            wall_now = time.time()
            cache: dict = {}
            workers = self._worker_infos(now, cache)
            if not workers:
                return
            config = self.policy_config
            config.bandwidth_bytes_per_s = compat.bandwidth(self.scheduler)
            # Keep a worker fed for about two dispatch round trips: short tasks queue deeper.
            config.lookahead_s = min(max(self.lookahead_s, 2.0 * self.dispatch_latency_s), self.max_lookahead_s)
            tasks_by_key: dict = {}

            def ready_tasks():
                while self._ready:
                    entry = heapq.heappop(self._ready)
                    key = entry[2]
                    ts = compat.task_state(self.scheduler, key)
                    if ts is None or key not in self._managed or compat.state_of(ts) != "no-worker":
                        continue  # stale entry: cancelled, forgotten or already placed
                    popped.append(entry)
                    tasks_by_key[key] = ts
                    yield self._task_info(ts, key, cache)

            placed: list = []
            retry: list = []
            for placement in plan_dispatch(ready_tasks(), workers, config):
                if placement.action == "place":
                    placed.append(placement)
                else:
                    retry.append(placement)
            placed_keys = {p.key for p in placed}
            for entry in popped:
                if entry[2] not in placed_keys:
                    heapq.heappush(self._ready, entry)
            popped = []
            for placement in placed:
                ts = tasks_by_key[placement.key]
                compat.pin(ts, placement.worker, loose=placement.reason not in ("memory", "memory-overcommit"))
                self._dispatched_at[placement.key] = now
                if placement.wait_s == 0.0 and len(self._latency_probe) < 10_000:
                    self._latency_probe[placement.key] = wall_now
                held_since = self._held_since.pop(placement.key, None)
                self._log(
                    "release" if held_since is not None else "place",
                    placement.key,
                    worker=placement.worker,
                    reason=placement.reason,
                    alternatives=placement.alternatives,
                    predicted_finish_s=round(placement.finish_s or 0.0, 6),
                    held_s=None if held_since is None else round(now - held_since, 6),
                )
            for placement in retry:
                if placement.reason == "memory" and placement.key not in self._held_since:
                    self._held_since[placement.key] = now
                    self._log("hold", placement.key, reason="memory", alternatives=placement.alternatives)
            compat.dispatch(self.scheduler, [p.key for p in placed], f"{self.name}-dispatch-{time.time()}")
            if self._ready:
                self._schedule_timer(workers, now)
        except Exception as exc:  # noqa: BLE001 - release everything we hold to stock
            for entry in popped:
                heapq.heappush(self._ready, entry)
            keys = list(self._managed)
            self._ready.clear()
            self._fallback("dispatch", exc, keys)

    def _shadow_place(self, key: Hashable) -> None:
        ts = compat.task_state(self.scheduler, key)
        if ts is None or key not in self.predictions:
            return
        cache: dict = {}
        workers = self._worker_infos(time.monotonic(), cache)
        choice = choose_worker(self._task_info(ts, key, cache), workers.values(), self.policy_config, open_only=False)
        self._log("shadow", key, worker=compat.processing_on(ts), would_place=choice.worker,
                  reason=choice.reason, alternatives=choice.alternatives)
