"""Drift: a x2 change of a category's cost is detected within 20 of its tasks; stationary noise raises nothing."""

from __future__ import annotations

import numpy as np
import pytest

from daskflow.learning.drift import (
    Baseline,
    CategoryDrift,
    DriftConfig,
    DriftMonitor,
    baseline_from_residuals,
    baselines_from_holdout,
    update,
)
from daskflow.learning.online import OnlineState

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_x2_change_detected_within_20_tasks(sigma, factor):
    rng = np.random.default_rng(int(sigma * 10))
    delays, missed = [], 0
    for trial in range(20):
        state = CategoryDrift()
        baseline = Baseline(0.05, sigma)  # the model's normal error for the category: small bias, this spread
        for t in range(40):  # stationary part: no alarm
            assert not update(state, 1.0, np.exp(0.05 + rng.normal(0, sigma)), float(t), baseline)
        for i in range(1, 21):
            if update(state, 1.0, factor * np.exp(0.05 + rng.normal(0, sigma)), 40.0 + i, baseline):
                delays.append(i)
                break
        else:
            missed += 1  # at sigma 0.5 a x2 change is 1.4 sigma per task: rarely, 20 tasks are not enough evidence
            continue
        assert state.drifted and state.direction == ("slower" if factor > 1 else "faster")
        assert state.changed_at is not None and state.changed_at >= 20.0  # change point estimate near the change
    assert missed == 0 if sigma <= 0.3 else missed <= 1
    assert np.mean(delays) <= (12 if sigma > 0.3 else 6)


def test_no_false_alarm_on_stationary_noise():
    rng = np.random.default_rng(1234)
    held_out = rng.standard_t(df=4, size=300) * 0.4  # the model's held-out log residuals: heavy tailed
    monitor = DriftMonitor(baselines={"": baseline_from_residuals(held_out)})
    alarms = 0
    for t in range(5000):  # 50 categories x 100 tasks of seeded stationary noise, heavy tails included
        category = f"c{t % 50}"
        noise = rng.standard_t(df=4) * 0.4
        alarms += monitor.observe(category, 2.0, 2.0 * np.exp(noise), float(t)) is not None
    assert alarms == 0 and monitor.drifted() == {}


def test_one_straggler_is_not_drift():
    state = CategoryDrift()
    for t in range(30):
        assert not update(state, 1.0, 1000.0 if t == 10 else 1.0, float(t), Baseline(0.0, 0.2))


def test_monitor_event_and_online_serving_after_detection():
    rng = np.random.default_rng(7)
    monitor = DriftMonitor(baselines={"slow": Baseline(0.0, 0.2)})
    online = OnlineState()
    events = []
    for t in range(60):
        actual = 10.0 * (2.0 if t >= 30 else 1.0) * np.exp(rng.normal(0, 0.2))
        event = monitor.observe("slow", 10.0, actual, float(t), model_version="v1")
        online.observe("slow", 10.0, actual, float(t))
        if event:
            events.append(event)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "drift" and event["category"] == "slow" and event["model_version"] == "v1"
    assert 30 <= event["at"] <= 40
    since = monitor.drifted()
    # served from the post-change tasks of this run: close to x2
    assert online.factor("slow", now=60.0, since=since["slow"]) == pytest.approx(2.0, rel=0.15)
    assert online.factor("slow", now=60.0) < 1.7  # ... while all tasks together would underestimate


def test_baselines_from_holdout_and_defaults():
    rng = np.random.default_rng(0)
    cats = ["a"] * 100 + ["b"] * 2
    predicted = np.ones(102)
    actual = np.concatenate([np.exp(rng.normal(0.3, 0.2, 100)), [5.0, 5.0]])
    baselines = baselines_from_holdout(cats, predicted, actual)
    assert baselines["a"].mean == pytest.approx(0.3, abs=0.07) and baselines["a"].sigma == pytest.approx(0.2, abs=0.06)
    assert baselines["b"] == baselines[""]  # too few rows: pooled
    assert baseline_from_residuals(np.array([1.0])) == Baseline()
    state = CategoryDrift()
    assert not update(state, 0.0, 1.0, 0.0) and not update(state, 1.0, float("nan"), 0.0) and state.observed == 0


def test_threshold_is_configurable():
    loose = DriftConfig(threshold=2.0)
    state = CategoryDrift()
    assert any(update(state, 1.0, 1.5, float(t), Baseline(0.0, 0.2), loose) for t in range(5))


