"""Bounded aggregates behind the daskflow dashboard pages.

Design note. Pages must stay responsive on 10k-task graphs, so no page ever
walks the scheduler's tasks or the recorder's whole buffer. Instead
:class:`DashboardState` ingests *new* recorder rows incrementally (rows are
recognised by object identity in the recorder's bounded ``recent_rows``
deque, so each row is looked at once) and keeps only bounded data:

* ``points``: the last ``max_points`` (predicted, actual) pairs for the
  predictions-vs-actuals scatter plots;
* ``categories``: per-category running sums (at most ``max_categories``;
  later categories are folded into ``"(other)"``);
* ``scored``: the last ``window`` absolute percentage errors of the model and of
  the baseline, where the baseline is the per-category running mean of the
  durations seen *before* the row (what Dask's per-prefix estimate does);
* ``scored_memory``: the same for peak memory (baseline: per-category running
  mean of peak memory, 0 bytes before the first observation);
* ``quality``: one rolling-median point per ingest tick with new scored rows,
  at most ``max_points`` of them.

Ingest costs ~9 us per row and runs on the event loop once per
``daskflow.dashboard.update-interval``; it sees at most the recorder's
``recent_rows`` bound (``daskflow.recorder.recent-rows``) per tick, so above
that many finished tasks per tick the aggregates are a sample of the newest
rows (the Parquet history still has every row).

Everything here is plain data in, plain data out; the scheduler is only
touched to look the recorder and steering plugins up by name
(:func:`scheduler_plugins.compat.plugin`).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from daskflow.contracts import RECORDER_PLUGIN, STEERING_PLUGIN, DecisionEvent
from daskflow.formatting import finite_float
from scheduler_plugins import compat

OTHER_CATEGORY = "(other)"
DEFAULT_DURATION_S = 0.5  # Dask's guess for a prefix it has never seen
MEMORY_FLOOR_BYTES = 1024.0  # relative memory errors of tasks using < 1 KiB are measured against 1 KiB
CATEGORY_ERRORS = 200  # per category: the errors of its last 200 predicted tasks give its median


def _running_mean(n_before: int, mean_before: float, value: float) -> tuple[int, float]:
    return (n_before + 1, mean_before + (value - mean_before) / (n_before + 1)) if n_before else (1, value)


@dataclass
class CategoryStats:
    """Running sums for one task category (asset key / trace category / key prefix)."""

    count: int = 0
    duration_s_sum: float = 0.0
    peak_memory_bytes_sum: float = 0.0
    peak_memory_count: int = 0
    predicted_count: int = 0
    predicted_duration_s_sum: float = 0.0
    actual_duration_s_sum_when_predicted: float = 0.0
    predicted_peak_memory_bytes_sum: float = 0.0
    predicted_peak_memory_count: int = 0
    model_ape_sum: float = 0.0
    #: the last CATEGORY_ERRORS errors of the model and of the running-mean baseline (for medians)
    model_apes: deque = field(default_factory=lambda: deque(maxlen=CATEGORY_ERRORS))
    baseline_apes: deque = field(default_factory=lambda: deque(maxlen=CATEGORY_ERRORS))

    def as_row(self, category: str) -> dict[str, Any]:
        model_median = statistics.median(self.model_apes) if self.model_apes else None
        baseline_median = statistics.median(self.baseline_apes) if self.baseline_apes else None
        return {
            "category": category,
            "count": self.count,
            "mean_duration_s": self.duration_s_sum / self.count if self.count else None,
            "mean_predicted_duration_s": (
                self.predicted_duration_s_sum / self.predicted_count if self.predicted_count else None
            ),
            "mean_peak_memory_bytes": (
                self.peak_memory_bytes_sum / self.peak_memory_count if self.peak_memory_count else None
            ),
            "mean_predicted_peak_memory_bytes": (
                self.predicted_peak_memory_bytes_sum / self.predicted_peak_memory_count
                if self.predicted_peak_memory_count
                else None
            ),
            "predicted_count": self.predicted_count,
            "mean_model_ape": self.model_ape_sum / self.predicted_count if self.predicted_count else None,
            "median_model_ape": model_median,
            "median_baseline_ape": baseline_median,
            # < 1: the model beats the per-category running mean (what Dask itself estimates)
            "error_ratio": model_median / baseline_median if model_median is not None and baseline_median else None,
        }


def absolute_percentage_error(predicted: float, actual: float, floor: float = 1e-3) -> float:
    """``|predicted - actual| / max(actual, floor)`` (the floor keeps ~0 s tasks finite)."""
    return abs(float(predicted) - float(actual)) / max(abs(float(actual)), floor)


@dataclass
class DashboardState:
    """Incremental, bounded aggregates of recorder rows (see module docstring)."""

    max_points: int = 2000
    window: int = 50
    max_categories: int = 200
    drift_tolerance: float = 1.0
    rows_seen: int = 0
    points: deque = field(default_factory=deque)
    categories: dict[str, CategoryStats] = field(default_factory=dict)
    baseline: dict[str, tuple[int, float]] = field(default_factory=dict)
    scored: deque = field(default_factory=deque)
    scored_memory: deque = field(default_factory=deque)
    memory_baseline: dict[str, tuple[int, float]] = field(default_factory=dict)
    quality: deque = field(default_factory=deque)
    #: the model version of the rows in ``scored`` (the window restarts when it changes)
    scored_model_version: Any = None
    _last_row: Any = None
    _new_scored: int = 0

    def __post_init__(self) -> None:
        self.points = deque(maxlen=int(self.max_points))
        self.scored = deque(maxlen=int(self.window))
        self.scored_memory = deque(maxlen=int(self.window))
        self.quality = deque(maxlen=int(self.max_points))

    # ---------------------------------------------------------------- ingest
    def new_rows(self, recent_rows: Iterable[dict]) -> list[dict]:
        """Rows of ``recent_rows`` (oldest first) appended since the last call."""
        rows = list(recent_rows)
        start = 0
        if self._last_row is not None:
            for index in range(len(rows) - 1, -1, -1):
                if rows[index] is self._last_row:
                    start = index + 1
                    break
        if rows:
            self._last_row = rows[-1]
        return rows[start:]

    def ingest(self, rows: Iterable[dict]) -> int:
        """Fold rows (history-row dicts) into the aggregates; returns how many were used."""
        used = 0
        for row in rows:
            if row.get("outcome", "success") != "success":
                continue
            duration_s = finite_float(row.get("duration_s"))
            if duration_s is None:
                continue
            used += 1
            self.rows_seen += 1
            category = str(row.get("category") or row.get("key_prefix") or "unknown")
            if category not in self.categories and len(self.categories) >= self.max_categories:
                category = OTHER_CATEGORY
            stats = self.categories.setdefault(category, CategoryStats())
            peak_memory_bytes = finite_float(row.get("peak_memory_bytes"))
            predicted_duration_s = finite_float(row.get("predicted_duration_s"))
            predicted_peak_memory_bytes = finite_float(row.get("predicted_peak_memory_bytes"))
            stats.count += 1
            stats.duration_s_sum += duration_s
            if peak_memory_bytes is not None:
                stats.peak_memory_bytes_sum += peak_memory_bytes
                stats.peak_memory_count += 1
            if predicted_peak_memory_bytes is not None:
                stats.predicted_peak_memory_bytes_sum += predicted_peak_memory_bytes
                stats.predicted_peak_memory_count += 1
            n_before, mean_before = self.baseline.get(category, (0, DEFAULT_DURATION_S))
            if predicted_duration_s is not None:
                model_ape = absolute_percentage_error(predicted_duration_s, duration_s)
                baseline_ape = absolute_percentage_error(mean_before, duration_s)
                stats.predicted_count += 1
                stats.predicted_duration_s_sum += predicted_duration_s
                stats.actual_duration_s_sum_when_predicted += duration_s
                stats.model_ape_sum += model_ape
                stats.model_apes.append(model_ape)
                if n_before:  # the first task of a category has no running mean to compare with
                    stats.baseline_apes.append(baseline_ape)
                version = row.get("model_version")
                version = None if isinstance(version, float) and version != version else version
                if version != self.scored_model_version:
                    # a new model: its drift verdict starts from its own predictions, not its predecessor's
                    self.scored.clear()
                    self.scored_model_version = version
                self.scored.append((model_ape, baseline_ape))
                self._new_scored += 1
            self.baseline[category] = _running_mean(n_before, mean_before, duration_s)
            if peak_memory_bytes is not None:
                n_memory, mean_memory = self.memory_baseline.get(category, (0, 0.0))
                if predicted_peak_memory_bytes is not None:
                    self.scored_memory.append((
                        absolute_percentage_error(predicted_peak_memory_bytes, peak_memory_bytes, floor=MEMORY_FLOOR_BYTES),
                        absolute_percentage_error(mean_memory, peak_memory_bytes, floor=MEMORY_FLOOR_BYTES),
                    ))  # fmt: skip
                    self._new_scored += 1
                self.memory_baseline[category] = _running_mean(n_memory, mean_memory, peak_memory_bytes)
            self.points.append({
                "recorded_at": finite_float(row.get("recorded_at")) or time.time(),
                "key": str(row.get("key")),
                "run_id": row.get("run_id"),
                "category": category,
                "worker": row.get("worker"),
                "duration_s": duration_s,
                "predicted_duration_s": predicted_duration_s,
                "peak_memory_bytes": peak_memory_bytes,
                "predicted_peak_memory_bytes": predicted_peak_memory_bytes,
                "model_version": row.get("model_version"),
            })  # fmt: skip
        return used

    def close_tick(self, now: float | None = None) -> dict | None:
        """Append one rolling-error point if rows were scored since the last tick."""
        if not self._new_scored or not (self.scored or self.scored_memory):
            return None
        self._new_scored = 0
        point = {
            "time": time.time() if now is None else now,
            "model_error": statistics.median(m for m, _ in self.scored) if self.scored else None,
            "baseline_error": statistics.median(b for _, b in self.scored) if self.scored else None,
            "n": len(self.scored),
            "memory_model_error": statistics.median(m for m, _ in self.scored_memory) if self.scored_memory else None,
            "memory_baseline_error": statistics.median(b for _, b in self.scored_memory) if self.scored_memory else None,
            "rows_seen": self.rows_seen,
        }
        self.quality.append(point)
        return point

    def pull(self, scheduler: Any) -> int:
        """Ingest the recorder's new rows (if a recorder is installed) and close the tick."""
        recorder = compat.plugin(scheduler, RECORDER_PLUGIN)
        rows = getattr(recorder, "recent_rows", None)
        if rows is None:
            return 0
        used = self.ingest(self.new_rows(rows))
        self.close_tick()
        return used

    # -------------------------------------------------------------- payloads
    def drift(self) -> dict[str, Any]:
        """Whether the model stopped beating the baseline on durations over the current window."""
        n = len(self.scored)
        needed = max(2, self.window)  # a full window of this model's predictions before any verdict
        if n < needed:
            since = f" since model {self.scored_model_version} loaded" if self.scored_model_version else ""
            return {"warning": False, "n": n, "message": f"not enough predicted tasks yet{since} ({n} of {needed})"}
        model_error = statistics.median(m for m, _ in self.scored)
        baseline_error = statistics.median(b for _, b in self.scored)
        warning = model_error > self.drift_tolerance * baseline_error
        message = (
            f"drift: model error {model_error:.1%} > baseline error {baseline_error:.1%} over the last {n} tasks; "
            "retrain with `daskflow model train`"
            if warning
            else f"model error {model_error:.1%} vs baseline {baseline_error:.1%} over the last {n} tasks"
        )
        return {"warning": bool(warning), "n": n, "model_error": model_error, "baseline_error": baseline_error, "message": message}

    def predictions_payload(self, limit: int | None = None) -> dict[str, Any]:
        points = list(self.points)
        if limit is not None:
            points = points[-int(limit):]
        return {
            "rows_seen": self.rows_seen,
            "categories": [stats.as_row(name) for name, stats in sorted(self.categories.items())],
            "points": points,
        }

    def quality_payload(self) -> dict[str, Any]:
        return {"window": self.window, "series": list(self.quality), "drift": self.drift()}


