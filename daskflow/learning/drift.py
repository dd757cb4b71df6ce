"""Drift detection per category: a two-sided CUSUM on standardised log ratios of actual to predicted.

Design note
-----------
For every finished task the recorder knows what was predicted and what it
cost. Per category, ``z = log(actual / predicted)`` is compared with the
category's *baseline* error - its held-out mean ``mu0`` and robust spread
``sigma`` (from training, e.g. :class:`~daskflow.learning.quantiles.SpreadModel`
or :func:`baseline_from_residuals`) - as ``u = clip((z - mu0) / sigma, +-clip)``
and fed to a two-sided CUSUM (Page 1954)::

    S+ = max(0, S+ + u - kappa)        S- = max(0, S- - u - kappa)
    drift when S+ > h or S- > h

Defaults (:class:`DriftConfig`): ``kappa = 0.5`` (tuned to a shift of one
sigma), ``h = 8``. With Gaussian noise that gives an in-control average run
length of ~19,000 tasks per side (Siegmund's approximation; simulated with
Student-t(4) noise and sigma its sd: no alarm in 20,000 tasks) - no false
alarm in a run - and a ×2 change of cost (``log 2 = 0.69``, i.e. 1.4 sigma
at a sigma of 0.5, 3.5 sigma at 0.2) is detected after ~10 resp. ~3 tasks of
the category (simulated at sigma 0.5: 99.5 % within 20 tasks; at sigma 0.3
and below: all within 8). ``h = 7`` trades ~1 false alarm per 20,000 tasks
for ~1 task faster detection. ``clip = 3`` bounds what one outlier contributes (2.5), so a
single straggler cannot raise an alarm (and heavy-tailed noise raises none:
tested with Student-t noise); ``sigma`` must then be a standard deviation,
not a tail-blind MAD (:func:`baseline_from_residuals` takes the larger of the
two, with outliers beyond 5 MAD trimmed); ``sigma`` is floored at
``min_sigma = 0.15`` so a category the model predicts almost perfectly is not
alarmed by a 10 % wobble.

After an alarm the category is ``drifted``: the estimate for it should come
from the tasks of this run since the change point (the last time the alarming
side of the CUSUM was zero, :attr:`CategoryDrift.changed_at`), i.e.
:meth:`~daskflow.learning.online.OnlineState.correct` with ``since``, or the
run's median, until a retrained model is promoted. The CUSUM then restarts
around the new normal (the mean log ratio since the change point, kept as
:attr:`CategoryDrift.offset`), so a persisting change alarms once and a
further change alarms again. A rolling window of the last ``window`` log
ratios (with their times) holds what the change point and the new normal are
computed from.

Pure: time is an argument; state is one declared dataclass per category.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Direction = Literal["slower", "faster"]


@dataclass(frozen=True)
class DriftConfig:
    """Tunables (to be read from ``daskflow.models.drift.*`` by the plugin)."""

    kappa: float = 0.5  # CUSUM reference value, in sigmas (half the smallest shift worth detecting)
    threshold: float = 8.0  # h: alarm threshold, in sigmas
    clip: float = 3.0  # |u| above this is clipped: one outlier cannot raise an alarm
    settle: int = 20  # after an alarm, the new normal is the mean of up to this many post-change log ratios
    min_sigma: float = 0.15  # floor of the baseline's log-ratio spread
    default_sigma: float = 0.5  # a category without a baseline
    window: int = 50  # standardised ratios kept per category (for display)


def drift_config_from_settings() -> DriftConfig:
    """:class:`DriftConfig` from ``daskflow.models.drift.*`` (defaults in ``daskflow.yaml``)."""
    from daskflow import config

    return DriftConfig(
        kappa=float(config.get("models.drift.kappa")), threshold=float(config.get("models.drift.threshold")),
        clip=float(config.get("models.drift.clip")), settle=int(config.get("models.drift.settle")),
        min_sigma=float(config.get("models.drift.min-sigma")), default_sigma=float(config.get("models.drift.default-sigma")),
        window=int(config.get("models.drift.window")),
    )


@dataclass(frozen=True)
class Baseline:
    """The model's normal error for a category: mean and spread of log(actual / predicted)."""

    mean: float = 0.0
    sigma: float = 0.5


