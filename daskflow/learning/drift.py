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

**Which crossings are alarms** (a CUSUM crossing is evidence that the level
moved, not yet that it moved by something worth demoting a category for; on
wide, heavy-tailed or bimodal categories - bwa, CV ~0.6, log ratios with a
lump at -2.7 - and on a loaded machine's timing noise, crossings come from a
few extreme ratios). When a side crosses ``h``, the shift is estimated
robustly: the Huber location (clip ``clip`` sigmas, started at the median) of
the log ratios since the change point - or of their latest half / two thirds
when that moves further: the change point estimate may lie early - minus the
current level. (The same estimator as the baseline's centre: a median against a
Huber centre differs by up to ~``clip`` sigmas on lumpy data, e.g. peaks at the
memory floor.) It is an alarm only when

* at least ``confirm_tasks`` ratios lie since the change point,
* the shift is on the crossing's side and ``confirm_sigmas`` standard errors
  (``1.2 sigma / sqrt(n)``) or more - a burst of stragglers moves the CUSUM's
  sum, not the clipped location - and
* it is at least ``min_shift`` as a factor (x1.5 / x0.67 by default): a
  smaller persistent shift is the in-run correction's business;
* from ``decisive_sigmas`` standard errors it alarms at once; in between, the
  next ``confirm_tasks`` ratios after the crossing (which the crossing did not
  select) must show at least ``min_shift`` too.

A crossing that is not an alarm keeps its side at ``h``: every further ratio
on that side checks again (the estimated shift must persist; a change that
has just begun is confirmed once the ratios since the change point are mostly
after it).
``sigma`` is the larger of the baseline's spread and the *run's own*: the
robust spread (1.4826 MAD) of the category's recent log ratios in this run
(since its last change point), from ``spread_rows`` ratios on, refreshed every
``spread_every``, as a one-sided 95 % lower bound (so a noisy estimate does not
inflate sigma and slow detection) - a baseline trained on a narrower instance,
or none, does not make a wide category look like drift.

After an alarm the category is ``drifted``: the estimate for it should come
from the tasks of this run since the change point (the last time the alarming
side of the CUSUM was zero, :attr:`CategoryDrift.changed_at`), i.e.
:meth:`~daskflow.learning.online.OnlineState.correct` with ``since``, or the
run's median, until a retrained model is promoted. The CUSUM then restarts
around the new normal (kept as :attr:`CategoryDrift.offset`): the median of
the log ratios since the change point (at most ``settle`` of them) at the
alarm, then a running Huber mean in which those count as that many ratios and
every later ratio as one more (step ``1 / n``). The level neither freezes on a
short window (whose error alone made a wide category alarm again) nor chases
the newest ratios (so when a short regime - a run of a bimodal category's small
tasks - ends, the return is seen as the further change it is),
so a persisting change alarms once and a further change (by ``min_shift`` or
more) alarms again. A rolling window of the last ``window`` log ratios (with
their times) holds what the change point, the shift and the run's spread are
computed from.

Measured on synthetic streams (``tests/learning/test_drift.py``): a x2 step at
noise 0.1-0.3 alarms after 4-6 tasks (0.5: ~11); a stationary category with
CV 0.6 (lognormal or gamma; baseline from 1,000 training rows) raises no
alarm in 1,000 tasks in ~92 % of seeds (before these rules: 88 % / 72 %; with
a baseline of 100-300 rows 82-93 %); after a true x2 alarm, 96-97 % of seeds
raise no second one in the next 500 tasks (before: 43 % at noise 0.2, 76 % at
CV 0.6).

Cost per observation: O(1) arithmetic; every ``spread_every`` observations a
median of at most ``window`` values; at a crossing (rare) one more.

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
    window: int = 50  # log ratios kept per category (change point, shift, the run's spread, display)
    min_shift: float = 1.5  # an alarm needs the level since the change point moved by at least this factor (or 1 / it)
    confirm_tasks: int = 4  # ... estimated from at least this many log ratios since the change point
    confirm_sigmas: float = 2.5  # ... whose median is beyond the current level by this many standard errors
    decisive_sigmas: float = 3.0  # ... at once from this many; in between, the next confirm_tasks ratios must agree
    spread_rows: int = 8  # the run's own spread (1.4826 MAD of its recent log ratios) counts from this many
    spread_every: int = 16  # ... and is refreshed every this many observations


