"""Training-data hygiene: which history rows measure a task's cost, and which measure an accident.

Design note
-----------
A history row is a task attempt. Some attempts do not measure what the task
costs: it failed or was killed, it was retried (the earlier attempt ran on a
worker that was dying), its worker was paused or spilling (the duration
includes waiting for the disk, the peak includes memory the worker was
fighting), its peak was taken while other tasks shared the process. Learning
from those rows taught the model, on a memory-pressure bag, to predict 1.05 GB
for every task. :func:`clean_history` marks each row, per target, as used
(with a weight) or excluded, with the reasons, and applies two measurement
rules:

* **Baseline.** Peak memory must be the task's own: the worker plugin already
  records ``VmHWM at finish - VmRSS at start`` (method ``vmhwm``) or
  ``RSS at finish - RSS at start`` (``rss-end``, a lower bound: down-weighted).
  A row that carries an absolute peak (method ``*-absolute``) and the
  worker's memory at task start (``worker_memory_at_start_bytes``) gets the
  start subtracted; an absolute peak without a start is excluded.
* **Noise floors.** Below :attr:`CleaningConfig.memory_floor_bytes` (64 KiB) a
  peak is allocator and page-table noise, below ``duration_floor_s`` (1 ms) a
  duration is timer noise: the value is replaced by the floor (and flagged
  ``noise-floor``), so the model learns "tiny" rather than random digits.

Rules on columns the history has today: ``outcome``, repeated ``(run_id,
key)`` (retries), ``concurrent_tasks``, ``peak_memory_method``,
``worker_memory_limit_bytes``. Rules on columns the recorder does NOT write
yet apply as soon as they exist (:data:`RECORDER_COLUMNS_TO_ADD`).

Pure: a DataFrame in, a DataFrame out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Columns the recorder does not write yet (name -> meaning). Rules using them are already here.
#: (``attempt``, ``worker_paused``, ``spilled_bytes``, ``worker_memory_at_start_bytes`` are recorded since history v2.)
RECORDER_COLUMNS_TO_ADD: dict[str, str] = {
    "worker_killed": "the worker running the attempt died or was restarted before/at its end (remove_worker during processing)",
}

DURATION = "duration"
MEMORY = "peak_memory"
#: target column -> the column :func:`clean_history` keeps its measured value in (before the noise floor).
#: Durations only: a timer resolves far below the 1 ms floor, so a sub-ms duration is a measurement the
#: per-category mean must average as Dask does; a peak below 64 KiB is below what VmHWM resolves (pages,
#: allocator reuse: often 0), so the memory mean keeps the floor (unfloored it was worse on the replays:
#: pooled memory ratio 0.28 -> 0.32).
MEASURED: dict[str, str] = {"duration_s": "measured_duration_s"}


@dataclass(frozen=True)
class CleaningConfig:
    """Tunables (to be read from ``daskflow.models.cleaning.*`` by the trainer)."""

    duration_floor_s: float = 1e-3
    memory_floor_bytes: float = float(2**16)  # 64 KiB: page-granular VmHWM deltas and allocator slack below it
    retried_weight: float = 0.5  # the successful retry of a key: measured, but after a disturbance
    lower_bound_weight: float = 0.5  # peaks measured as RSS end - start (a lower bound)
    worker_limit_fraction: float = 0.95  # a peak above this share of the worker limit was measured while being killed


def clean_history(history: pd.DataFrame, config: CleaningConfig | None = None) -> pd.DataFrame:
    """A copy of ``history`` with cleaned targets and, per target, ``use_*``, ``*_weight``, ``*_hygiene``.

    Added columns: ``use_duration``, ``duration_weight``, ``duration_hygiene``, ``use_peak_memory``,
    ``peak_memory_weight``, ``peak_memory_hygiene`` (reasons, comma separated; "" when clean).
    ``duration_s`` / ``peak_memory_bytes`` are floored and baseline-corrected (what the model learns);
    ``measured_duration_s`` (:data:`MEASURED`) keeps the duration unfloored (what the per-category mean
    averages: the mean of floored durations is not the mean Dask keeps - on a replay with many sub-ms
    tasks it was 17 % higher, montage ``mDiffFit``, and that fold 1.24x worse than the mean).

    >>> rows = pd.DataFrame({"run_id": ["r"] * 3, "key": ["a", "a", "b"], "outcome": ["error", "success", "success"],
    ...                      "duration_s": [1.0, 2.0, 1e-6], "peak_memory_bytes": [5e8, 5e8, 10.0]})
    >>> out = clean_history(rows)
    >>> out["use_duration"].tolist(), out["duration_hygiene"].tolist()
    ([False, True, True], ['failed,retried-attempt', 'retried', 'noise-floor'])
    """
    config = config or CleaningConfig()
    frame = history.copy().reset_index(drop=True)
    n = len(frame)
    reasons = {t: [[] for _ in range(n)] for t in (DURATION, MEMORY)}
    use = {t: np.ones(n, dtype=bool) for t in (DURATION, MEMORY)}
    weight = {t: np.ones(n) for t in (DURATION, MEMORY)}

    def mark(mask: np.ndarray, reason: str, targets: tuple[str, ...] = (DURATION, MEMORY), exclude: bool = True,
             factor: float = 1.0) -> None:
        for target in targets:
            for i in np.flatnonzero(mask):
                reasons[target][i].append(reason)
            if exclude:
                use[target] &= ~mask
            else:
                weight[target] = np.where(mask, weight[target] * factor, weight[target])

    outcome = _text(frame, "outcome")
    mark((outcome != "success") & (outcome != ""), "failed")
    mark(_truthy(frame, "worker_killed"), "worker-killed")
    mark(_truthy(frame, "worker_paused"), "worker-paused")
    mark(_number(frame, "spilled_bytes") > 0, "spilled")

    # Retries: every attempt of a (run, key) but the last is excluded; the last successful one is down-weighted.
    attempt = _number(frame, "attempt")
    if "key" in frame and n:
        run = _text(frame, "run_id")
        order = _number(frame, "recorded_at")
        group = pd.Series(list(zip(run, _text(frame, "key"))))
        rank = pd.DataFrame({"g": group, "t": np.nan_to_num(order, nan=0.0), "i": np.arange(n)}).sort_values(["t", "i"])
        position = rank.groupby("g").cumcount().reindex(np.arange(n)).to_numpy()
        size = group.map(group.value_counts()).to_numpy()
        earlier = position < size - 1
        mark(earlier, "retried-attempt")
        later = (size > 1) & ~earlier
    else:
        later = np.zeros(n, dtype=bool)
    later |= np.nan_to_num(attempt, nan=1.0) > 1
    mark(later & use[DURATION], "retried", exclude=False, factor=config.retried_weight)

    # Peak memory: only the task's own, against the worker's baseline at start.
    method = _text(frame, "peak_memory_method")
    peak = _number(frame, "peak_memory_bytes")
    absolute = np.char.endswith(method.astype(str), "-absolute")
    start = _number(frame, "worker_memory_at_start_bytes")
    has_start = np.isfinite(start)
    peak = np.where(absolute & has_start, np.clip(peak - start, 0, None), peak)
    mark(absolute & ~has_start, "absolute-peak-without-baseline", (MEMORY,))
    mark(method == "rss-end", "lower-bound-peak", (MEMORY,), exclude=False, factor=config.lower_bound_weight)
    mark(_number(frame, "concurrent_tasks") > 1, "shared-process-peak", (MEMORY,))
    limit = _number(frame, "worker_memory_limit_bytes")
    mark(np.isfinite(limit) & (limit > 0) & (peak > config.worker_limit_fraction * limit), "at-worker-limit", (MEMORY,))
    mark(~np.isfinite(peak), "no-peak", (MEMORY,))

    duration = _number(frame, "duration_s")
    mark(~np.isfinite(duration), "no-duration", (DURATION,))
    tiny_duration = np.isfinite(duration) & (duration < config.duration_floor_s)
    tiny_peak = np.isfinite(peak) & (peak < config.memory_floor_bytes)
    mark(tiny_duration, "noise-floor", (DURATION,), exclude=False)
    mark(tiny_peak, "noise-floor", (MEMORY,), exclude=False)
    if "duration_s" in frame:
        frame[MEASURED["duration_s"]] = duration  # what was measured (the per-category mean averages this, as Dask does)
        frame["duration_s"] = np.where(tiny_duration, config.duration_floor_s, duration)
    if "peak_memory_bytes" in frame:
        frame["peak_memory_bytes"] = np.where(tiny_peak, config.memory_floor_bytes, peak)

    for target in (DURATION, MEMORY):
        frame[f"use_{target}"] = use[target]
        frame[f"{target}_weight"] = np.where(use[target], weight[target], 0.0)
        frame[f"{target}_hygiene"] = [",".join(r) for r in reasons[target]]
    return frame


def hygiene_summary(cleaned: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per target, how many rows each reason touched (for the manifest and the model page)."""
    out: dict[str, dict[str, int]] = {}
    for target in (DURATION, MEMORY):
        counts: dict[str, int] = {}
        for text in cleaned.get(f"{target}_hygiene", pd.Series([], dtype=str)):
            for reason in filter(None, str(text).split(",")):
                counts[reason] = counts.get(reason, 0) + 1
        out[target] = dict(sorted(counts.items()))
    return out


def _number(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _text(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), "", dtype=object)
    return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in frame[column]], dtype=object)


def _truthy(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.zeros(len(frame), dtype=bool)
    return np.array([bool(v) and not (isinstance(v, float) and np.isnan(v)) for v in frame[column]], dtype=bool)