@dataclass
class CategoryDrift:
    """CUSUM state of one category."""

    upper: float = 0.0  # S+ (cost went up)
    lower: float = 0.0  # S- (cost went down)
    upper_zero_at: float | None = None  # last time S+ was 0 (the change point estimate)
    lower_zero_at: float | None = None
    observed: int = 0
    drifted: bool = False
    direction: Direction | None = None
    detected_at: float | None = None
    changed_at: float | None = None
    observed_at_detection: int | None = None
    offset: float = 0.0  # log shift absorbed by earlier alarms (the new normal after a change)
    settling: list[float] = field(default_factory=list)  # post-change log ratios the offset is the mean of
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=50))  # (at, log ratio)


def baseline_from_residuals(residuals: np.ndarray) -> Baseline:
    """Centre (median) and spread of held-out log residuals: max(1.4826 MAD, sd of the residuals within 5 MAD)."""
    values = np.asarray(residuals, dtype="float64")
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return Baseline()
    centre = float(np.median(values))
    mad = float(1.4826 * np.median(np.abs(values - centre)))
    inner = values[np.abs(values - centre) <= 5 * mad] if mad > 0 else values
    return Baseline(centre, max(mad, float(np.sqrt(np.mean((inner - centre) ** 2)))))


def update(state: CategoryDrift, predicted: float, actual: float, at: float, baseline: Baseline | None = None,
           config: DriftConfig | None = None) -> bool:
    """Feed one finished task; returns True when this observation raised the alarm (state is updated in place).

    >>> state = CategoryDrift()
    >>> any(update(state, 1.0, 2.0, float(t), Baseline(0.0, 0.2)) for t in range(20))
    True
    >>> state.direction, state.observed_at_detection
    ('slower', 4)
    """
    config = config or DriftConfig()
    baseline = baseline or Baseline(0.0, config.default_sigma)
    if not (predicted > 0 and actual > 0 and math.isfinite(predicted) and math.isfinite(actual)):
        return False
    sigma = max(baseline.sigma if math.isfinite(baseline.sigma) else config.default_sigma, config.min_sigma)
    z = math.log(actual / predicted)
    if state.drifted and len(state.settling) < config.settle:  # still learning the new normal
        state.settling.append(z)
        state.offset = float(np.mean(state.settling)) - baseline.mean
    u = (z - baseline.mean - state.offset) / sigma
    u = max(-config.clip, min(config.clip, u))
    state.observed += 1
    state.recent.append((at, z))
    if state.upper_zero_at is None:
        state.upper_zero_at = state.lower_zero_at = at
    state.upper = max(0.0, state.upper + u - config.kappa)
    state.lower = max(0.0, state.lower - u - config.kappa)
    if state.upper == 0.0:
        state.upper_zero_at = at
    if state.lower == 0.0:
        state.lower_zero_at = at
    side: Direction | None = "slower" if state.upper > config.threshold else "faster" if state.lower > config.threshold else None
    if side is None:
        return False
    state.drifted = True
    state.direction = side
    state.detected_at = at
    state.changed_at = state.upper_zero_at if side == "slower" else state.lower_zero_at
    state.observed_at_detection = state.observed
    # The new normal: the mean log ratio since the change point. Restart, so only a further change alarms.
    state.settling = [value for when, value in state.recent if when >= state.changed_at][-config.settle:]
    if state.settling:
        state.offset = float(np.mean(state.settling)) - baseline.mean
    state.upper = state.lower = 0.0
    state.upper_zero_at = state.lower_zero_at = at
    return True


@dataclass
class DriftMonitor:
    """Drift states of all categories of a model (one per plugin; reset when a new model is promoted)."""

    config: DriftConfig = field(default_factory=DriftConfig)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    states: dict[str, CategoryDrift] = field(default_factory=dict)

    def observe(self, category: str, predicted: float, actual: float, at: float,
                model_version: str | None = None) -> dict[str, Any] | None:
        """Feed one finished task; the drift event (a dict for the registry's event log) when it raised the alarm."""
        state = self.states.get(category)
        if state is None:
            state = self.states[category] = CategoryDrift(recent=deque(maxlen=self.config.window))
        baseline = self.baselines.get(category) or self.baselines.get("")  # "": the pooled baseline
        if not update(state, predicted, actual, at, baseline, self.config):
            return None
        return {
            "event": "drift", "at": at, "category": category, "direction": state.direction,
            "changed_at": state.changed_at, "observed": state.observed_at_detection,
            "model_version": model_version, "shift": round(math.exp(state.offset), 4),
        }

    def drifted(self) -> dict[str, float | None]:
        """Drifted categories -> their change point (serve them from the run's own tasks since then)."""
        return {c: s.changed_at for c, s in self.states.items() if s.drifted}