def drift_config_from_settings() -> DriftConfig:
    """:class:`DriftConfig` from ``daskflow.models.drift.*`` (defaults in ``daskflow.yaml``)."""
    from daskflow import config

    return DriftConfig(
        kappa=float(config.get("models.drift.kappa")), threshold=float(config.get("models.drift.threshold")),
        clip=float(config.get("models.drift.clip")), settle=int(config.get("models.drift.settle")),
        min_sigma=float(config.get("models.drift.min-sigma")), default_sigma=float(config.get("models.drift.default-sigma")),
        window=int(config.get("models.drift.window")), min_shift=float(config.get("models.drift.min-shift")),
        confirm_tasks=int(config.get("models.drift.confirm-tasks")),
        confirm_sigmas=float(config.get("models.drift.confirm-sigmas")),
        decisive_sigmas=float(config.get("models.drift.decisive-sigmas")),
        spread_rows=int(config.get("models.drift.spread-rows")), spread_every=int(config.get("models.drift.spread-every")),
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
    offset: float = 0.0  # log shift absorbed by earlier alarms and re-centrings (the new normal after a change)
    settling: list[float] = field(default_factory=list)  # the log ratios since the change point at the alarm (at most ``settle``)
    settled: int = 0  # ratios the new normal is the Huber mean of: those in ``settling`` plus every one after the alarm
    pending: tuple[Direction, int] | None = None  # a crossing waiting for its shift to persist: (side, observed at the crossing)
    run_sigma: float = 0.0  # the run's own robust spread of the category's log ratios (0: not enough yet)
    spread_observed: int = 0  # ``observed`` when run_sigma was last refreshed
    unconfirmed: int = 0  # crossings that were not alarms (too few ratios, not significant, or a shift below min_shift)
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=50))  # (at, log ratio)


def baseline_from_residuals(residuals: np.ndarray, clip: float = 3.0, min_sigma: float = 0.15) -> Baseline:
    """Centre and spread of held-out log residuals: spread max(1.4826 MAD, sd of the residuals within 5 MAD);
    centre the point where the CUSUM's clipped standardised ratios average zero (a Huber location with ``clip``).

    The median would do for symmetric errors; on skewed ones (log residuals of a mean-served, widely spread
    category are left-skewed) the clipped ratios around the median average a fraction of a sigma off zero,
    which eats into ``kappa`` and shortens the run between false alarms on one side.
    """
    values = np.asarray(residuals, dtype="float64")
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return Baseline()
    centre = float(np.median(values))
    mad = float(1.4826 * np.median(np.abs(values - centre)))
    inner = values[np.abs(values - centre) <= 5 * mad] if mad > 0 else values
    sigma = max(mad, float(np.sqrt(np.mean((inner - centre) ** 2))))
    scale = max(sigma, min_sigma)  # the sigma the CUSUM standardises with (update floors it at min_sigma)
    for _ in range(8):
        centre += scale * float(np.mean(np.clip((values - centre) / scale, -clip, clip)))
    return Baseline(centre, sigma)


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
    own = baseline.sigma if math.isfinite(baseline.sigma) else config.default_sigma
    sigma = max(own, config.min_sigma, state.run_sigma)
    z = math.log(actual / predicted)
    if state.drifted:  # learning the new normal: a Huber mean, the alarm window counting as ``settled`` ratios
        state.settled += 1
        step = max(-config.clip, min(config.clip, (z - baseline.mean - state.offset) / sigma))
        state.offset += sigma * step / state.settled
    level = baseline.mean + state.offset
    u = (z - level) / sigma
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
    if state.pending is not None and (state.upper if state.pending[0] == "slower" else state.lower) == 0.0:
        state.pending = None  # the excursion ended unconfirmed
    if state.observed - state.spread_observed >= config.spread_every:
        _refresh_run_sigma(state, config)
    side: Direction | None = "slower" if state.upper > config.threshold else "faster" if state.lower > config.threshold else None
    if side is None:
        return False
    changed_at = state.upper_zero_at if side == "slower" else state.lower_zero_at
    if not _confirmed(state, side, changed_at, level, sigma, config):
        return False
    state.drifted = True
    state.direction = side
    state.detected_at = at
    state.changed_at = changed_at
    state.observed_at_detection = state.observed
    # The new normal: the median of the log ratios since the change point, worth as many ratios (at most
    # ``settle``), refined by every later ratio (a running Huber mean, step 1 / n). Restart.
    state.settling = [value for when, value in state.recent if when >= changed_at][-config.settle:]
    state.settled = len(state.settling)
    state.offset = _median(state.settling) - baseline.mean
    state.pending = None
    state.upper = state.lower = 0.0
    state.upper_zero_at = state.lower_zero_at = at
    return True


