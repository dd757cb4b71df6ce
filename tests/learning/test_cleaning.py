"""History hygiene: failed, retried, paused, spilled, shared-process and at-limit rows; baseline and noise floors."""

from __future__ import annotations

import pandas as pd
import pytest

from daskflow.learning.cleaning import (
    MEASURED,
    RECORDER_COLUMNS_TO_ADD,
    CleaningConfig,
    clean_history,
    hygiene_summary,
)
from daskflow.learning.history import HISTORY_COLUMNS

pytestmark = pytest.mark.timeout(30)

GB = 2**30


def row(**kw):
    base = {"run_id": "r1", "key": "k", "category": "c", "outcome": "success", "recorded_at": 0.0, "duration_s": 2.0,
            "peak_memory_bytes": 100 * 2**20, "peak_memory_method": "vmhwm", "concurrent_tasks": 1,
            "worker_memory_limit_bytes": 2 * GB}
    return {**base, **kw}


def test_clean_rows_are_used_with_weight_one():
    out = clean_history(pd.DataFrame([row(key="a"), row(key="b")]))
    assert out["use_duration"].all() and out["use_peak_memory"].all()
    assert (out["duration_weight"] == 1).all() and (out["duration_hygiene"] == "").all()


def test_failed_and_retried_attempts():
    frame = pd.DataFrame([
        row(key="x", outcome="error", recorded_at=1.0, peak_memory_bytes=1.9 * GB),
        row(key="x", recorded_at=2.0),  # the successful retry
        row(key="y", recorded_at=3.0),
        row(key="x", run_id="r2", recorded_at=4.0),  # same key, another run: not a retry
    ])
    out = clean_history(frame)
    assert out["use_duration"].tolist() == [False, True, True, True]
    assert out["duration_weight"].tolist() == [0.0, 0.5, 1.0, 1.0]
    assert out.loc[0, "peak_memory_hygiene"] == "failed,retried-attempt"
    assert out.loc[1, "duration_hygiene"] == "retried"


def test_shared_process_lower_bound_and_at_limit_peaks_affect_memory_only():
    frame = pd.DataFrame([
        row(key="a", concurrent_tasks=3),
        row(key="b", peak_memory_method="rss-end"),
        row(key="c", peak_memory_bytes=1.99 * GB),  # measured while the worker was being killed
        row(key="d", peak_memory_bytes=None),
    ])
    out = clean_history(frame)
    assert out["use_duration"].all()
    assert out["use_peak_memory"].tolist() == [False, True, False, False]
    assert out["peak_memory_weight"].tolist() == [0.0, 0.5, 0.0, 0.0]
    assert out["peak_memory_hygiene"].tolist() == ["shared-process-peak", "lower-bound-peak", "at-worker-limit", "no-peak"]


def test_noise_floors_replace_tiny_values():
    out = clean_history(pd.DataFrame([row(key="a", duration_s=2e-5, peak_memory_bytes=4096), row(key="b")]))
    assert out.loc[0, "duration_s"] == 1e-3 and out.loc[0, "peak_memory_bytes"] == 2**16
    assert out.loc[0, "use_duration"] and out.loc[0, "duration_hygiene"] == "noise-floor"
    assert out.loc[1, "duration_s"] == 2.0
    custom = clean_history(pd.DataFrame([row(duration_s=0.02)]), CleaningConfig(duration_floor_s=0.05))
    assert custom.loc[0, "duration_s"] == 0.05


def test_future_recorder_columns_are_honoured():
    frame = pd.DataFrame([
        row(key="a", worker_paused=True),
        row(key="b", spilled_bytes=10 * 2**20),
        row(key="c", worker_killed=True),
        row(key="d", attempt=2),
        row(key="e", peak_memory_method="vmhwm-absolute", peak_memory_bytes=900 * 2**20, worker_memory_at_start_bytes=400 * 2**20),
        row(key="f", peak_memory_method="vmhwm-absolute", peak_memory_bytes=900 * 2**20, worker_memory_at_start_bytes=None),
    ])
    out = clean_history(frame)
    assert out["use_duration"].tolist() == [False, False, False, True, True, True]
    assert out.loc[3, "duration_weight"] == 0.5
    assert out.loc[4, "peak_memory_bytes"] == 500 * 2**20 and out.loc[4, "use_peak_memory"]
    assert not out.loc[5, "use_peak_memory"] and out.loc[5, "peak_memory_hygiene"] == "absolute-peak-without-baseline"
    summary = hygiene_summary(out)
    assert summary["duration"] == {"retried": 1, "spilled": 1, "worker-killed": 1, "worker-paused": 1}


def test_recorder_columns_to_add_are_not_in_the_history_yet():
    assert not set(RECORDER_COLUMNS_TO_ADD) & set(HISTORY_COLUMNS)


def test_works_on_an_empty_and_on_a_minimal_frame():
    assert len(clean_history(pd.DataFrame(columns=list(HISTORY_COLUMNS)))) == 0
    out = clean_history(pd.DataFrame({"category": ["a"], "duration_s": [1.0]}))
    assert out["use_duration"].tolist() == [True] and out["use_peak_memory"].tolist() == [False]


def test_the_measured_duration_is_kept_beside_the_floored_one():
    out = clean_history(pd.DataFrame({"run_id": ["r", "r"], "key": ["a", "b"], "outcome": ["success"] * 2, "duration_s": [2e-4, 0.5]}))
    assert out["duration_s"].tolist() == [1e-3, 0.5] and out[MEASURED["duration_s"]].tolist() == [2e-4, 0.5]