def test_detect_drift_ignores_noise_below_the_floors():
    """Tiny peaks (allocator noise, a few KiB) that halve and double are not drift; a real x2 above the floor is."""
    import pandas as pd

    from daskflow.learning.drift import detect_drift

    n = 40
    rows = pd.DataFrame({
        "category": ["tiny"] * n, "run_id": ["r"] * n, "stop_s": np.arange(n, dtype=float), "outcome": ["success"] * n,
        "duration_s": [1.0] * n, "predicted_duration_s": [1.0] * n,
        "peak_memory_bytes": [4096.0 if i % 2 else 20000.0 for i in range(n)], "predicted_peak_memory_bytes": [40000.0] * n,
    })
    assert detect_drift(rows) == []
    rows["duration_s"] = [1.0] * 10 + [2.0] * (n - 10)
    assert [(e["category"], e["target"]) for e in detect_drift(rows)] == [("tiny", "duration")]


# ------------------------------------------------------------------ false alarms (issue #12: bwa, loaded machines)
CV = 0.6  # bwa's duration spread
LOG_SD = float(np.sqrt(np.log(1 + CV ** 2)))


def _wide(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Durations of one category with coefficient of variation 0.6 around a served mean of 1.0."""
    if kind == "lognormal":
        return np.exp(rng.normal(-LOG_SD ** 2 / 2, LOG_SD, n))
    shape = 1 / CV ** 2  # gamma: the log ratios are left-skewed, like a mean-served category's
    return rng.gamma(shape, 1 / shape, n)


@pytest.mark.parametrize("noise", [0.1, 0.2, 0.3])
def test_x2_step_detected_within_about_10_tasks(noise):
    rng = np.random.default_rng(int(noise * 100))
    delays = []
    for _ in range(50):
        state, baseline = CategoryDrift(), Baseline(0.0, noise)
        for t in range(30):
            assert not update(state, 1.0, float(np.exp(rng.normal(0, noise))), float(t), baseline)
        delay = next((i for i in range(1, 41) if update(state, 1.0, float(2.0 * np.exp(rng.normal(0, noise))), 30.0 + i, baseline)), None)
        assert delay is not None and state.direction == "slower"
        delays.append(delay)
    assert np.quantile(delays, 0.95) <= 10 and np.median(delays) <= 7


@pytest.mark.parametrize("kind", ["lognormal", "gamma"])
def test_a_wide_stationary_category_raises_no_alarm(kind):
    """CV 0.6, 1000 tasks, the baseline from 1000 training rows of the same law: no alarm in >= 90 % of 200 seeds."""
    quiet = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        baseline = baseline_from_residuals(np.log(_wide(kind, rng, 1000)))
        state = CategoryDrift()
        quiet += not any(update(state, 1.0, float(x), float(t), baseline) for t, x in enumerate(_wide(kind, rng, 1000)))
    assert quiet >= 0.9 * 200


def test_huber_centre_of_skewed_residuals():
    """The baseline's centre is where the CUSUM's clipped ratios average zero (the median is not, on skewed errors)."""
    rng = np.random.default_rng(5)
    residuals = np.log(_wide("gamma", rng, 20000))
    baseline = baseline_from_residuals(residuals)
    u = np.clip((residuals - baseline.mean) / baseline.sigma, -3, 3)
    assert abs(u.mean()) < 0.01 and abs(np.clip((residuals - np.median(residuals)) / baseline.sigma, -3, 3).mean()) > 0.04


@pytest.mark.parametrize("noise", [0.2, LOG_SD])
def test_after_a_true_alarm_no_second_one_at_the_new_level(noise):
    single = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        monitor = DriftMonitor(baselines={"c": Baseline(0.0, noise)})
        alarms = [monitor.observe("c", 1.0, float((2.0 if t >= 40 else 1.0) * np.exp(rng.normal(0, noise))), float(t))
                  for t in range(540)]
        single += sum(a is not None for a in alarms) == 1
    assert single >= 95


def test_a_small_persistent_shift_is_not_an_alarm():
    """x1.3 for good (below min_shift): the in-run correction follows it; the drift monitor stays quiet."""
    rng = np.random.default_rng(11)
    state = CategoryDrift()
    assert not any(update(state, 1.0, float((1.3 if t >= 20 else 1.0) * np.exp(rng.normal(0, 0.05))), float(t), Baseline(0.0, 0.05))
                   for t in range(300))
    assert state.unconfirmed > 0  # the CUSUM crossed; the shift was not worth an alarm


def test_the_run_spread_widens_a_too_narrow_baseline():
    """A baseline trained on a narrow instance (sigma 0.15) and a run whose ratios spread 4x wider: sigma follows the run."""
    rng = np.random.default_rng(2)
    state = CategoryDrift()
    for t in range(200):
        update(state, 1.0, float(np.exp(rng.normal(0, 0.6))), float(t), Baseline(0.0, 0.15))
    assert 0.4 < state.run_sigma < 0.6
