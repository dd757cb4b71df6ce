"""Stragglers of the steering plugin: which placed tasks run far past their plan, slowed hosts, restarts.

Design note
-----------
A :class:`StragglerWatch` is owned by the plugin's
:class:`~scheduler_plugins.dispatch.Dispatcher` and gets everything it uses
in its constructor (the plugin's one
:class:`~scheduler_plugins.steering_state.SteeringState`, the frozen
:class:`~scheduler_plugins.policy.PolicyConfig`, the clocks, the event
callback, and the dispatcher's worker view and planned durations). The rules
themselves are pure (:mod:`scheduler_plugins.policy.stragglers`); here they
meet the scheduler: the running tasks per worker (:meth:`running_tasks`),
orphans of restarts that still hold a thread (:meth:`live_orphans_of`), the
watchdog's check (:meth:`check`: flag, read a slowed host, restart on a faster
idle worker, restart a task whose host slowed under it, each a decision event) and a finished task read as a slowed host
(:meth:`observe_finished`). Every scheduler internal goes through
:mod:`scheduler_plugins.compat`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from daskflow.contracts import STEERING_PLUGIN
from daskflow.daskgraph import annotations_of
from scheduler_plugins import compat
from scheduler_plugins.policy import (
    PolicyConfig,
    RoundContext,
    TaskInfo,
    TaskPrediction,
    WorkerInfo,
    estimate_finish,
    relative_speed,
)
from scheduler_plugins.policy.stragglers import (
    RESTARTABLE_KINDS,
    Orphan,
    RestartDecision,
    RunningTask,
    Straggler,
    categories_on_many_hosts,
    find_stragglers,
    host_slowed_under,
    hosts_overrunning,
    live_orphans,
    reads_as_slow_host,
    restart_decision,
    slowed_remaining_s,
    thread_start_times,
)
from scheduler_plugins.steering_state import SteeringState

__all__ = ["StragglerWatch"]


class StragglerWatch:
    """The straggler rules of one steering plugin, with explicit references to its state and views."""

    def __init__(
        self,
        state: SteeringState,
        config: PolicyConfig,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        log: Callable[..., None],
        learn_speeds: bool,
        straggler_factor: float,
        worker_infos: Callable[[Any, float, dict], dict[str, WorkerInfo]],
        planned_s: Callable[[TaskPrediction, dict], float],
        speed_of: Callable[[str, dict], tuple[float, str]],
        speed_level: Callable[[], float],
        task_info: Callable[[Any, Any, Any, dict], TaskInfo] | None = None,
        round_context: Callable[[Any, float], RoundContext] | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.log = log
        self.learn_speeds = learn_speeds
        self.straggler_factor = straggler_factor  # 0: no straggler rules
        self.worker_infos = worker_infos
        self.planned_s = planned_s
        self.speed_of = speed_of
        self.speed_level = speed_level
        self.planned_data_s: dict = {}  # key -> seconds its placement priced for its reads (placed tasks with data)
        self.task_info = task_info  # the dispatcher's TaskInfo of a task (dependencies, stored inputs)
        self.round_context = round_context  # ... and its round context (learned read rates)

    def running_tasks(self, scheduler: Any, workers: dict[str, WorkerInfo], cache: dict, now: float) -> list[RunningTask]:
        """Placed tasks that may be computing now: per worker its first ``nthreads`` by dispatch time.

        Each could start when a thread was free (:func:`thread_start_times`):
        after the worker's last finished task, or after an orphan of a
        restart that still holds the thread.
        """
        state = self.state
        running = []
        for ws in compat.running_workers(scheduler):
            address = compat.worker_address(ws)
            info = workers.get(address)
            if info is None:
                continue
            mine = sorted(((state.dispatched_at[k], k, pts) for pts in compat.worker_processing(ws)
                           if (k := compat.key_of(pts)) in state.dispatched_at and k in state.predictions),
                          key=lambda item: item[0])  # fmt: skip
            orphan_ends = [o.ends_at for o in self.live_orphans_of(address, info.nthreads, now)]
            starts = thread_start_times([sent_at for sent_at, _, _ in mine], info.nthreads,
                                        state.last_finish_at.get(address, 0.0), orphan_ends)  # fmt: skip
            for (_, key, pts), could_start_at in zip(mine, starts):
                prediction = state.predictions[key]
                annotation = annotations_of(compat.annotations(pts))
                running.append(RunningTask(
                    key=key, worker=address, host=info.host, category=prediction.category,
                    kind=str(annotation.get("kind") or "asset"), planned_s=self.planned_s(prediction, cache),
                    worker_speed=state.planned_speed.get(key, info.speed), could_start_at=could_start_at,
                    input_bytes=int(annotation.get("input_bytes") or 0), data_s=self.planned_data_s.get(key, 0.0),
                ))  # fmt: skip
        return running

    def live_orphans_of(self, address: str, nthreads: int, now: float) -> list[Orphan]:
        """The restarted tasks still predicted to hold a thread of this worker (ended ones are dropped)."""
        orphans = self.state.orphans.get(address)
        if not orphans:
            return []
        last_finish_at = self.state.last_finish_at.get(address, float("-inf"))
        live = live_orphans(orphans, now, last_finish_at, nthreads)
        ended = [o.ends_at for o in orphans if o not in live and o.ends_at <= now]
        if ended:  # its thread is predicted free since then: what queued behind it started then, not when sent
            self.state.last_finish_at[address] = max([last_finish_at, *ended])
        if live:
            self.state.orphans[address] = live
        else:
            del self.state.orphans[address]
        return live

    def check(self, scheduler: Any) -> None:
        """Flag stragglers (an event each), read slowed hosts, restart those a faster idle worker beats.

        A straggler on a host whose recent tasks all overran updates that
        host's speed first (on every check while it runs); the restart is
        then weighed against the time it still needs at that new speed. A
        lone straggler is censored evidence once. Then a task that is no
        straggler yet but whose host slowed under it
        (:meth:`_restart_slowed_under`). A key restarts at most once.
        """
        state = self.state
        now = self.clock()
        cache: dict = {}
        planned_data = self.planned_data_s
        if len(planned_data) > 2 * len(state.dispatched_at) + 256:  # finished tasks: amortized O(1) per placement
            self.planned_data_s = {k: v for k, v in planned_data.items() if k in state.dispatched_at}
        workers = self.worker_infos(scheduler, now, cache)
        running = self.running_tasks(scheduler, workers, cache, now)
        # tasks planned shorter than speed-min-task are mostly dispatch overhead: no straggler, no restart
        min_planned_s = max(self.config.min_task_duration_s, state.speeds.min_planned_s)
        found = find_stragglers(running, now, state.spread, self.straggler_factor, min_planned_s)
        bandwidth = compat.bandwidth(scheduler)
        shared = categories_on_many_hosts(found) if len(found) > 1 else set()  # a mispredicted category: no slow host
        state.overrunning |= shared
        if self.learn_speeds:
            self._read_overrunning_hosts(running, now, min_planned_s)
        context = functools.cache(lambda: self.round_context(scheduler, now) if self.round_context is not None else None)
        for straggler in found:
            task = straggler.task
            prediction = state.predictions.get(task.key)
            informed = prediction is not None and prediction.quality != "default"  # a guess says nothing of the host
            slow_host = (self.learn_speeds and informed and task.category not in shared
                         and reads_as_slow_host(straggler, state.host_activity))
            speed_here = None
            if slow_host:
                state.speeds.observe_slow_host(task.host, straggler.elapsed_s, task.planned_s, now=self.wall_clock())
                facts = state.facts.get(task.worker)
                if facts is not None:
                    speed_here = self.speed_of(task.worker, facts)[0]
            # the task is long, not its worker slow: its category overruns on several hosts at once (the model
            # under-predicts it; a copy pays that cost on any worker), or its worker's speed is known from
            # finished tasks and its host was not read as slowed
            category_overruns = task.category in state.overrunning
            speed_known = category_overruns or (
                self.learn_speeds and not slow_host
                and state.speeds.n_observed(task.worker) - (task.key in state.stragglers) >= state.speeds.change_n)
            if task.key not in state.stragglers:
                state.stragglers.add(task.key)
                if not slow_host and not category_overruns:  # censored: at least this slow (a category's: no speed)
                    state.speeds.observe(task.worker, task.host, straggler.elapsed_s, task.planned_s)
            idle = [w for w in workers.values() if w.n_processing < w.nthreads]
            data_s = None
            if idle and task.kind in RESTARTABLE_KINDS and task.key not in state.restarted:
                data_s = self._data_s(scheduler, task, idle, context(), cache)
            decision = restart_decision(straggler, idle, bandwidth, speed_here, already_restarted=task.key in state.restarted,
                                        worker_speed_known=speed_known, data_s=data_s)  # fmt: skip
            fields = {"worker": task.worker, "elapsed_s": round(straggler.elapsed_s, 6),
                      "expected_s": round(straggler.expected_s, 6), "threshold_s": round(straggler.threshold_s, 6),
                      "remaining_s": round(decision.remaining_here_s, 6), "slow_host": slow_host,
                      "speed_here": None if speed_here is None else round(speed_here, 4),
                      "restart_finish_s": None if decision.finish_there_s is None else round(decision.finish_there_s, 6)}
            if decision.restart and self._restart(scheduler, task, decision, prediction, workers, now, fields):
                continue
            if (task.key, decision.reason) not in state.straggler_logged:
                state.straggler_logged.add((task.key, decision.reason))
                self.log("straggler", task.key, reason=decision.reason, **fields)
        if self.learn_speeds:
            self._restart_slowed_under(scheduler, running, workers, now, min_planned_s, bandwidth, context, cache)

    def _read_overrunning_hosts(self, running: list[RunningTask], now: float, min_planned_s: float) -> None:
        """Hosts whose running tasks overrun on several workers at once are read as slowed (one event per host read).

        :func:`~scheduler_plugins.policy.stragglers.hosts_overrunning`: at
        ``OVERRUN_RATIO`` × their plans, before any of them is a straggler
        (``straggler_factor`` ×). Only tasks with an informed prediction (a
        guess says nothing of the host); categories that overran on several
        hosts are the model's. The bound rises on every check while they run.
        """
        state = self.state
        informed = [t for t in running if (p := state.predictions.get(t.key)) is not None and p.quality != "default"]
        read = hosts_overrunning(informed, now, state.host_activity, min_planned_s, excluded=state.overrunning)
        for host, evidence in read.items():
            task = evidence.task
            new = state.speeds.slow_regime(host) is None
            state.speeds.observe_slow_host(host, evidence.elapsed_s, task.planned_s, now=self.wall_clock())
            if new and state.speeds.slow_regime(host) is not None:
                self.log("straggler", task.key, reason="host-overrun", worker=task.worker, host=host,
                         elapsed_s=round(evidence.elapsed_s, 6), expected_s=round(evidence.expected_s, 6),
                         threshold_s=round(evidence.threshold_s, 6), slow_host=True,
                         workers=len({t.worker for t in informed if t.host == host}))  # fmt: skip

    def _restart_slowed_under(self, scheduler: Any, running: list[RunningTask], workers: dict[str, WorkerInfo], now: float,
                              min_planned_s: float, bandwidth: float, context: Callable[[], RoundContext | None],
                              cache: dict) -> None:  # fmt: skip
        """Restart a task (no straggler yet) whose host slowed under it, when an idle worker elsewhere beats it.

        :func:`~scheduler_plugins.policy.stragglers.host_slowed_under`: the
        host's other workers, since the task could start, run at most
        ``1 / OVERRUN_RATIO`` of its planned speed. Only idle workers of other
        hosts are candidates (the host slowed as a whole), so on one host this
        never acts. One event per restart, reason ``slowed-host-restart``.
        """
        state = self.state
        idle_now = [w for w in workers.values() if w.n_processing < w.nthreads]
        if not idle_now:
            return  # the common case in a busy run: no O(running) scan
        by_host: dict[str, list[tuple[str, float, float | None]]] = {}  # O(workers) once, then O(host's workers) a task
        for address, worker in workers.items():
            by_host.setdefault(worker.host, []).append((address, worker.speed, state.last_finish_at.get(address)))
        for task in running:
            if (task.kind not in RESTARTABLE_KINDS or task.key in state.restarted or task.key in state.stragglers
                    or task.planned_s < min_planned_s):
                continue
            slowed = host_slowed_under(task, by_host.get(task.host, ()))
            if slowed is None:
                continue
            idle = [w for w in idle_now if w.n_processing < w.nthreads and w.host != task.host]  # a restart took one
            if not idle:
                continue
            remaining = slowed_remaining_s(task, now, slowed)
            expected = task.expected_s
            elapsed = max(now - task.compute_from, 0.0)
            as_running = Straggler(task, elapsed, expected, threshold_s=float("inf"))  # weighed as one, never flagged
            data_s = self._data_s(scheduler, task, idle, context(), cache)
            decision = restart_decision(as_running, idle, bandwidth, slowed.speed_now, data_s=data_s,
                                        remaining_s=remaining, reason="slowed-host-restart")  # fmt: skip
            if not decision.restart:
                continue
            prediction = state.predictions.get(task.key)
            fields = {"worker": task.worker, "elapsed_s": round(elapsed, 6), "expected_s": round(expected, 6),
                      "remaining_s": round(decision.remaining_here_s, 6), "slow_host": True,
                      "speed_here": round(slowed.speed_now, 4), "slowed_seen_at_s": round(now - slowed.seen_at, 6),
                      "restart_finish_s": None if decision.finish_there_s is None else round(decision.finish_there_s, 6)}
            self._restart(scheduler, task, decision, prediction, workers, now, fields)

    def _restart(self, scheduler: Any, task: RunningTask, decision: RestartDecision, prediction: TaskPrediction | None,
                 workers: dict[str, WorkerInfo], now: float, fields: dict) -> bool:  # fmt: skip
        """Release ``task`` for placement again (its old copy becomes an orphan on its thread); an event. False: not restarted."""
        state = self.state
        if not compat.restart_processing(scheduler, task.key, f"{STEERING_PLUGIN}-restart-{self.wall_clock()}"):
            return False
        state.restarted.add(task.key)
        peak = int(prediction.peak_memory_bytes) if prediction is not None else 0
        state.orphans.setdefault(task.worker, []).append(Orphan(task.key, task.worker, now, now + decision.remaining_here_s, peak))
        for address in (task.worker, decision.worker):  # the thread stays taken; the target's is about to be
            if address in workers:
                workers[address].n_processing += 1
        self.log("restart", task.key, reason=decision.reason, target_worker=decision.worker, **fields)
        return True

    def _data_s(self, scheduler: Any, task: RunningTask, idle: list[WorkerInfo], context: RoundContext | None,
                cache: dict) -> dict[str, float] | None:  # fmt: skip
        """Per idle worker, the seconds the placement prices for moving the straggler's inputs there (None: unknown).

        The copy a restart makes is placed again by :func:`estimate_finish`;
        the restart is weighed with the same data costs (see
        :func:`~scheduler_plugins.policy.stragglers.restart_decision`). Only
        for a straggler a restart is weighed for: O(idle workers × its
        dependencies), on the watchdog, never per task.
        """
        if self.task_info is None or context is None:
            return None
        ts = compat.task_state(scheduler, task.key)
        if ts is None:
            return None
        info = self.task_info(scheduler, ts, task.key, cache)
        data_s = {}
        for worker in idle:
            estimate = estimate_finish(info, worker, self.config, context)
            data_s[worker.address] = estimate.transfer_s + estimate.storage_s
        return data_s

    def observe_finished(self, host: str, category: str, duration_s: float, planned_s: float, speed: float) -> None:
        """A task finished on ``host`` in ``duration_s`` (planned ``planned_s`` at speed 1, ``speed`` expected there).

        Call it before the speed estimates and the category spread observe
        the task (its own ratio must not widen the spread it is judged by): a *finished*
        straggler on a host where nothing finished on time meanwhile reads
        as the host slowed (as a running one does), so one slow task that no
        plugin placed (stock placement) moves the host's speed at once.
        """
        state = self.state
        if planned_s < max(state.speeds.min_planned_s, self.config.min_task_duration_s):
            return  # dispatch overhead, not speed: neither evidence of a slow host nor against one
        now = self.clock()
        if self.learn_speeds and speed > 0:  # the absolute factor it had; the plan is relative to the median
            speed = relative_speed(speed, self.speed_level(), state.speeds.dead_band)
        expected_s = planned_s / (speed if speed > 0 else 1.0)
        if self.straggler_factor and self.learn_speeds and expected_s > 0:
            task = RunningTask(None, "", host, category, "", planned_s, speed, now - duration_s)
            factor = max(self.straggler_factor, state.spread.p90(category) or 0.0)
            if duration_s > expected_s * factor:
                straggler = Straggler(task, duration_s, expected_s, expected_s * factor)
                if reads_as_slow_host(straggler, state.host_activity):
                    state.speeds.observe_slow_host(host, duration_s, planned_s, now=self.wall_clock())
        state.host_activity.observe(host, now, duration_s, expected_s, category)
