"""What the steering adapter calls per finished task and per plan: online correction + drift, in one object.

Design note
-----------
The served model (:class:`~daskflow.learning.predictor.Predictor`) is fixed
for a run; two things learn *within* the run:

* :class:`~daskflow.learning.online.OnlineState` - per category, the
  shrunk mean log ratio of actual to predicted of the tasks already finished
  (Lotaru-style; the prior strength per category comes from the manifest's
  ``composite.online_priors``);
* :class:`~daskflow.learning.drift.DriftMonitor` - per category, a CUSUM of
  the same log ratios against the model's held-out error
  (``composite.drift_baselines``). A category that alarms is *demoted*: from
  its change point on it is served by the tasks of this run since then
  (online correction with ``since`` = change point and a weak prior,
  :attr:`CorrectorConfig.drifted_prior_observations`), until a retrained model
  is promoted (:meth:`OnlineCorrector.reset`).

:class:`OnlineCorrector` holds one of each per target (``duration``,
``peak_memory``) and answers two calls, both pure (time is an argument):

* ``observe(category, predicted, actual, now, target=...)`` - ``predicted``
  is the *uncorrected* prediction the predictor served (p50), ``actual`` what
  the task cost; returns the drift event (a dict for ``log_event`` and the
  registry's event log) when this observation raised an alarm, else None;
* ``correct(categories, predicted, now, target=...)`` - the corrected p50
  array for tasks not yet run; ``correct_predictions(categories, predictions,
  now)`` does both targets of a :class:`Predictions`, with an *adaptive* p90:
  the residuals of the corrected predictions of the run's finished tasks
  (``log(actual / corrected)``) give the run's own spread, whose conformal
  upper quantile is shrunk toward the model's calibrated ``log(p90 / p50)``
  with :attr:`CorrectorConfig.spread_prior_rows` pseudo-rows (the same rule as
  :func:`~daskflow.learning.online.simulate_online_quantiles`, which the
  accuracy benchmark measured: p90 coverage 0.90 / 0.93 on the traces).

**Online selection** (:mod:`~daskflow.learning.online_selection`): per target
and category, every finished task also scores the candidates ``corrected``
(the p50 times the factor above), ``served`` (the p50 as served) and ``mean``
(the category's training mean from the manifest) as they stood before it
finished; once enough tasks have finished, the category is served by the one
with the lowest running error, the mean unless another is clearly better
(a margin, a paired sign test, hysteresis against flip-flops). A drift alarm
clears the category's evidence: from then on it is served by the run's tasks
since the change point (``corrected`` of a drifted category) until the tasks
after the change say the mean or the served p50 is clearly better (a false
alarm on a wide category). Two views of
the result: :meth:`OnlineCorrector.correct` is exact per task (``mean``: the
mean itself; any other choice ``choice ** w * mean ** (1 - w)`` with ``w`` =
:meth:`OnlineSelection.blend_weight`: its sign evidence against the mean, or
the hedge of a category whose mean choice an alarm cleared); :meth:`OnlineCorrector.factor` is the per-category factor of
the served p50 the policy plans with (``mean``: the mean over the geometric
mean of the served p50s of the category's finished tasks - exact when the
served p50 is the same for every task of the category, as for mean-served
categories).

It replaced the steering plugin's former ``_calibrate`` EWMA (which corrected only
``quality == "model"`` rows; this corrects any source - a mean is off for a
new instance just as a model is). No ``distributed`` import, no clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sortedcontainers import SortedList

from daskflow.learning.drift import Baseline, DriftConfig, DriftMonitor
from daskflow.learning.online import OnlineConfig, OnlineState
from daskflow.learning.online_selection import (
    CORRECTED,
    MEAN,
    SERVED,
    OnlineSelection,
    OnlineSelectionConfig,
)

TARGETS = ("duration", "peak_memory")
_NOT_DRIFTED = object()


@dataclass(frozen=True)
class CorrectorConfig:
    """Tunables (:func:`corrector_config_from_settings` reads them from ``daskflow.steering.online.*``)."""

    online: OnlineConfig = field(default_factory=OnlineConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    drifted_prior_observations: float = 0.5  # after an alarm: the run's own tasks dominate after one or two
    max_events: int = 1000  # drift events kept in memory (the adapter also logs each one)
    spread_prior_rows: float = 10.0  # pseudo-rows of the model's spread in the run's adaptive p90
    upper: float = 0.9  # the quantile served as p90
    max_residuals: int = 256  # per category, the most recent residuals of corrected predictions
    selection: OnlineSelectionConfig = field(default_factory=OnlineSelectionConfig)  # online choice among corrected / served / mean
    clip_sigmas: float = 2.5  # before a drift alarm one task's log ratio counts at most this many of its category's baseline sigmas


def corrector_config_from_settings() -> CorrectorConfig:
    """:class:`CorrectorConfig` from ``daskflow.steering.online.*`` and ``daskflow.models.drift.*`` (defaults in ``daskflow.yaml``)."""
    from dask.utils import parse_bytes, parse_timedelta

    from daskflow import config
    from daskflow.learning.drift import drift_config_from_settings

    def online(name: str) -> Any:
        return config.get(f"steering.online.{name}")

    def selection(name: str) -> Any:
        return config.get(f"steering.online.selection.{name}")

    half_life = online("half-life")
    return CorrectorConfig(
        online=OnlineConfig(
            prior_observations=float(online("prior-observations")),
            half_life_s=math.inf if half_life is None else float(parse_timedelta(half_life)),
            max_ratio=float(online("max-ratio")), max_observations=int(online("max-observations")),
        ),
        drift=drift_config_from_settings(),
        drifted_prior_observations=float(online("drifted-prior-observations")),
        max_events=int(online("max-events")), spread_prior_rows=float(online("spread-prior-rows")),
        upper=float(online("upper")), max_residuals=int(online("max-residuals")),
        clip_sigmas=float(online("clip-sigmas")),
        selection=OnlineSelectionConfig(enabled=bool(selection("enabled")), min_tasks=int(selection("min-tasks")),
                                        margin=float(selection("margin")), significance=float(selection("significance")),
                                        window=int(selection("window")), decide_every=int(selection("decide-every")),
                                        hedge=bool(selection("hedge")), shrink=bool(selection("shrink")),
                                        early_shrink=bool(selection("early-shrink")),
                                        duration_resolution_s=_quantity(selection("duration-resolution"), parse_timedelta, 1e-3),
                                        memory_resolution_bytes=_quantity(selection("memory-resolution"), parse_bytes, float(2**16))),
    )


def _quantity(value: Any, parse: Any, default: float) -> float:
    """A duration or byte size from the config (``1ms``, ``64KiB``, a number, 0 or null: ``default`` for null)."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    return float(parse(value))


