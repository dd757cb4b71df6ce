"""SteeringPlugin: drive the Dask scheduler with predicted task costs.

Design note
-----------
A thin adapter between the scheduler and the pure policy
(:mod:`scheduler_plugins.policy`); every scheduler internal it touches goes
through :mod:`scheduler_plugins.compat`. The hooks live here; dispatch rounds
(worker view, binding, timer) in :mod:`scheduler_plugins.dispatch`.

* ``update_graph`` — ONE batched prediction for the new (``released``) tasks,
  critical-path ranks → task priorities (user priorities first). In ``steer``
  mode each manageable task worth placing late is then *held* (see compat):
  none of them is dispatched by the scheduler's initial transitions, so the
  first wave honours the new priorities too (stock Dask sorted it by the old
  ones). Worth placing late: predicted longer than ``min-task-duration`` and
  four measured dispatch latencies (late binding costs a round trip that
  stock's eager queueing hides), or predicted to peak above ``memory-share``
  of a worker's pause threshold. The others keep stock placement.
* Ready tasks wait in ``no-worker``; the ``transition`` hook puts them in the
  plugin's ready heap (priority order). A *dispatch round* — run soon after any
  event that may open a worker (graph update, task ready, task finished,
  worker added/removed) and by a watchdog every ``watchdog-interval`` — asks the
  policy for placements (list scheduling by predicted finish time with memory
  headroom), pins each placed task to its worker (loose restriction for
  preferences; strict when memory decided) and recommends ``processing``.
  While tasks wait, a timed round runs when the next busy worker is predicted
  to open, so its next task is queued there before the running one ends.
* Safety: any exception in a hook gives stock behaviour for that batch (held
  tasks are released to stock placement), ONE warning and ``fallback_count``
  +1. A held task whose worker disappeared is re-held and placed again;
  ``close()`` releases everything held.
* Every decision is a ``log_event("daskflow-steering", {...})`` event and is
  kept in :attr:`SteeringPlugin.decisions` (the scheduler keeps only the last
  ``distributed.admin.low-level-log-length`` events per topic).

Modes (``daskflow.steering.mode``): ``off`` (not installed), ``shadow``
(predict and log what it would do, change nothing), ``steer``.
Worker speed: a worker started with the resource ``daskflow-speed=2`` is
treated as running tasks twice as fast (``dask worker --resources
daskflow-speed=2``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
import warnings
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from daskflow.daskgraph import annotations_of
from scheduler_plugins import compat
from scheduler_plugins.dispatch import DispatchRounds
from scheduler_plugins.policy import (
    PolicyConfig,
    critical_path_ranks,
    order_keys,
)

logger = logging.getLogger(__name__)

PLUGIN_NAME = "daskflow-steering"
EVENT_TOPIC = "daskflow-steering"
MODES = ("off", "shadow", "steer")


@dataclass(slots=True)
class Prediction:
    """What the plugin predicted for one task, and where it put it in the order."""

    duration_s: float
    peak_memory_bytes: float
    quality: str
    model_version: str | None
    rank_s: float = 0.0
    priority_index: int = -1
    run_id: str | None = None
    category: str = ""

    @property
    def predicted_duration_s(self) -> float:
        return self.duration_s

    @property
    def predicted_peak_memory_bytes(self) -> float:
        return self.peak_memory_bytes


_MAX_LOG_RATIO = math.log(100.0)


def _is_model(prediction: Prediction) -> bool:
    """Whether the prediction came from a learned model (calibrated; baselines follow running means, the oracle is truth)."""
    return prediction.quality == "model"


def _load_predictor(oracle: bool, url: str | None) -> Any:
    from daskflow.learning.predictor import OraclePredictor, Predictor

    if oracle:
        return OraclePredictor(url)
    return Predictor.load(url)


class SteeringPlugin(DispatchRounds, SchedulerPlugin):
    """Critical-path priorities and just-in-time, memory-aware placement from predictions.

    >>> plugin = SteeringPlugin(mode="shadow")      # doctest: +SKIP
    >>> client.register_plugin(plugin)              # doctest: +SKIP
    """

    name = PLUGIN_NAME

    def __init__(
        self,
        scheduler: Any = None,
        *,
        mode: str | None = None,
        model_url: str | None = None,
        oracle: bool | None = None,
        predictor: Any = None,
    ) -> None:
        from dask.utils import parse_timedelta

        from daskflow import config

        self.mode = str(mode or config.get("steering.mode", "steer"))
        if self.mode not in MODES:
            raise ValueError(f"daskflow.steering.mode is {self.mode!r}; expected one of {', '.join(MODES)}")
        self.model_url = model_url or config.get("steering.model")
        self.oracle = bool(config.get("steering.oracle", False) if oracle is None else oracle)
        self.policy_config = PolicyConfig(
            lookahead_s=float(parse_timedelta(config.get("steering.lookahead", "50ms"))),
            max_depth=int(config.get("steering.max-depth", 64)),
        )
        self.watchdog_interval_s = float(parse_timedelta(config.get("steering.watchdog-interval", "200ms")))
        self.max_decisions = int(config.get("steering.max-decisions", 100_000))
        self.max_predictions = int(config.get("steering.max-predictions", 1_000_000))
        self.lookahead_s = self.policy_config.lookahead_s
        self.max_lookahead_s = float(parse_timedelta(config.get("steering.max-lookahead", "10s")))
        self.min_task_duration_s = float(parse_timedelta(config.get("steering.min-task-duration", "5ms")))
        self.memory_share = float(config.get("steering.memory-share", 0.05))
        self.calibration_weight = float(config.get("steering.calibration-weight", 0.3))
        self.memory_refresh_s = 0.25  # worker memory readings only change with heartbeats
        self.predictor = predictor
        self.scheduler = scheduler
        self._init_state()

    def _init_state(self) -> None:
        self.predictions: dict[Hashable, Prediction] = {}
        self.decisions: deque[dict] = deque(maxlen=self.max_decisions)
        self.counts: Counter[str] = Counter()
        self.fallback_count = 0
        self._ready: list[tuple[Any, int, Hashable]] = []  # (priority, seq, key)
        self._seq = itertools.count()
        self._managed: set[Hashable] = set()
        self._dispatched_at: dict[Hashable, float] = {}
        self._held_since: dict[Hashable, float] = {}
        self._dispatch_pending = False
        self._timer: Any = None  # the next timed dispatch round (a worker predicted to open)
        self._timer_at = float("inf")
        self._last_finish: dict[str, float] = {}  # worker -> when its last task finished (monotonic)
        self._warned = False
        self._unmanaged_floor: dict[str, int] = {}
        self._facts: dict[str, dict] = {}
        self._log_ratio: dict[str, float] = {}  # category -> EWMA of log(actual / model prediction)
        self._ratio_n: Counter[str] = Counter()
        self._latency_probe: dict[Hashable, float] = {}  # key -> wall time it was sent to an idle thread
        self.dispatch_latency_s = 0.0  # EWMA of "sent to an idle thread" -> "compute started"
        self._memory_read_at = 0.0
        self._pause_fraction = compat.pause_fraction()
        self._terminate_fraction = compat.terminate_fraction()
        self._ticks = 0

    def __getstate__(self) -> dict:  # Client.register_plugin pickles us: ship config only
        state = dict(self.__dict__)
        state["scheduler"] = None
        state["predictor"] = None  # loaded on the scheduler in start()
        for name in list(state):
            if name.startswith("_") or name in ("predictions", "decisions", "counts"):
                state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_state()

    # ----------------------------------------------------------------- lifecycle
    @property
    def model_version(self) -> str | None:
        if self.oracle:
            return "oracle"
        return getattr(self.predictor, "model_version", None)

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._ensure_predictor()
        compat.add_periodic_callback(scheduler, PLUGIN_NAME, self._watchdog, self.watchdog_interval_s * 1000)

    def _ensure_predictor(self) -> None:
        if self.predictor is None:
            self.predictor = _load_predictor(self.oracle, self.model_url)

    async def close(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        pc = scheduler.periodic_callbacks.pop(PLUGIN_NAME, None)
        if pc is not None:
            pc.stop()
        if self._timer is not None:
            compat.cancel_timer(scheduler, self._timer)
            self._timer = None
        held = list(self._managed)
        self._ready.clear()
        self._managed.clear()
        compat.release_to_stock(scheduler, held, f"{PLUGIN_NAME}-close-{time.time()}")

    # ----------------------------------------------------------------- events
    def _log(self, action: str, key: Hashable | None, **fields: Any) -> None:
        prediction = self.predictions.get(key) if key is not None else None
        run_id = fields.pop("run_id", None)
        event = {
            "key": None if key is None else str(key),
            "run_id": run_id if run_id is not None or prediction is None else prediction.run_id,
            "action": action,
            "worker": fields.pop("worker", None),
            "predicted_duration_s": None if prediction is None else round(float(prediction.duration_s), 6),
            "predicted_peak_memory_bytes": None if prediction is None else int(prediction.peak_memory_bytes),
            "quality": None if prediction is None else prediction.quality,
            "model_version": self.model_version,
            "alternatives": fields.pop("alternatives", []),
            "reason": fields.pop("reason", None),
            "time": time.time(),
        }
        if prediction is not None:
            event["rank_s"] = round(float(prediction.rank_s), 6)
            event["priority_index"] = prediction.priority_index
            if prediction.category in self._log_ratio and _is_model(prediction):
                event["calibration"] = round(math.exp(self._log_ratio[prediction.category]), 4)
        event.update(fields)
        self.decisions.append(event)
        self.counts[action] += 1
        if self.scheduler is not None:
            self.scheduler.log_event(EVENT_TOPIC, event)

    def _fallback(self, where: str, exc: BaseException, keys: list) -> None:
        """Stock behaviour for ``keys``, one warning, a counter, an event."""
        self.fallback_count += 1
        message = (
            f"daskflow steering failed in {where} ({type(exc).__name__}: {exc}); "
            "stock Dask scheduling for the affected tasks"
        )
        if not self._warned:
            self._warned = True
            logger.warning("%s", message, exc_info=exc)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        else:
            logger.debug("%s", message, exc_info=exc)
        try:
            for key in keys:
                self._managed.discard(key)
            if self.scheduler is not None:
                compat.release_to_stock(self.scheduler, keys, f"{PLUGIN_NAME}-fallback-{time.time()}")
            self._log("fallback", None, reason="fallback", where=where, error=f"{type(exc).__name__}: {exc}", n_tasks=len(keys))
        except Exception:
            logger.debug("daskflow steering: releasing tasks after a failure failed", exc_info=True)

    # ----------------------------------------------------------------- graph
    def update_graph(self, scheduler: Any, *, keys: Any = (), tasks: Any = (), stimulus_id: str | None = None, **kwargs: Any) -> None:
        if self.mode == "off":
            return
        self.scheduler = scheduler
        new_tasks = []
        held: list = []
        try:
            for key in tasks:
                ts = compat.task_state(scheduler, key)
                if ts is not None and compat.state_of(ts) == "released":
                    new_tasks.append(ts)
            if not new_tasks:
                return
            self._ensure_predictor()
            if hasattr(self.predictor, "maybe_reload"):
                self.predictor.maybe_reload()
            informed = self._predict(scheduler, new_tasks)
            if self.mode == "shadow":
                order = self._order(new_tasks, informed)
                for index, key in enumerate(order):
                    self._log("shadow", key, reason="priority", would_priority_index=index,
                              run_id=self._run_id(key))
                return
            if not informed:  # nothing learned yet: stock Dask knows as much as we do
                self._log("priority", None, reason="no-information", n_tasks=len(new_tasks), n_held=0,
                          run_id=self._run_id(compat.key_of(new_tasks[0])))
                return
            order = self._order(new_tasks, informed)
            for index, key in enumerate(order):
                ts = compat.task_state(scheduler, key)
                old = compat.priority(ts)
                compat.set_priority(ts, (*old[:-1], index) if old else (0, 0, index))
            hold_s, memory_floor = self._hold_thresholds()
            for ts in new_tasks:
                if compat.is_manageable(ts):
                    prediction = self.predictions[compat.key_of(ts)]
                    if self._planned_s(prediction) >= hold_s or prediction.peak_memory_bytes >= memory_floor:
                        compat.hold(ts)
                        held.append(compat.key_of(ts))
            self._managed.update(held)
            place = bool(held)
            top = order[:10]
            self._log("priority", None, reason="critical-path" if place else "critical-path-only",
                      n_tasks=len(new_tasks), n_held=len(held), top=[str(k) for k in top],
                      run_id=self._run_id(top[0]) if top else None)
            self._request_dispatch()
        except Exception as exc:  # noqa: BLE001 - stock behaviour for this batch
            for ts in new_tasks:
                if compat.is_held(ts):
                    compat.unpin(ts)
            self._fallback("update_graph", exc, held)

    def _predict(self, scheduler: Any, new_tasks: list) -> bool:
        """One batched prediction; store it. True when it says more than defaults."""
        from daskflow.learning.features import record_from_annotations

        records = []
        for ts in new_tasks:
            deps = compat.dependencies_with_locations(ts)
            records.append(
                record_from_annotations(
                    compat.key_of(ts),
                    annotations_of(compat.annotations(ts)),
                    n_dependencies=len(deps),
                    dependency_bytes=sum(nbytes for nbytes, _ in deps),
                    key_prefix=compat.prefix_name(ts),
                )
            )
        predicted = self.predictor.predict(records)
        version = self.model_version
        informed = False
        if len(self.predictions) + len(new_tasks) > self.max_predictions:
            self.predictions.clear()  # bounded: drop the old ones rather than grow forever
        durations = predicted.duration_s
        peaks = predicted.peak_memory_bytes
        qualities = predicted.quality
        for i, ts in enumerate(new_tasks):
            quality = str(qualities[i])
            informed = informed or quality != "default"
            self.predictions[compat.key_of(ts)] = Prediction(
                float(durations[i]), float(peaks[i] if peaks[i] == peaks[i] else 0.0), quality, version,
                run_id=records[i].get("run_id"), category=str(records[i].get("category") or ""),
            )
        return informed

    def _hold_thresholds(self) -> tuple[float, float]:
        """Which tasks the plugin places itself: ``(min predicted seconds, min predicted peak bytes)``.

        Binding a task late costs a scheduler round trip before it starts,
        which stock Dask hides by queueing ready tasks on workers. That pays
        only for tasks long against that round trip (``min-task-duration``, or
        four measured dispatch latencies) or whose predicted peak is a real
        share (``memory-share``) of the smallest worker's pause threshold.
        Shorter, lighter tasks keep stock placement with the new priorities.
        """
        hold_s = max(self.min_task_duration_s, 4.0 * self.dispatch_latency_s)
        limits = [self._facts_of(ws)["memory_limit_bytes"] for ws in compat.running_workers(self.scheduler)] \
            if self.scheduler is not None and self._pause_fraction else []
        pause = [limit * self._pause_fraction for limit in limits if limit]
        memory_floor = self.memory_share * min(pause) if pause else float("inf")
        return hold_s, memory_floor

    def _order(self, new_tasks: list, informed: bool) -> list:
        durations = {}
        parents = {}
        user = {}
        tie = {}
        for ts in new_tasks:
            key = compat.key_of(ts)
            durations[key] = self._planned_s(self.predictions[key])
            parents[key] = compat.dependency_keys(ts)
            priority = compat.priority(ts) or (0,)
            user[key] = -priority[0]
            tie[key] = priority[1:]
        ranks = critical_path_ranks(durations, parents)
        order = order_keys(ranks, user, tie) if informed else sorted(durations, key=lambda k: (-user[k], tie[k]))
        for index, key in enumerate(order):
            prediction = self.predictions[key]
            prediction.rank_s = ranks[key]
            prediction.priority_index = index
        return order

    def _run_id(self, key: Hashable) -> str | None:
        prediction = self.predictions.get(key)
        return prediction.run_id if prediction is not None else None

    # ----------------------------------------------------------------- transitions
    def transition(self, key: Hashable, start: str, finish: str, *args: Any, stimulus_id: str | None = None, **kwargs: Any) -> None:
        if self.mode == "off":
            return
        try:
            if finish == "no-worker":
                if key in self._managed:
                    ts = compat.task_state(self.scheduler, key)
                    if not compat.is_held(ts):  # its worker vanished: place it again
                        compat.hold(ts)
                    heapq.heappush(self._ready, (compat.priority(ts), next(self._seq), key))
                    self._request_dispatch()
            elif start == "processing":
                self._dispatched_at.pop(key, None)
                worker = kwargs.get("worker")
                if worker is not None:
                    self._last_finish[worker] = time.monotonic()
                sent_wall = self._latency_probe.pop(key, None)
                if finish == "memory":
                    self._observe(key, kwargs)
                    if sent_wall is not None:
                        self._measure_latency(sent_wall, kwargs)
                if self._ready:
                    self._request_dispatch()
                if finish in ("released", "waiting") and key in self._managed:
                    ts = compat.task_state(self.scheduler, key)
                    if ts is not None:
                        compat.hold(ts)
            elif finish == "processing" and self.mode == "shadow":
                self._shadow_place(key)
            elif finish == "forgotten":
                self._managed.discard(key)
                self._latency_probe.pop(key, None)
                self.predictions.pop(key, None)
                self._held_since.pop(key, None)
        except Exception as exc:  # noqa: BLE001
            self._fallback("transition", exc, list(self._managed))
            self._ready.clear()

    def _measure_latency(self, sent_wall: float, info: dict) -> None:
        started = compat.startstops_compute_start(info.get("startstops"))
        worker = info.get("worker")
        if started is None or worker is None:
            return
        latency_s = started + compat.worker_clock_offset_s(self.scheduler, worker) - sent_wall
        if 0.0 <= latency_s < 5.0:
            self.dispatch_latency_s += 0.2 * (latency_s - self.dispatch_latency_s)

    def _observe(self, key: Hashable, info: dict) -> None:
        """Feed the finished task's cost to the predictor's running per-category mean."""
        prediction = self.predictions.get(key)
        if prediction is None:
            return
        duration_s = compat.startstops_compute_s(info.get("startstops"))
        if duration_s is None:
            return
        metadata = info.get("metadata")
        peak = None
        if metadata:  # the recorder's worker plugin puts it under metadata["daskflow"]
            nested = metadata.get("daskflow")
            peak = nested.get("peak_memory_bytes") if isinstance(nested, dict) else metadata.get("peak_memory_bytes")
        observe = getattr(self.predictor, "observe", None)
        if observe is not None:
            observe(prediction.category, duration_s, peak)
        if _is_model(prediction) and prediction.duration_s > 0 and duration_s > 0:
            self._calibrate(prediction.category, duration_s / prediction.duration_s)
        self.counts["observed"] += 1
        self.counts["abs_error_ms"] += int(abs(duration_s - prediction.duration_s) * 1000)

    def _calibrate(self, category: str, ratio: float) -> None:
        """Track how far the model is off for a category in this cluster (actual / predicted).

        A model trained on other instances can be off by a constant factor for
        this one (other input sizes, other hardware); within a few finished
        tasks the factor is known and the not-yet-run tasks of the category are
        planned with it. EWMA on the log scale; the first observation counts fully.
        """
        log_ratio = max(-_MAX_LOG_RATIO, min(_MAX_LOG_RATIO, math.log(ratio)))
        n = self._ratio_n[category]
        self._ratio_n[category] = n + 1
        weight = max(self.calibration_weight, 1.0 / (n + 1))
        old = self._log_ratio.get(category, 0.0)
        self._log_ratio[category] = old + weight * (log_ratio - old)

    def _planned_s(self, prediction: Prediction) -> float:
        """The duration the plan uses: a model prediction times its category's calibration."""
        if _is_model(prediction):
            log_ratio = self._log_ratio.get(prediction.category)
            if log_ratio is not None:
                return prediction.duration_s * math.exp(log_ratio)
        return prediction.duration_s

    # ----------------------------------------------------------------- workers
    def add_worker(self, scheduler: Any, worker: str) -> None:
        self._facts.pop(worker, None)
        if self.mode == "steer" and self._ready:
            self._request_dispatch()

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Un-pin tasks that were pinned to the dead worker and place them again."""
        if self.mode != "steer":
            return
        self._last_finish.pop(worker, None)
        self._unmanaged_floor.pop(worker, None)
        self._facts.pop(worker, None)
        try:
            rescued = 0
            for ts in compat.unrunnable_tasks(scheduler):
                key = compat.key_of(ts)
                if key in self._managed and worker in compat.pinned_to(ts):
                    compat.hold(ts)
                    heapq.heappush(self._ready, (compat.priority(ts), next(self._seq), key))
                    rescued += 1
            if rescued:
                self._log("release", None, worker=worker, reason="worker-removed", n_tasks=rescued)
            self._request_dispatch()
        except Exception as exc:  # noqa: BLE001
            self._fallback("remove_worker", exc, list(self._managed))
            self._ready.clear()

    # ----------------------------------------------------------------- reporting
    def summary(self) -> dict[str, Any]:
        """Counts of decisions, fallbacks and prediction error so far."""
        observed = self.counts.get("observed", 0)
        return {
            "mode": self.mode,
            "model_version": self.model_version,
            "fallback_count": self.fallback_count,
            "counts": {k: v for k, v in self.counts.items() if k not in ("observed", "abs_error_ms")},
            "observed": observed,
            "mean_abs_error_s": (self.counts.get("abs_error_ms", 0) / 1000 / observed) if observed else None,
            "dispatch_latency_s": self.dispatch_latency_s,
            "held_now": len(self._held_since),
            "ready_now": len(self._ready),
        }


def install(scheduler: Any) -> None:
    """Add the steering plugin to ``scheduler`` (preload entry point; idempotent).

    Does nothing when ``daskflow.steering.mode`` is ``off``.
    """
    from daskflow import config

    mode = config.get("steering.mode", "steer")
    if mode == "off" or PLUGIN_NAME in scheduler.plugins:
        return
    scheduler.add_plugin(SteeringPlugin(scheduler), name=PLUGIN_NAME)


__all__ = ["EVENT_TOPIC", "PLUGIN_NAME", "Prediction", "SteeringPlugin", "install"]