def baselines_from_holdout(categories: Sequence[str], predicted: np.ndarray, actual: np.ndarray, min_rows: int = 5) -> dict[str, Baseline]:
    """Per-category :class:`Baseline` of held-out log residuals (categories with fewer rows get the pooled one, key ``""``)."""
    predicted = np.asarray(predicted, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    cats = np.asarray(list(categories), dtype=object)
    ok = np.isfinite(predicted) & np.isfinite(actual) & (predicted > 0) & (actual > 0)
    residuals = np.full(len(actual), np.nan)
    residuals[ok] = np.log(actual[ok] / predicted[ok])
    pooled = baseline_from_residuals(residuals)
    out: dict[str, Baseline] = {"": pooled}
    for category in set(cats[ok]):
        own = residuals[ok & (cats == category)]
        out[str(category)] = baseline_from_residuals(own) if len(own) >= min_rows else pooled
    return out


def baselines_to_dict(baselines: Mapping[str, Baseline]) -> dict[str, dict[str, float]]:
    return {c: {"mean": b.mean, "sigma": b.sigma} for c, b in baselines.items()}


#: target -> (history column of the actual, history column of the prediction the steering plugin served)
HISTORY_TARGETS: dict[str, tuple[str, str]] = {
    "duration": ("duration_s", "predicted_duration_s"),
    "peak_memory": ("peak_memory_bytes", "predicted_peak_memory_bytes"),
}


def detect_drift(history: Any, baselines: Mapping[str, Mapping[str, Baseline]] | None = None,
                 model_version: str | None = None, config: DriftConfig | None = None) -> list[dict[str, Any]]:
    """Drift events from recorded history rows: the recorder copies the served prediction into each row.

    Rows are fed in finishing order (``stop_s``, else ``recorded_at``) to one :class:`DriftMonitor`
    per target (``baselines``: target -> category -> :class:`Baseline`, a format-2 manifest's
    ``composite.drift_baselines``). Only successful rows with a prediction count; with
    ``model_version`` only rows that version predicted (drift is a property of one model).
    Values below the training data's noise floors (:class:`~daskflow.learning.cleaning.CleaningConfig`)
    count as the floor, as the steering plugin does: allocator noise on tiny peaks is not drift.
    Each event carries ``target`` and the ``run_id`` it was detected in. Pure.
    """
    import pandas as pd

    from daskflow.learning.cleaning import CleaningConfig

    config = config or DriftConfig()
    floors = CleaningConfig()
    frame = history
    if not len(frame):
        return []
    if "outcome" in frame:
        frame = frame[frame["outcome"].fillna("success") == "success"]
    if model_version is not None and "model_version" in frame:
        frame = frame[frame["model_version"].astype(object) == model_version]
    order = pd.to_numeric(frame["stop_s"], errors="coerce") if "stop_s" in frame else pd.Series(np.nan, index=frame.index)
    if "recorded_at" in frame:
        order = order.fillna(pd.to_numeric(frame["recorded_at"], errors="coerce"))
    frame = frame.assign(_at=order.fillna(0.0)).sort_values("_at", kind="stable")
    events: list[dict[str, Any]] = []
    for target, (actual_column, predicted_column) in HISTORY_TARGETS.items():
        if actual_column not in frame or predicted_column not in frame:
            continue
        monitor = DriftMonitor(config, dict((baselines or {}).get(target) or {}))
        actual = pd.to_numeric(frame[actual_column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        predicted = pd.to_numeric(frame[predicted_column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        floor = floors.duration_floor_s if target == "duration" else floors.memory_floor_bytes
        with np.errstate(invalid="ignore"):  # below the noise floor a value is "tiny", not a ratio (as in training)
            actual = np.where(actual > 0, np.maximum(actual, floor), actual)
            predicted = np.where(predicted > 0, np.maximum(predicted, floor), predicted)
        categories = frame["category"].astype(str).to_numpy() if "category" in frame else np.full(len(frame), "")
        runs = frame["run_id"].astype(object).to_numpy() if "run_id" in frame else np.full(len(frame), None)
        for i, at in enumerate(frame["_at"].to_numpy(dtype="float64")):
            event = monitor.observe(str(categories[i]), float(predicted[i]), float(actual[i]), float(at), model_version)
            if event is not None:
                events.append({**event, "target": target, "run_id": runs[i]})
    return sorted(events, key=lambda e: e["at"])
