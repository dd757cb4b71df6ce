"""What a finished task teaches the steering plugin: speed, latency, running means, in-run correction, drift.

Design note
-----------
The steering plugin's ``transition`` hook hands every ``processing → memory``
task to :meth:`TaskFeedback.finished`. From its measured compute time and
peak memory (the recorder's worker plugin puts the peak into the task's
metadata) it feeds, exactly once per task:

* the worker's learned speed (:class:`~scheduler_plugins.policy.SpeedEstimates`)
  and the category's actual/planned spread (stragglers);
* the predictor's per-category running means (``Predictor.observe``; the
  recorder never observes, so this is the one ``observe`` per task);
* the in-run learner, :class:`~daskflow.learning.corrector.OnlineCorrector`
  (:attr:`SteeringState.corrector`): the *uncorrected* p50 the predictor
  served for the task against what it cost (duration on speed-1 seconds: the
  worker's own speed taken out; peak memory as measured), for predictions
  from a model or a mean (a default for a category never seen says nothing
  about the model); values below the training data's noise floors
  (:class:`~daskflow.learning.cleaning.CleaningConfig`: 1 ms, 64 KiB) count
  as the floor, so allocator noise on tiny tasks is never "drift". After each observation the category's factors and p90
  spread are copied into :attr:`SteeringState.correction`, the plain
  :class:`~scheduler_plugins.policy.CategoryCorrection` the policy plans
  with (not-yet-run tasks of the category are planned with the new factor at
  the next round / batch);
* drift: when the corrector's :class:`~daskflow.learning.drift.DriftMonitor`
  alarms, the category is demoted (planned from this run's own tasks since
  the change point from then on, whatever the source of its prediction), a
  ``drift`` decision event is logged, the event is kept in
  :attr:`SteeringState.model_events` (the model page) and appended to the
  models directory's event log (``events.jsonl`` of
  :class:`~daskflow.learning.registry.ModelRegistry``) off the event loop.

:meth:`TaskFeedback.model_loaded` resets the learner when a new model is
served (promotion, rollback): nothing learned about the old model applies.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Hashable
from typing import Any

from daskflow.contracts import METADATA_KEY, TRANSFER_METADATA_KEY
from daskflow.learning.cleaning import CleaningConfig
from daskflow.learning.corrector import CorrectorConfig, OnlineCorrector
from scheduler_plugins import compat
from scheduler_plugins.policy import PolicyConfig, TaskPrediction
from scheduler_plugins.policy.stragglers import OVERRUN_RATIO
from scheduler_plugins.sampling import sample_weight_of
from scheduler_plugins.speed_store import address_host
from scheduler_plugins.steering_state import SteeringState

logger = logging.getLogger(__name__)

__all__ = ["LEARNED_QUALITIES", "TaskFeedback", "peak_of"]

#: prediction qualities the in-run learner observes (a default knows nothing; the oracle is the truth)
LEARNED_QUALITIES = frozenset({"model", "prefix-mean"})
#: a finished task whose own reads of stored data took more than this share of its duration teaches no speed
MAX_READ_SHARE = 0.5


def peak_of(metadata: Any) -> float | None:
    """The measured peak memory of a task from its metadata (the recorder's worker plugin nests it)."""
    if not metadata:
        return None
    nested = metadata.get(METADATA_KEY)
    peak = nested.get("peak_memory_bytes") if isinstance(nested, dict) else metadata.get("peak_memory_bytes")
    return float(peak) if isinstance(peak, (int, float)) else None



def read_seconds(metadata: Any) -> float:
    """Seconds a finished task spent on its own reads of stored data (``[[host, bytes, seconds], ...]`` in its
    metadata: the test bed's replayed tasks; 0 for every other task)."""
    reads = metadata.get(TRANSFER_METADATA_KEY) if metadata else None
    if not isinstance(reads, (list, tuple)):
        return 0.0
    total = 0.0
    for read in reads[:64]:
        try:
            total += max(float(read[2]), 0.0)
        except (TypeError, ValueError, IndexError):
            continue
    return total if math.isfinite(total) else 0.0

class TaskFeedback:
    """Learning from finished tasks for one steering plugin (explicit references to its state and callbacks)."""

    state: SteeringState
    config: PolicyConfig
    corrector_config: CorrectorConfig
    learn_speeds: bool

    def __init__(
        self,
        state: SteeringState,
        config: PolicyConfig,
        *,
        corrector_config: CorrectorConfig,
        predictor: Callable[[], Any],
        planned_s: Callable[[TaskPrediction], float],
        log: Callable[..., None],
        wall_clock: Callable[[], float],
        learn_speeds: bool,
        save_speeds: Callable[[], Any],
        observe_host: Callable[[str, str, float, float, float], None] | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.corrector_config = corrector_config
        self.predictor = predictor
        self.planned_s = planned_s
        self.log = log
        self.wall_clock = wall_clock
        self.learn_speeds = learn_speeds
        self.save_speeds = save_speeds
        self.observe_host = observe_host  # (host, category, duration, planned, speed before): is the host slowing?
        self.floors = CleaningConfig()  # the training data's noise floors (allocator / timer noise is not drift)
        self._registry_lock = threading.Lock()
        self._median = 1.0  # median learned worker speed, and the speed_observed count it was computed at
        self._median_at: int | None = None  # one events.jsonl rewrite at a time (executor threads)
        state.corrector = OnlineCorrector(corrector_config)
        state.correction.spread_prior_rows = corrector_config.spread_prior_rows

    # ------------------------------------------------------------------ model
    def model_loaded(self, predictor: Any) -> None:
        """A (new) model is served: the learner takes its priors and drift baselines; the plan forgets the old factors."""
        state = self.state
        state.corrector.reset(predictor)
        state.correction.clear()
        state.overrunning.clear()  # read against the old model's plans
        state.speeds.forget_served()  # (the host levels' fit, against the old model's predictions)
        version = getattr(predictor, "model_version", None)
        state.model_events.append({"event": "model-loaded", "at": self.wall_clock(), "model_version": version})

    # ------------------------------------------------------------- finished task
    def finished(self, scheduler: Any, key: Hashable, info: dict) -> None:
        """Learn from one task that finished (``processing → memory``); see the module note."""
        state = self.state
        prediction = state.predictions.get(key)
        if prediction is None:
            return
        if sample_weight_of(info.get("metadata")) == 0.0:  # a tiny task the worker skipped: 1 in `every` is the sample
            state.counts["sampled_out"] += 1
            return
        duration_s = compat.startstops_compute_s(info.get("startstops"))
        if duration_s is None:
            return
        worker = info.get("worker")
        speed = 1.0
        # the task's own reads of stored data ran inside its time, but placement prices them apart
        # (data seconds beside planned / speed): a long read over a slow link is no slow worker
        reads_s = read_seconds(info.get("metadata"))
        compute_s = max(duration_s - reads_s, 0.1 * duration_s)
        if worker is not None and self.learn_speeds:
            speed = self._observe_speed(str(worker), prediction, compute_s,
                                        compat.startstops_compute_start(info.get("startstops")),
                                        learn=reads_s <= MAX_READ_SHARE * duration_s)
        category = prediction.category
        if (category in state.overrunning and prediction.quality != "default"
                and compute_s * speed < OVERRUN_RATIO * self.planned_s(prediction)):
            state.overrunning.discard(category)  # its plan caught up (the in-run correction): its stragglers are its own again
        peak = peak_of(info.get("metadata"))
        self._observe_means(prediction.category, duration_s, peak)
        self._observe_corrector(key, prediction, duration_s * speed, peak)
        counts = state.counts
        counts["observed"] += 1
        counts["abs_error_ms"] += int(abs(duration_s - prediction.duration_s) * 1000)

    def measure_latency(self, scheduler: Any, probe: tuple[float, float], info: dict) -> None:
        """One dispatch-latency sample from a probe ``(sent to an idle thread, next task sent to that worker)``.

        No sample when the task started only after another task had been sent to its worker: the worker
        may have run that one first (it picks by priority), and the "latency" would be that task's runtime.
        """
        started = compat.startstops_compute_start(info.get("startstops"))
        sent_wall, contended_at = probe
        if started is None or info.get("worker") is None:
            return
        if started >= contended_at:
            self.state.counts["latency_probes_dropped"] += 1
            return
        # ``startstops`` already arrive on the scheduler's clock (the worker adds its measured offset,
        # ``Worker.scheduler_delay``); ``WorkerState.time_delay`` is that offset *plus* the last heartbeat's
        # transit, which under load is hundreds of ms: adding it read a slow heartbeat as dispatch latency,
        # grew the lookahead and bound a whole bag of mispredicted tasks to workers at once.
        self.state.latency.observe(sent_wall, started, self.config)

    def _observe_speed(self, worker: str, prediction: TaskPrediction, duration_s: float,
                       started_at: float | None = None, learn: bool = True) -> float:
        """Learn the worker's speed from one finished task; its speed before it, relative to the median (for the corrector).

        Without ``learn`` (a task that spent most of its time on its own reads: :data:`MAX_READ_SHARE`) only the
        category's spread learns from it: its compute time is a small difference of two large ones, and the
        plan (a model trained on durations that held reads of their own) is no speed-1 compute time for it. Such
        tasks read as workers ×10 fast (the floor of a tenth of the duration) on the montage traces.
        """
        state = self.state
        facts = state.facts.get(worker) or {}
        host = str(facts.get("host") or address_host(worker))
        if facts.get("speed_declared"):
            return float(facts.get("speed") or 1.0)
        before = state.speeds.speed(worker, host)
        if prediction.quality == "default":  # a guess for a category never seen says nothing about the worker
            return before / self._median_speed()
        planned = self.planned_s(prediction)
        if learn and self.observe_host is not None:
            self.observe_host(host, prediction.category, duration_s, planned, before)
        state.spread.observe(prediction.category, duration_s * before, planned)
        if not learn:
            state.counts["speed_read_bound"] += 1
            return before / self._median_speed()
        # (the wall clock, as the slow regime's start; the served prediction, fixed while the plan is corrected:
        # what the two-way fit of host levels compares across hosts, category by category)
        if state.speeds.observe(worker, host, duration_s, planned, started_at,
                                category=prediction.category, served_s=prediction.duration_s):
            state.counts["speed_observed"] += 1
            self.save_speeds()
        return before / self._median_speed()

    def _median_speed(self) -> float:
        """The median learned speed of the known workers (recomputed at every speed observation while the
        speeds are young, then every 16).

        The in-run learner sees durations relative to it: a category whose cost doubles on *every*
        worker first looks like slower workers to the speed learner, and would otherwise be hidden
        from drift detection by the speed taken out of each duration.
        """
        state = self.state
        observed = state.counts.get("speed_observed", 0)
        # While the speeds are young (fewer observations than a few per worker) every worker's first tasks move
        # its speed a lot: a median cached from before them would leave a category's misprediction in the
        # speed taken out of each duration, and the corrector would see it only 16 tasks later.
        young = observed < 2 * len(state.facts) + 16
        if self._median_at is not None and observed - self._median_at < (1 if young else 16):
            return self._median
        self._median = state.median_learned_speed()
        self._median_at = observed
        return self._median

    def _observe_means(self, category: str, duration_s: float, peak: float | None) -> None:
        """Feed the predictor's per-category running means (the recorder does not: one observe per task)."""
        observe = getattr(self.predictor(), "observe", None)
        if observe is not None:
            observe(category, duration_s, peak)

    def _observe_corrector(self, key: Hashable, prediction: TaskPrediction, duration_s: float, peak: float | None) -> None:
        """Feed the in-run learner with the served (uncorrected) p50s; refresh the plan's factors; handle drift."""
        state = self.state
        category = prediction.category
        corrector = state.corrector
        now = self.wall_clock()
        events = []
        floors = self.floors
        if prediction.quality in LEARNED_QUALITIES:  # timer noise below the floor: "tiny" both, not a ratio of noise
            events.append(corrector.observe(category, max(prediction.duration_s, floors.duration_floor_s),
                                            max(duration_s, floors.duration_floor_s), now, "duration"))
        memory_quality = prediction.memory_quality or prediction.quality
        if peak is not None and peak > 0 and prediction.peak_memory_bytes > 0 and memory_quality in LEARNED_QUALITIES:
            events.append(corrector.observe(category, max(prediction.peak_memory_bytes, floors.memory_floor_bytes),
                                            max(peak, floors.memory_floor_bytes), now, "peak_memory"))
        if not events:
            return
        correction = state.correction
        correction.duration[category] = corrector.factor(category, now, "duration")
        correction.peak_memory[category] = corrector.factor(category, now, "peak_memory")
        correction.memory_upper[category] = corrector.upper_stats(category, "peak_memory")
        for event in events:
            if event is not None:
                self._drifted(key, prediction, event)

    def _drifted(self, key: Hashable, prediction: TaskPrediction, event: dict[str, Any]) -> None:
        """A drift alarm: demote the category, log a decision event, keep it for the model page, append it to the registry."""
        state = self.state
        category = str(event.get("category") or prediction.category)
        target = str(event.get("target", "duration"))
        (state.correction.drifted if target == "duration" else state.correction.memory_drifted).add(category)
        state.counts["drift_detected"] += 1
        event = {**event, "run_id": prediction.run_id, "key": str(key), "served_by": "online"}
        state.model_events.append(event)
        self.log("drift", key, reason="drift", category=category, target=event.get("target"),
                 direction=event.get("direction"), shift=event.get("shift"), changed_at=event.get("changed_at"),
                 observed=event.get("observed"), planned_factor=round(float(state.correction.factor(category, target) or 1.0), 4))
        logger.info("daskflow steering: %s of category %r drifted (x%s, %s); planned from this run's tasks from now on",
                    event.get("target"), category, event.get("shift"), event.get("direction"))
        self._append_to_registry(event)

    def _append_to_registry(self, event: dict[str, Any]) -> Any:
        """Append the event to the models directory's ``events.jsonl`` in the loop's executor (never on the loop)."""
        url = getattr(self.predictor(), "url", None)
        if not url or getattr(self.predictor(), "model_version", None) == "oracle":
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # not on an event loop (pure tests): the event is still in model_events and the decisions
        future = loop.run_in_executor(None, self._append_locked, str(url), dict(event))
        future.add_done_callback(_log_append_failure)
        return future

    def _append_locked(self, url: str, event: dict[str, Any]) -> None:
        from daskflow.learning.registry import ModelRegistry

        with self._registry_lock:
            ModelRegistry(url).append_event(event)


def _log_append_failure(future: Any) -> None:
    exc = future.exception() if not future.cancelled() else None
    if exc is not None:
        logger.warning("daskflow steering: could not append a drift event to the model registry (%s); "
                       "it is still on the model page and in the decisions", exc)