@dataclass
class OnlineCorrector:
    """Online correction and drift detection for one served model (one per steering plugin).

    >>> corrector = OnlineCorrector()
    >>> for t in range(8):
    ...     _ = corrector.observe("load", predicted=1.0, actual=2.0, now=float(t))
    >>> round(float(corrector.correct(["load"], np.array([1.0]), now=8.0)[0]), 2)   # 8 tasks twice as long
    1.74
    """

    config: CorrectorConfig = field(default_factory=CorrectorConfig)
    model_version: str | None = None
    online: dict[str, OnlineState] = field(default_factory=dict)  # target -> per-category observations
    drift: dict[str, DriftMonitor] = field(default_factory=dict)  # target -> per-category CUSUM
    events: deque[dict[str, Any]] = field(default_factory=deque)  # drift events, newest last (bounded)
    residuals: dict[str, dict[str, deque[float]]] = field(default_factory=dict)  # target -> category -> log(actual/served estimate)
    selection: dict[str, OnlineSelection] = field(default_factory=dict)  # target -> per-category online choice
    means: dict[str, dict[str, float]] = field(default_factory=dict)  # target -> category -> training mean (the manifest's)
    # (target, category) -> [sum of log served p50, count] of the finished tasks (the "mean" choice as a factor)
    served_logs: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # (target, category) -> (factor, replacement or None, in-run correction, log weight of the corrected estimate
    # against the replacement); valid until the category's next observation or alarm (only when weights do not decay)
    cached: dict[tuple[str, str], tuple[float, float | None, float, float, float]] = field(default_factory=dict)
    # (target, category) -> (residuals, their conformal upper quantile); valid until the category's next observation
    cached_upper: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    # (target, category) -> the same residuals kept sorted (the upper quantile per finished task without a sort)
    sorted_residuals: dict[tuple[str, str], SortedList] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for target in TARGETS:
            self.online.setdefault(target, OnlineState(self.config.online))
            self.drift.setdefault(target, DriftMonitor(self.config.drift))
            self.selection.setdefault(target, self._new_selection(target))
            self.means.setdefault(target, {})
        self.events = deque(self.events, maxlen=self.config.max_events)

    @classmethod
    def from_predictor(cls, predictor: Any, config: CorrectorConfig | None = None) -> OnlineCorrector:
        """A corrector primed with the served model's online priors, drift baselines and training means (defaults otherwise)."""
        corrector = cls(config or CorrectorConfig())
        corrector.reset(predictor)
        return corrector

    def reset(self, predictor: Any) -> None:
        """A new model is served: forget observations, drift states and choices; take its priors, baselines and means."""
        composite = getattr(predictor, "composite", None)
        self.model_version = getattr(predictor, "model_version", None)
        means = training_means(predictor)
        for target in TARGETS:
            priors = dict(composite.online_priors.get(target, {})) if composite is not None else {}
            baselines: dict[str, Baseline] = dict(composite.drift_baselines.get(target, {})) if composite is not None else {}
            bounds = {category: self.config.clip_sigmas * max(baseline.sigma, self.config.drift.min_sigma)
                      for category, baseline in baselines.items() if math.isfinite(baseline.sigma)}
            self.online[target] = OnlineState(self.config.online, priors=priors, bounds=bounds)
            self.drift[target] = DriftMonitor(self.config.drift, baselines)
            self.residuals[target] = {}
            self.selection[target] = self._new_selection(target)
            self.means[target] = means.get(target, {})
        self.served_logs.clear()
        self.cached.clear()
        self.cached_upper.clear()
        self.sorted_residuals.clear()

    def _new_selection(self, target: str) -> OnlineSelection:
        """The online selection of one target, with that target's measurement resolution."""
        config = self.config.selection
        resolution = config.duration_resolution_s if target == "duration" else config.memory_resolution_bytes
        return OnlineSelection(config, resolution=max(0.0, float(resolution)))

    # ---------------------------------------------------------------- per finished task
    def observe(self, category: str, predicted: float, actual: float, now: float, target: str = "duration") -> dict[str, Any] | None:
        """Feed one finished task (``predicted``: the uncorrected p50 served for it); the drift event if it raised one."""
        if target not in self.online:
            raise ValueError(f"OnlineCorrector.observe: target {target!r} is not one of {list(TARGETS)}")
        if not (predicted > 0 and actual > 0 and math.isfinite(predicted) and math.isfinite(actual)):
            return None
        plan = self._plan(category, now, target)
        correction = plan[2]
        planned = _estimate(plan, predicted)  # what was planned for it
        corrected = predicted * correction
        self.selection[target].record(category, {CORRECTED: corrected, SERVED: predicted, MEAN: self.means[target].get(category)}, actual)
        logs = self.served_logs.get((target, category))
        if logs is None:
            logs = self.served_logs[(target, category)] = [0.0, 0]
        logs[0] += math.log(predicted)
        logs[1] += 1
        own = self.residuals.setdefault(target, {}).get(category)
        if own is None:
            own = self.residuals[target][category] = deque(maxlen=self.config.max_residuals)
        residual = math.log(actual / planned) if planned > 0 else 0.0
        ordered = self.sorted_residuals.get((target, category))
        if ordered is None or len(ordered) != len(own):  # new, or the deque changed behind our back
            ordered = self.sorted_residuals[(target, category)] = SortedList(own)
        if own.maxlen is not None and len(own) == own.maxlen:
            ordered.remove(own[0])  # evicted by the append below
        own.append(residual)
        ordered.add(residual)
        self.online[target].observe(category, predicted, actual, now)
        self.cached.pop((target, category), None)
        self.cached_upper.pop((target, category), None)
        event = self.drift[target].observe(category, predicted, actual, now, self.model_version)
        if event is not None:
            event = {**event, "target": target}
            self.events.append(event)
            # what the candidates did before the change says nothing about after it: from the alarm on the
            # category is served by the run's tasks since the change until new evidence says otherwise
            self.selection[target].forget(category)
            self.cached.pop((target, category), None)
        return event

    # ---------------------------------------------------------------- per plan
    def factors(self, categories: Sequence[str], now: float, target: str = "duration") -> np.ndarray:
        """The per-category factor of every row's served p50 (what the policy plans with; see :meth:`factor`)."""
        cache = {category: self.factor(category, now, target) for category in set(categories)}
        return np.fromiter((cache[c] for c in categories), dtype="float64", count=len(categories))

    def factor(self, category: str, now: float, target: str = "duration") -> float:
        """One category's factor of the served p50 (cached until its next observation when weights do not decay).

        Drifted: from the run's tasks since the change; else by the online choice: ``corrected`` - the
        in-run correction, ``served`` - 1, ``mean`` - the training mean over the geometric mean of the
        served p50s of the category's finished tasks.
        """
        return self._plan(category, now, target)[0]

    def choice(self, category: str, target: str = "duration") -> str:
        """What serves the category now: the online choice (``corrected``, ``served``, ``mean``).

        ``corrected`` of a drifted category is the correction from the run's tasks since the change.
        """
        return self.selection[target].choice(category)

    def _plan(self, category: str, now: float, target: str) -> tuple[float, float | None, float, float, float]:
        """``(factor, replacement, correction, weight, base)``: the served p50 times ``factor``, or ``replacement``
        when not None (the mean) - blended as ``(p50 * base) ** weight * replacement ** (1 - weight)`` when
        ``weight`` > 0 (:meth:`OnlineSelection.blend_weight` below 1); ``correction``: the in-run factor (the
        ``corrected`` candidate); ``base``: the chosen candidate's factor of the p50 (1 for ``served``)."""
        timeless = not math.isfinite(self.config.online.half_life_s)
        key = (target, category)
        if timeless and key in self.cached:
            return self.cached[key]
        choice = self.choice(category, target)
        correction = self._correction(category, now, target)
        value: tuple[float, float | None, float, float, float]
        mean = self.means[target].get(category)
        if choice == MEAN and mean:
            value = (self._mean_factor(key, mean), float(mean), correction, 0.0, 1.0)
        else:
            base = 1.0 if choice == SERVED else correction
            weight = self.selection[target].blend_weight(category) if mean else 1.0
            if weight < 1.0:  # the geometric blend with the mean (the factor view: the mean's part as for a mean choice)
                value = (base ** weight * self._mean_factor(key, mean) ** (1.0 - weight), float(mean), correction, weight, base)
            else:
                value = (base, None, correction, 1.0, base)
        if timeless:
            self.cached[key] = value
        return value

    def _mean_factor(self, key: tuple[str, str], mean: float) -> float:
        """The training mean as a factor of the served p50: over the geometric mean of the category's served p50s."""
        logs = self.served_logs.get(key)
        return mean / math.exp(logs[0] / logs[1]) if logs and logs[1] else 1.0

    def _correction(self, category: str, now: float, target: str) -> float:
        """The in-run correction factor (drifted categories: from the run's tasks since the change)."""
        state = self.online[target]
        changed_at = self.drift[target].drifted().get(category, _NOT_DRIFTED) if category in self.drift[target].states else _NOT_DRIFTED
        if changed_at is not _NOT_DRIFTED:
            weak = replace(state.config, prior_observations=self.config.drifted_prior_observations)
            return _factor(state, category, now, changed_at, weak)
        return state.factor(category, now)

    def correct_one(self, category: str, predicted: float, now: float, target: str = "duration") -> float:
        """Scalar :meth:`correct` for one task (the adapter's ``_planned_s``): a dict lookup when cached."""
        return _estimate(self._plan(category, now, target), float(predicted))

    def correct(self, categories: Sequence[str], predicted: np.ndarray, now: float, target: str = "duration") -> np.ndarray:
        """Estimates for tasks not yet run: per category the online choice (exact: a ``mean`` choice serves the mean)."""
        plans = {category: self._plan(category, now, target) for category in set(categories)}
        out = np.asarray(predicted, dtype="float64").copy()
        for i, category in enumerate(categories):
            out[i] = _estimate(plans[category], out[i])
        return out

    def correct_predictions(self, categories: Sequence[str], predictions: Any, now: float) -> Any:
        """A corrected copy of a :class:`~daskflow.learning.predictor.Predictions` (p50 and p90 of both targets)."""
        from daskflow.learning.predictor import Predictions

        duration = self.correct(categories, predictions.duration_s, now, "duration")
        memory = self.correct(categories, predictions.peak_memory_bytes, now, "peak_memory")
        return Predictions(
            duration, memory, predictions.quality.copy(), predictions.memory_quality.copy(), predictions.model_version,
            self.upper(categories, duration, predictions.p90_duration_s / np.where(predictions.duration_s > 0, predictions.duration_s, 1.0), "duration"),
            self.upper(categories, memory, predictions.p90_peak_memory_bytes / np.where(predictions.peak_memory_bytes > 0, predictions.peak_memory_bytes, 1.0), "peak_memory"),
            predictions.source.copy(), predictions.memory_source.copy(),
        )

    def upper(self, categories: Sequence[str], corrected: np.ndarray, prior_ratio: np.ndarray, target: str = "duration") -> np.ndarray:
        """Adaptive p90 of served estimates: the run's residual quantile shrunk toward the model's ``p90 / p50`` (``prior_ratio``)."""
        corrected = np.asarray(corrected, dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            prior = np.where(np.asarray(prior_ratio, dtype="float64") > 0, np.log(prior_ratio), 0.0)
        prior = np.where(np.isfinite(prior), prior, 0.0)
        k = self.config.spread_prior_rows
        own_q = {category: self.upper_stats(category, target) for category in set(categories)}
        n = np.fromiter((own_q[c][0] for c in categories), dtype="float64", count=len(categories))
        q = np.fromiter((own_q[c][1] for c in categories), dtype="float64", count=len(categories))
        log_upper = (n * q + k * prior) / (n + k)
        return corrected * np.exp(np.maximum(log_upper, 0.0))

    def upper_stats(self, category: str, target: str = "duration") -> tuple[int, float]:
        """``(n, q)``: how many residuals of corrected predictions the run has for a category, and their upper quantile."""
        from daskflow.learning.quantiles import conformal_quantile, sorted_conformal_quantile

        cached = self.cached_upper.get((target, category))
        if cached is None:
            own = self.residuals.get(target, {}).get(category)
            ordered = self.sorted_residuals.get((target, category))
            if own and ordered is not None and len(ordered) == len(own):  # kept sorted as tasks finish: O(1) here
                cached = (len(own), sorted_conformal_quantile(ordered, self.config.upper))
            else:
                cached = (len(own), conformal_quantile(np.asarray(own), self.config.upper)) if own else (0, 0.0)
            self.cached_upper[(target, category)] = cached
        return cached

    def upper_one(self, category: str, corrected: float, prior_ratio: float, target: str = "duration") -> float:
        """Scalar :meth:`upper` for one task (``prior_ratio``: the model's ``p90 / p50`` for it): cached per category."""
        prior = math.log(prior_ratio) if prior_ratio > 0 and math.isfinite(prior_ratio) else 0.0
        n, q = self.upper_stats(category, target)
        k = self.config.spread_prior_rows
        return float(corrected) * math.exp(max((n * q + k * prior) / (n + k), 0.0))

    def drifted(self, target: str = "duration") -> dict[str, float | None]:
        """Demoted categories of ``target`` -> their change point."""
        return self.drift[target].drifted()


def _estimate(plan: tuple[float, float | None, float, float, float], predicted: float) -> float:
    """One task's estimate from its category's :meth:`OnlineCorrector._plan` and its served p50."""
    factor, replacement, _, weight, base = plan
    if replacement is None:
        return float(predicted) * factor
    if weight <= 0.0:
        return float(replacement)
    return float((predicted * base) ** weight * replacement ** (1.0 - weight))


def training_means(predictor: Any) -> dict[str, dict[str, float]]:
    """Target -> category -> the training mean in the served manifest (``baseline.category_means``); ``{}`` without one."""
    manifest = getattr(predictor, "manifest", None) or {}
    entries = ((manifest.get("baseline") or {}).get("category_means") or {}) if isinstance(manifest, dict) else {}
    out: dict[str, dict[str, float]] = {"duration": {}, "peak_memory": {}}
    for category, entry in entries.items():
        if not isinstance(entry, dict):
            continue
        for target, column in (("duration", "duration_s"), ("peak_memory", "peak_memory_bytes")):
            value = entry.get(column)
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                out[target][str(category)] = float(value)
    return out


def _factor(state: OnlineState, category: str, now: float, since: float | None, config: OnlineConfig) -> float:
    from daskflow.learning.online import log_ratio

    r, _ = log_ratio(state.observations.get(category, ()), now, config, since)
    return math.exp(r)
