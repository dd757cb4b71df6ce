"""Model registry: versions, promotion with reasons, exact rollback, candidate evaluation, bounded event log."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from daskflow.errors import ModelUnavailableError
from daskflow.learning.predictor import Predictor
from daskflow.learning.registry import (
    ModelRegistry,
    PromotionConfig,
    evaluate_candidate,
)
from daskflow.learning.training import train_models

pytestmark = pytest.mark.timeout(120)


def history(scale: float, runs: int = 2, tasks: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(runs):
        for i in range(tasks):
            size = int(10 ** rng.uniform(4, 8))
            rows.append({"run_id": f"r{seed}-{run}", "recorded_at": 1e9 + run * 1000 + i, "key": f"k-{run}-{i}",
                         "category": ("a", "b")[i % 2], "kind": "replay", "input_bytes": size, "outcome": "success",
                         "duration_s": scale * 1e-6 * size * rng.lognormal(0, 0.05),
                         "peak_memory_bytes": 4.0 * size * rng.lognormal(0, 0.05)})
    return pd.DataFrame(rows)


@pytest.fixture
def trained(tmp_path):
    """Two trained model directories: a good one (scale 1) and a different one (scale 3)."""
    good, other = tmp_path / "train-good", tmp_path / "train-other"
    train_models(history(1.0), str(good), rounds=20)
    train_models(history(3.0, seed=1), str(other), rounds=20)
    return str(good), str(other)


def test_promote_serves_the_version_and_rollback_restores_it_exactly(tmp_path, trained):
    models = tmp_path / "models"
    registry = ModelRegistry(str(models))
    first = registry.register(trained[0], now=1.0)
    second = registry.register(trained[1], now=2.0)
    assert [v["status"] for v in registry.list_versions()] == ["candidate", "candidate"]

    probe = history(1.0, runs=1, tasks=20, seed=9)
    registry.promote(first, "first model", now=3.0)
    before = Predictor.load(str(models)).predict(probe)
    assert before.model_version == first and (before.quality == "model").all()
    registry.promote(second, "newer", now=4.0)
    middle = Predictor.load(str(models)).predict(probe)
    assert middle.model_version == second and not np.allclose(middle.duration_s, before.duration_s)

    assert registry.rollback("worse in production", now=5.0) == first
    after = Predictor.load(str(models)).predict(probe)
    assert after.model_version == first
    assert np.array_equal(after.duration_s, before.duration_s) and np.array_equal(after.peak_memory_bytes, before.peak_memory_bytes)
    assert (models / "manifest.json").read_bytes() == (models / "versions" / first / "manifest.json").read_bytes()

    versions = {v["version"]: v for v in registry.list_versions()}
    assert versions[first]["current"] and versions[first]["status"] == "promoted"
    assert versions[second]["status"] == "rejected" and "worse in production" in versions[second]["reason"]
    state = json.loads((models / "registry.json").read_text())
    assert [h["action"] for h in state["history"]] == ["promote", "promote", "rollback"]
    assert [e["event"] for e in registry.read_events()] == ["training", "training", "promote", "promote", "rollback"]
    with pytest.raises(ModelUnavailableError, match="nothing to roll back"):
        registry.rollback()


def test_a_running_predictor_follows_promotion_and_rollback(tmp_path, trained):
    models = tmp_path / "models"
    registry = ModelRegistry(str(models))
    first, second = registry.register(trained[0]), registry.register(trained[1])
    registry.promote(first, "initial")
    predictor = Predictor.load(str(models), reload_interval_s=0)
    registry.promote(second, "newer")
    assert predictor.maybe_reload() and predictor.model_version == second
    registry.rollback("bad")
    assert predictor.maybe_reload() and predictor.model_version == first


def test_an_unregistered_served_model_is_adopted_so_it_can_be_rolled_back(tmp_path, trained):
    models = tmp_path / "models"
    legacy = train_models(history(1.0), str(models), rounds=20)["model_version"]  # `daskflow model train` as today
    registry = ModelRegistry(str(models))
    assert registry.current == legacy
    new = registry.register(trained[1])
    registry.promote(new, "retrained")
    assert registry.rollback("regression") == legacy
    assert Predictor.load(str(models)).model_version == legacy


def test_unknown_version_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match="not in the registry.*daskflow model list"):
        ModelRegistry(str(tmp_path / "m")).promote("nope", "x")


def test_worse_candidate_is_rejected_and_better_is_promoted(tmp_path, trained):
    good = Predictor.load(trained[0])
    other = Predictor.load(trained[1])
    recent = history(1.0, runs=1, tasks=60, seed=5)  # the most recent held-out run follows the good law
    verdict = evaluate_candidate(other, good, recent)
    assert verdict.decision == "reject" and "does not beat the current" in verdict.reason
    assert verdict.metrics["candidate_duration_median_ape"] > verdict.metrics["current_duration_median_ape"]
    assert evaluate_candidate(good, other, recent).decision == "promote"
    assert evaluate_candidate(good, None, recent).reason == "no current model"
    few = evaluate_candidate(good, other, recent.head(5), PromotionConfig(min_rows=20))
    assert few.decision == "reject" and "not enough evidence" in few.reason

    registry = ModelRegistry(str(tmp_path / "models"))
    version = registry.register(trained[1])
    registry.reject(version, verdict.reason, now=7.0)
    assert registry.list_versions()[0]["status"] == "rejected"
    assert registry.read_events()[-1] == {"event": "rejection", "at": 7.0, "version": version, "reason": verdict.reason}


def test_event_log_is_bounded_and_skips_torn_lines(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"), config=PromotionConfig(max_events=5))
    for i in range(12):
        registry.append_event({"event": "drift", "at": float(i), "category": "c"})
    assert [e["at"] for e in registry.read_events()] == [7.0, 8.0, 9.0, 10.0, 11.0]
    with open(tmp_path / "models" / "events.jsonl", "a") as f:
        f.write('{"event": "half')
    assert len(registry.read_events()) == 5 and registry.read_events(limit=2)[-1]["at"] == 11.0


def test_memory_at_the_noise_floor_does_not_judge_a_candidate():
    """Every held-out peak is allocator noise (<= 64 KiB): the candidate is judged on duration alone."""
    import pandas as pd

    from daskflow.learning.registry import evaluate_candidate

    class Fixed:
        has_model = True

        def __init__(self, duration_s: float, peak: float) -> None:
            self.duration_s, self.peak = duration_s, peak

        def predict(self, rows):
            from daskflow.learning.predictor import Predictions

            n = len(rows)
            return Predictions(np.full(n, self.duration_s), np.full(n, self.peak), np.full(n, "model", dtype=object),
                               np.full(n, "model", dtype=object), "v")

    rows = pd.DataFrame({"duration_s": np.full(30, 2.0), "peak_memory_bytes": np.full(30, 65536.0)})
    verdict = evaluate_candidate(Fixed(2.0, 200_000.0), Fixed(1.0, 65536.0), rows)
    assert verdict.decision == "promote", verdict.reason
    assert verdict.metrics["candidate_memory_median_ape"] is None


class _PerRow:
    """Predicts given per-row arrays (a pure stand-in for a predictor)."""

    has_model = True

    def __init__(self, duration_s, peak) -> None:
        self.duration_s, self.peak = np.asarray(duration_s, float), np.asarray(peak, float)

    def predict(self, rows):
        from daskflow.learning.predictor import Predictions

        n = len(rows)
        return Predictions(self.duration_s[:n], self.peak[:n], np.full(n, "model", dtype=object),
                           np.full(n, "model", dtype=object), "v")


def _doubled_category_rows(n: int = 40, seed: int = 3):
    import pandas as pd

    rng = np.random.default_rng(seed)
    peaks = 100_000.0 * rng.lognormal(0, 0.6, n)  # ~100 KB peaks: 1.6x their spread is allocator noise
    return pd.DataFrame({"duration_s": np.full(n, 0.5) * rng.lognormal(0, 0.05, n), "peak_memory_bytes": peaks})


def test_memory_worse_only_at_measurement_resolution_is_a_tie_and_promotes():
    """A ×2-changed category: the candidate fixes duration; its memory median APE on ~100 KB peaks is
    higher than the current's by more than the tolerance, but no row differs by more than 64 KiB."""
    from daskflow.learning.registry import evaluate_candidate, paired_memory_test

    rows = _doubled_category_rows()
    n = len(rows)
    rng = np.random.default_rng(9)
    current = _PerRow(np.full(n, 0.25), np.full(n, 60_000.0))
    candidate = _PerRow(np.full(n, 0.5), np.full(n, 60_000.0) * rng.uniform(0.7, 1.0, n))  # < 18 KB lower: noise
    verdict = evaluate_candidate(candidate, current, rows)
    assert verdict.metrics["candidate_memory_median_ape"] > verdict.metrics["current_memory_median_ape"] * 1.05 + 0.02
    assert verdict.decision == "promote", verdict.reason
    assert "tie within measurement noise" in verdict.reason
    assert paired_memory_test([1.0], [1.0], [np.nan], 1.0) == (0, 0, 1.0)


def test_memory_genuinely_worse_beyond_resolution_is_still_rejected():
    from daskflow.learning.registry import evaluate_candidate

    rows = _doubled_category_rows()
    rows["peak_memory_bytes"] *= 50  # ~5 MB peaks: the errors below are far above the allocator's resolution
    n = len(rows)
    current = _PerRow(np.full(n, 0.25), rows["peak_memory_bytes"].to_numpy() * 1.1)
    candidate = _PerRow(np.full(n, 0.5), rows["peak_memory_bytes"].to_numpy() * 2.0)
    verdict = evaluate_candidate(candidate, current, rows)
    assert verdict.decision == "reject" and "memory median APE" in verdict.reason, verdict.reason
    assert verdict.metrics["memory_rows_worse"] == n and verdict.metrics["memory_sign_p"] < 0.05