def _confirmed(state: CategoryDrift, side: Direction, changed_at: float, level: float, sigma: float,
               config: DriftConfig) -> bool:
    """Is the crossing of ``side`` an alarm? (see the module note: a robust, persisting shift worth an alarm)"""
    since = [value for when, value in state.recent if when >= changed_at]
    sign = 1.0 if side == "slower" else -1.0
    n = len(since)
    shift = sign * (_location(since, sigma, config.clip) - level) if since else 0.0
    for start in (n // 3, n // 2):  # the change point estimate may lie early: its latest part may show the shift alone
        later = since[start:]
        if start and len(later) >= config.confirm_tasks:
            moved = sign * (_location(later, sigma, config.clip) - level)
            if moved > shift:
                n, shift = len(later), moved
    worth = math.log(config.min_shift) - 1e-9
    standard_error = 1.2 * sigma / math.sqrt(max(n, 1))
    if n < config.confirm_tasks or shift < worth or shift < config.confirm_sigmas * standard_error:
        state.unconfirmed += 1
        return False
    if shift >= config.decisive_sigmas * standard_error:
        return True
    # Significant but not decisive (a wide category, or the first tasks after a change): the shift must persist
    # over the next confirm_tasks ratios, which the crossing did not select.
    if state.pending is None or state.pending[0] != side:
        state.pending = (side, state.observed)
    after = state.observed - state.pending[1]
    if after < config.confirm_tasks:
        return False
    latest = [value for _, value in list(state.recent)[-config.confirm_tasks:]]
    if sign * (_location(latest, sigma, config.clip) - level) >= worth:
        return True
    state.unconfirmed += 1
    return False


def _location(values: Sequence[float], sigma: float, clip: float) -> float:
    """The Huber location of ``values`` (from their median, clipped at ``clip`` sigmas): the estimator the
    baseline's centre is, so a window and the level it is compared with are the same kind of number (a median
    against a Huber centre differs by up to ~``clip`` sigmas on lumpy data, e.g. peaks at the memory floor)."""
    centre = _median(values)
    n = len(values)
    for _ in range(4):
        centre += sigma * sum(max(-clip, min(clip, (value - centre) / sigma)) for value in values) / n
    return centre


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def _refresh_run_sigma(state: CategoryDrift, config: DriftConfig) -> None:
    """The run's robust spread: 1.4826 MAD of the recent log ratios (since the last change point when enough), lower bound."""
    state.spread_observed = state.observed
    values = [value for when, value in state.recent if state.changed_at is None or when >= state.changed_at]
    if len(values) < config.spread_rows:
        values = [value for _, value in state.recent]
    if len(values) < config.spread_rows:
        return
    centre = _median(values)
    mad_sigma = 1.4826 * _median([abs(value - centre) for value in values])
    # a lower confidence bound (the MAD's standard error is ~1.166 sigma / sqrt(n)): the run's spread raises sigma
    # only when it is clearly wider than the baseline's, not whenever its noisy estimate happens to be above it
    state.run_sigma = max(0.0, mad_sigma * (1.0 - 1.645 * 1.166 / math.sqrt(len(values))))


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