def steering_summary(scheduler: Any) -> dict[str, Any]:
    """Mode, model version and fallback counter of the steering plugin (``absent`` without one)."""
    steering = compat.plugin(scheduler, STEERING_PLUGIN)
    recorder = compat.plugin(scheduler, RECORDER_PLUGIN)
    if steering is None:
        return {"present": False, "mode": "absent", "model_version": None, "fallback_count": None, "recorder": recorder is not None}
    return {
        "present": True,
        "mode": getattr(steering, "mode", None),
        "model_version": getattr(steering, "model_version", None),
        "fallback_count": getattr(steering, "fallback_count", None),
        "recorder": recorder is not None,
    }


def recent_decisions(scheduler: Any, limit: int) -> list[DecisionEvent]:
    """The newest ``limit`` steering decisions, newest first (copies; empty without steering)."""
    steering = compat.plugin(scheduler, STEERING_PLUGIN)
    decisions = getattr(steering, "decisions", None)
    if not decisions:
        return []
    newest = itertools.islice(reversed(decisions), int(limit))  # O(limit) on a long deque
    return [dict(d) if isinstance(d, dict) else {"decision": str(d)} for d in newest]


def decisions_signature(scheduler: Any) -> tuple:
    """Changes whenever a decision is added (cheap: length and identity of the newest)."""
    steering = compat.plugin(scheduler, STEERING_PLUGIN)
    decisions = getattr(steering, "decisions", None)
    if not decisions:
        return (id(steering), 0, None)
    return (id(steering), len(decisions), id(decisions[-1]))


def format_alternatives(alternatives: Any, limit: int = 4) -> str:
    """``"w1 0.52 | w2 0.80"`` from a decision's ``alternatives`` list."""
    if not alternatives:
        return ""
    parts = []
    for alternative in list(alternatives)[:limit]:
        if isinstance(alternative, dict):
            worker = str(alternative.get("worker", "?"))
            score = finite_float(alternative.get("score"))
            parts.append(f"{worker} {score:.3g}" if score is not None else worker)
        else:
            parts.append(str(alternative))
    more = len(alternatives) - limit
    return " | ".join(parts) + (f" | +{more}" if more > 0 else "")
