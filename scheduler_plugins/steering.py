"""SteeringPlugin: drive the Dask scheduler with predicted task costs.

Design note
-----------
Hooks + compat calls + events around the pure policy
(:mod:`scheduler_plugins.policy`). Every scheduler internal it touches goes
through :mod:`scheduler_plugins.compat`; its mutable state is one
:class:`~scheduler_plugins.steering_state.SteeringState`; dispatch rounds
(worker view, binding, timer) are a :class:`~scheduler_plugins.dispatch.Dispatcher`
built with explicit references to that state; the per-graph prediction and
ordering live in :mod:`scheduler_plugins.graph_batch`. Clocks are injectable
(``clock``: monotonic, ``wall_clock``): the plugin reads them and passes
``now`` to the policy.

* ``update_graph`` — ONE batched prediction for the new (``released``) tasks,
  critical-path ranks → task priorities (user priorities first). In ``steer``
  mode each manageable task worth placing late is then *held* (see compat):
  none of them is dispatched by the scheduler's initial transitions, so the
  first wave honours the new priorities too (stock Dask sorted it by the old
  ones). Worth placing late (:func:`~scheduler_plugins.policy.places_late`):
  predicted longer than ``min-task-duration`` and four measured dispatch
  latencies, or predicted to peak above ``memory-share`` of a worker's pause
  threshold. The others keep stock placement.
* Ready tasks wait in ``no-worker``; the ``transition`` hook puts them in the
  plugin's ready heap (priority order). A *dispatch round* — run soon after any
  event that may open a worker and by a watchdog every ``watchdog-interval`` —
  asks the policy for placements and pins each placed task to its worker.
  While tasks wait, a timed round runs when the next busy worker is predicted
  to open, so its next task is queued there before the running one ends.
* Finished tasks (:mod:`scheduler_plugins.task_feedback`) feed the in-run
  learner (:class:`~daskflow.learning.corrector.OnlineCorrector`: per
  category online correction of the served p50 and the run's own p90 spread,
  and drift detection), the predictor's running means (exactly one
  ``observe`` per task; the recorder never observes), worker speeds and the
  dispatch latency. Tasks not yet run are planned with the corrected p50
  (durations: ordering, backlogs, the hold rule) and admitted with the
  corrected p90 peak memory (placement's ``TaskInfo.peak_memory_bytes``);
  events and explain show the served p50 and p90. A category whose cost
  drifts is logged as a ``drift`` event (and appended to the models
  directory's event log) and planned from this run's own tasks from then on.
  A new model (reload after a promotion or rollback) resets the learner.
* Tasks with client-set worker, host or resource restrictions (or actors) are
  never held: they keep stock placement and work stealing (dask/distributed#5565).
* Safety: any exception in a hook gives stock behaviour for that batch (held
  tasks are released to stock placement), ONE warning and ``fallback_count``
  +1. A held task whose worker disappeared is re-held and placed again;
  ``close()`` releases everything held.
* Every decision is a :class:`~daskflow.contracts.DecisionEvent` logged on
  :data:`~daskflow.contracts.STEERING_TOPIC` and kept in
  :attr:`SteeringPlugin.decisions` (the scheduler keeps only the last
  ``distributed.admin.low-level-log-length`` events per topic).

Modes (``daskflow.steering.mode``): ``off`` (not installed), ``shadow``
(predict and log what it would do, change nothing), ``steer``.
Worker speed: a worker started with the resource ``daskflow-speed=2``
(:data:`~daskflow.contracts.SPEED_RESOURCE`) runs tasks twice as fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import warnings
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from daskflow.contracts import (
    STEERING_PLUGIN,
    STEERING_TOPIC,
    TRANSFER_METADATA_KEY,
    SteeringMode,
    literal_values,
)
from scheduler_plugins import compat
from scheduler_plugins.dispatch import Dispatcher
from scheduler_plugins.graph_batch import order_batch, predict_batch
from scheduler_plugins.policy import (
    PolicyConfig,
    SpeedEstimates,
    TaskPrediction,
    admission_peak_memory_bytes,
    hold_thresholds,
    places_late,
    planned_duration_s,
)
from scheduler_plugins.speed_store import (
    TRANSFER_SECTION,
    load_host_speeds,
    save_in_background,
    speeds_url,
)
from scheduler_plugins.steering_events import decision_event, summary_of
from scheduler_plugins.steering_state import SteeringState
from scheduler_plugins.task_feedback import TaskFeedback

logger = logging.getLogger(__name__)

PLUGIN_NAME = STEERING_PLUGIN  # kept for existing imports
EVENT_TOPIC = STEERING_TOPIC
MODES: tuple[str, ...] = literal_values(SteeringMode)


def _load_predictor(oracle: bool, url: str | None) -> Any:
    from daskflow.learning.predictor import OraclePredictor, Predictor

    if oracle:
        return OraclePredictor(url)
    return Predictor.load(url)


def policy_config_from_settings() -> PolicyConfig:
    """The frozen policy tunables from ``daskflow.steering.*`` (defaults in ``daskflow.yaml``)."""
    from dask.utils import parse_timedelta

    from daskflow import config

    return PolicyConfig(
        lookahead_s=float(parse_timedelta(config.get("steering.lookahead"))),
        max_depth=int(config.get("steering.max-depth")),
        max_lookahead_s=float(parse_timedelta(config.get("steering.max-lookahead"))),
        min_task_duration_s=float(parse_timedelta(config.get("steering.min-task-duration"))),
        memory_share=float(config.get("steering.memory-share")),
        calibration_weight=float(config.get("steering.calibration-weight")),
        link_contention=bool(config.get("steering.link-contention")),
    )


class SteeringPlugin(SchedulerPlugin):
    """Critical-path priorities and just-in-time, memory-aware placement from predictions.

    >>> plugin = SteeringPlugin(mode="shadow")      # doctest: +SKIP
    >>> client.register_plugin(plugin)              # doctest: +SKIP
    """

    name = STEERING_PLUGIN
    # configuration (read once in the constructor; shipped when pickled)
    mode: str
    model_url: str | None
    oracle: bool
    policy_config: PolicyConfig
    watchdog_interval_s: float
    max_decisions: int
    max_predictions: int
    learn_speeds: bool  # learn per-worker / per-host speed factors (daskflow.steering.learn-speeds)
    speed_window: int
    speed_shrinkage: float
    speed_min_task_s: float  # shorter finished tasks teach nothing about speed
    straggler_factor: float  # past this x planned (and the category's p90) a running task is a straggler
    persist_speeds: bool  # keep per-host factors in <model dir>/worker-speeds.json
    speeds_url: str | None  # that file (None: not persisted)
    clock: Callable[[], float]  # monotonic seconds
    wall_clock: Callable[[], float]  # wall seconds (event times, latency probes against worker startstops)
    # attached on the scheduler
    scheduler: Any
    predictor: Any
    # everything that changes while it runs
    state: SteeringState
    dispatcher: Dispatcher
    feedback: TaskFeedback

    def __init__(
        self,
        scheduler: Any = None,
        *,
        mode: str | None = None,
        model_url: str | None = None,
        oracle: bool | None = None,
        predictor: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        from dask.utils import parse_timedelta

        from daskflow import config

        self.mode = str(mode or config.get("steering.mode"))
        if self.mode not in MODES:
            raise ValueError(f"daskflow.steering.mode is {self.mode!r}; expected one of {', '.join(MODES)}")
        self.model_url = model_url or config.get("steering.model")
        self.oracle = bool(config.get("steering.oracle") if oracle is None else oracle)
        self.policy_config = policy_config_from_settings()
        self.watchdog_interval_s = float(parse_timedelta(config.get("steering.watchdog-interval")))
        self.max_decisions = int(config.get("steering.max-decisions"))
        self.max_predictions = int(config.get("steering.max-predictions"))
        self.learn_speeds = bool(config.get("steering.learn-speeds"))
        self.speed_window = int(config.get("steering.speed-window"))
        self.speed_shrinkage = float(config.get("steering.speed-shrinkage"))
        self.speed_min_task_s = float(parse_timedelta(config.get("steering.speed-min-task")))
        self.straggler_factor = float(config.get("steering.straggler-factor"))
        self.persist_speeds = bool(config.get("steering.persist-speeds"))
        self.speeds_url = speeds_url(config.models_url(self.model_url)) if self.persist_speeds and self.learn_speeds else None
        self.clock = clock
        self.wall_clock = wall_clock
        self.predictor = predictor
        self.scheduler = scheduler
        self._build_state()
        if predictor is not None:
            self.feedback.model_loaded(predictor)

    def _build_state(self) -> None:
        self.state = SteeringState(
            max_decisions=self.max_decisions,
            pause_fraction=compat.pause_fraction(),
            terminate_fraction=compat.terminate_fraction(),
            speeds=SpeedEstimates(window=self.speed_window, pseudo_n=self.speed_shrinkage,
                                  min_planned_s=max(self.speed_min_task_s, self.policy_config.min_task_duration_s)),
        )
        self.dispatcher = Dispatcher(
            self.state, self.policy_config, steer=self.mode == "steer", clock=self.clock, wall_clock=self.wall_clock,
            log=self._log, fallback=self._fallback, predictor=lambda: self.predictor, learn_speeds=self.learn_speeds,
            straggler_factor=self.straggler_factor,
        )
        from daskflow.learning.corrector import corrector_config_from_settings

        self.feedback = TaskFeedback(
            self.state, self.policy_config, corrector_config=corrector_config_from_settings(),
            predictor=lambda: self.predictor, planned_s=lambda prediction: self.dispatcher.planned_s(prediction, {}),
            log=self._log, wall_clock=self.wall_clock, learn_speeds=self.learn_speeds, save_speeds=self._save_speeds,
            observe_host=self.dispatcher.stragglers.observe_finished,
        )

    def __getstate__(self) -> dict:  # Client.register_plugin pickles us: ship config only
        state = dict(self.__dict__)
        for name in ("state", "dispatcher", "feedback"):
            state.pop(name, None)
        state["scheduler"] = None
        state["predictor"] = None  # loaded on the scheduler in start()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build_state()

    # ------------------------------------------------------------ public view
    @property
    def predictions(self) -> MutableMapping[Hashable, TaskPrediction]:
        return self.state.predictions

    @property
    def decisions(self):
        return self.state.decisions

    @property
    def counts(self):
        return self.state.counts

    @property
    def fallback_count(self) -> int:
        return self.state.fallback_count

    @property
    def dispatch_latency_s(self) -> float:
        return self.state.latency.estimate_s

    @property
    def model_version(self) -> str | None:
        if self.oracle:
            return "oracle"
        return getattr(self.predictor, "model_version", None)

    # -------------------------------------------------------------- lifecycle
    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._ensure_predictor()
        compat.add_periodic_callback(scheduler, STEERING_PLUGIN, self._watchdog, self.watchdog_interval_s * 1000)
        if self.speeds_url is not None and self.mode != "off":
            try:
                priors = await asyncio.get_running_loop().run_in_executor(None, load_host_speeds, self.speeds_url)
                self.state.speeds.load_priors(priors)
                rates = await asyncio.get_running_loop().run_in_executor(None, load_host_speeds, self.speeds_url,
                                                                         TRANSFER_SECTION)  # fmt: skip
                self.state.transfers.load_priors(rates)
            except Exception:
                logger.debug("daskflow steering: speed priors not loaded", exc_info=True)

    def _save_speeds(self, force: bool = False) -> Any:
        """Write per-host factors off the event loop (every 64 observations, and at close); returns the future."""
        state = self.state
        observed = state.counts.get("speed_observed", 0)
        if self.speeds_url is None or not observed or (not force and observed - state.speeds_saved_at_n < 64):
            return None
        state.speeds_saved_at_n = observed
        return save_in_background(self.speeds_url, state.speeds.host_speeds(min_n=self.speed_window))

    def _save_transfers(self, force: bool = False) -> Any:
        """Write the learned per-host-pair read rates off the event loop (every 32 observations, and at close)."""
        state = self.state
        observed = state.counts.get("transfer_observed", 0)
        if self.speeds_url is None or not observed or (not force and observed - state.transfers_saved_at_n < 32):
            return None
        state.transfers_saved_at_n = observed
        return save_in_background(self.speeds_url, state.transfers.persisted(), section=TRANSFER_SECTION)

    def _watchdog(self) -> None:
        self.dispatcher.watchdog(self.scheduler)

    def _ensure_predictor(self) -> None:
        if self.predictor is None:
            self.predictor = _load_predictor(self.oracle, self.model_url)
            self.feedback.model_loaded(self.predictor)

    def _maybe_reload(self) -> None:
        """A promoted (or rolled back) model is picked up here; the in-run learner starts over with it."""
        reload = getattr(self.predictor, "maybe_reload", None)
        if reload is not None and reload():
            self.feedback.model_loaded(self.predictor)
            self._log("model", None, reason="model-loaded")

    async def close(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        compat.remove_periodic_callback(scheduler, STEERING_PLUGIN)
        self.dispatcher.cancel_timer(scheduler)
        for save in (self._save_speeds, self._save_transfers):  # one after the other: the same file
            saving = save(force=True)
            if saving is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(saving, timeout=5)
        held = list(self.state.managed)
        self.state.ready.clear()
        self.state.managed.clear()
        compat.release_to_stock(scheduler, held, f"{STEERING_PLUGIN}-close-{self.wall_clock()}")

    # ----------------------------------------------------------------- events
    def _log(self, action: str, key: Hashable | None, **fields: Any) -> None:
        event = decision_event(self.state, action, key, fields, self.model_version, self.wall_clock())
        self.state.decisions.append(event)
        self.state.counts[action] += 1
        if self.scheduler is not None:
            self.scheduler.log_event(STEERING_TOPIC, event)

    def _fallback(self, where: str, exc: BaseException, keys: list) -> None:
        """Stock behaviour for ``keys``, one warning, a counter, an event."""
        state = self.state
        state.fallback_count += 1
        message = (
            f"daskflow steering failed in {where} ({type(exc).__name__}: {exc}); "
            "stock Dask scheduling for the affected tasks"
        )
        if not state.warned:
            state.warned = True
            logger.warning("%s", message, exc_info=exc)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        else:
            logger.debug("%s", message, exc_info=exc)
        try:
            for key in keys:
                state.managed.discard(key)
            if self.scheduler is not None:
                compat.release_to_stock(self.scheduler, keys, f"{STEERING_PLUGIN}-fallback-{self.wall_clock()}")
            self._log("fallback", None, reason="fallback", where=where, error=f"{type(exc).__name__}: {exc}", n_tasks=len(keys))
        except Exception:
            logger.debug("daskflow steering: releasing tasks after a failure failed", exc_info=True)

    # ------------------------------------------------------------------ graph
    def update_graph(self, scheduler: Any, *, keys: Any = (), tasks: Any = (), stimulus_id: str | None = None, **kwargs: Any) -> None:
        if self.mode == "off":
            return
        self.scheduler = scheduler
        state = self.state
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
            self._maybe_reload()
            informed = self._predict(new_tasks)
            if self.mode == "shadow":
                order = self._order(new_tasks, informed)
                for index, key in enumerate(order):
                    self._log("shadow", key, reason="priority", would_priority_index=index, run_id=self._run_id(key))
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
            thresholds = hold_thresholds(
                self.policy_config, state.latency.estimate_s,
                (self.dispatcher.facts_of(ws)["memory_limit_bytes"] for ws in compat.running_workers(scheduler)),
                state.pause_fraction,
            )
            for ts in new_tasks:
                # Client-set resource restrictions stay with Dask: held tasks never reach a worker's queue,
                # so work stealing could not move them to a worker with the resource that joins later.
                if compat.is_manageable(ts) and compat.allowed_workers(scheduler, ts) is None:
                    prediction = state.predictions[compat.key_of(ts)]
                    if places_late(planned_duration_s(prediction, state.correction),
                                   admission_peak_memory_bytes(prediction, state.correction), thresholds):
                        compat.hold(ts)
                        held.append(compat.key_of(ts))
            state.managed.update(held)
            top = order[:10]
            self._log("priority", None, reason="critical-path" if held else "critical-path-only",
                      n_tasks=len(new_tasks), n_held=len(held), top=[str(k) for k in top],
                      hold_threshold_s=float(thresholds.min_duration_s),
                      memory_floor_bytes=float(thresholds.min_peak_bytes) if thresholds.min_peak_bytes != float("inf") else None,
                      run_id=self._run_id(top[0]) if top else None)
            self.dispatcher.request(scheduler)
        except Exception as exc:  # noqa: BLE001 - stock behaviour for this batch
            for ts in new_tasks:
                if compat.is_held(ts):
                    compat.unpin(ts)
            self._fallback("update_graph", exc, held)

    def _predict(self, new_tasks: list) -> bool:
        """One batched prediction, stored in the state; True when it says more than defaults."""
        return predict_batch(self.predictor, new_tasks, self.state.predictions, self.max_predictions, self.model_version)

    def _order(self, new_tasks: list, informed: bool) -> list:
        return order_batch(new_tasks, self.state.predictions, self.state.correction, informed)

    def _run_id(self, key: Hashable) -> str | None:
        prediction = self.state.predictions.get(key)
        return prediction.run_id if prediction is not None else None

    # ------------------------------------------------------------ transitions
    def transition(self, key: Hashable, start: str, finish: str, *args: Any, stimulus_id: str | None = None, **kwargs: Any) -> None:
        if self.mode == "off":
            return
        state = self.state
        try:
            if finish == "no-worker":
                if key in state.managed:
                    ts = compat.task_state(self.scheduler, key)
                    if not compat.is_held(ts):  # its worker vanished: place it again
                        compat.hold(ts)
                    heapq.heappush(state.ready, (compat.priority(ts), next(state.seq), key))
                    self.dispatcher.request(self.scheduler)
            elif start == "processing":
                sent_at = state.dispatched_at.pop(key, None)
                worker = kwargs.get("worker")
                if worker is not None:
                    state.last_finish_at[worker] = self.clock()
                    prediction = state.predictions.get(key)
                    if sent_at is not None and prediction is not None:  # its memory may still show in the reading
                        state.memory_baseline.task_finished(worker, sent_at, state.last_finish_at[worker],
                                                            admission_peak_memory_bytes(prediction, state.correction))
                probe = state.probe_sent_wall.pop(key, None)
                if finish == "memory":
                    self.feedback.finished(self.scheduler, key, kwargs)
                    metadata = kwargs.get("metadata")
                    if metadata and TRANSFER_METADATA_KEY in metadata:  # a task's own reads of stored data
                        self.dispatcher.observe_transfers(worker, metadata[TRANSFER_METADATA_KEY])
                        self._save_transfers()
                    if probe is not None:
                        self.feedback.measure_latency(self.scheduler, probe, kwargs)
                if state.ready:
                    self.dispatcher.request(self.scheduler)
                if finish in ("released", "waiting") and key in state.managed:
                    ts = compat.task_state(self.scheduler, key)
                    if ts is not None:
                        compat.hold(ts)
            elif finish == "processing":
                if self.mode == "shadow":
                    self.dispatcher.shadow_place(self.scheduler, key)
            elif finish == "forgotten":
                state.clear_task(key)
        except Exception as exc:  # noqa: BLE001
            self._fallback("transition", exc, list(state.managed))
            state.ready.clear()

    # ---------------------------------------------------------------- workers
    def add_worker(self, scheduler: Any, worker: str) -> None:
        self.state.facts.pop(worker, None)
        if self.mode == "steer" and self.state.ready:
            self.dispatcher.request(self.scheduler)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Un-pin tasks that were pinned to the dead worker and place them again."""
        if self.mode != "steer":
            return
        state = self.state
        state.forget_worker(worker)
        try:
            rescued = 0
            for ts in compat.unrunnable_tasks(scheduler):
                key = compat.key_of(ts)
                if key in state.managed and worker in compat.pinned_to(ts):
                    compat.hold(ts)
                    heapq.heappush(state.ready, (compat.priority(ts), next(state.seq), key))
                    rescued += 1
            if rescued:
                self._log("release", None, worker=worker, reason="worker-removed", n_tasks=rescued)
            self.dispatcher.request(self.scheduler)
        except Exception as exc:  # noqa: BLE001
            self._fallback("remove_worker", exc, list(state.managed))
            state.ready.clear()

    # -------------------------------------------------------------- reporting
    def summary(self) -> dict[str, Any]:
        """Counts of decisions, fallbacks, prediction error and drifted categories so far."""
        return summary_of(self.state, self.mode, self.model_version)

    @property
    def model_events(self) -> list[dict[str, Any]]:
        """Drift alarms and model loads of this plugin, oldest first (the model page)."""
        return list(self.state.model_events)


def install(scheduler: Any) -> None:
    """Add the steering plugin to ``scheduler`` (preload entry point; idempotent).

    Does nothing when ``daskflow.steering.mode`` is ``off``.
    """
    from daskflow import config

    if config.get("steering.mode") == "off" or compat.has_plugin(scheduler, STEERING_PLUGIN):
        return
    scheduler.add_plugin(SteeringPlugin(scheduler), name=STEERING_PLUGIN)


__all__ = ["EVENT_TOPIC", "PLUGIN_NAME", "SteeringPlugin", "TaskPrediction", "install", "policy_config_from_settings"]
