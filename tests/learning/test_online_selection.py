"""Online selection: per category, the estimate that has been right on the run's finished tasks (synthetic runs)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from daskflow.learning.corrector import CorrectorConfig, OnlineCorrector, training_means
from daskflow.learning.drift import Baseline
from daskflow.learning.online_selection import (
    CORRECTED,
    DEFAULT_CHOICE,
    MEAN,
    SERVED,
    OnlineSelection,
    OnlineSelectionConfig,
    choose,
    confidence,
    evidence_weight,
)

pytestmark = pytest.mark.timeout(60)


def served_model(means: dict[str, float]) -> SimpleNamespace:
    """What the corrector reads from a served predictor: the manifest's training means (no composite parts)."""
    manifest = {"model_version": "v1", "baseline": {"category_means": {c: {"duration_s": m, "peak_memory_bytes": 10 * m}
                                                                        for c, m in means.items()}}}
    return SimpleNamespace(manifest=manifest, model_version="v1", composite=None)


def corrector_for(means: dict[str, float], **selection) -> OnlineCorrector:
    return OnlineCorrector.from_predictor(served_model(means), CorrectorConfig(selection=OnlineSelectionConfig(**selection)))


def test_a_category_whose_model_is_worse_than_its_mean_in_the_run_gets_the_mean_after_k_tasks():
    """fit costs ~1 s (the training mean is right); the model scatters x/÷ 2 around it, no factor can fix that."""
    rng = np.random.default_rng(1)
    corrector = corrector_for({"fit": 1.0}, min_tasks=8)
    for t in range(7):
        corrector.observe("fit", float(np.exp(rng.normal(0, 0.7))), float(rng.uniform(0.95, 1.05)), now=float(t))
    assert corrector.choice("fit") == DEFAULT_CHOICE == CORRECTED  # before k tasks: today's behaviour
    corrector.observe("fit", 3.0, 1.0, now=7.0)
    assert corrector.choice("fit") == MEAN
    # every not-yet-run task of the category gets the mean, whatever the model said for it
    assert np.allclose(corrector.correct(["fit", "fit"], np.array([0.2, 5.0]), now=8.0), [1.0, 1.0])
    assert corrector.correct_one("fit", 7.0, now=8.0) == 1.0


def test_a_category_where_the_model_is_better_keeps_the_model():
    """Costs spread x/÷ 3 with input size; the model follows them within 5 %, the mean (1 s) cannot."""
    rng = np.random.default_rng(2)
    corrector = corrector_for({"fit": 1.0}, min_tasks=8)
    for t in range(40):
        actual = float(np.exp(rng.normal(0, 1.1)))
        corrector.observe("fit", actual * float(rng.uniform(0.95, 1.05)), actual, now=float(t))
    assert corrector.choice("fit") in ("corrected", "served")
    assert corrector.selection["duration"].categories["fit"].switches == 0
    assert corrector.correct(["fit"], np.array([4.0]), now=40.0)[0] == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize("seed", range(6))
def test_noise_does_not_flip_flop(seed):
    """Model and mean equally good (independent noise of one size): at most one change of mind in 300 tasks."""
    rng = np.random.default_rng(seed)
    corrector = corrector_for({"fit": 1.0}, min_tasks=8)
    changes, last = 0, None
    for t in range(300):
        actual = float(np.exp(rng.normal(0, 0.3)))
        corrector.observe("fit", float(np.exp(rng.normal(0, 0.3))), actual, now=float(t))
        choice = corrector.choice("fit")
        changes += last is not None and choice != last
        last = choice
    assert changes <= 1


def test_choose_needs_margin_and_paired_evidence():
    tied = {"mean": [0.3, 0.1] * 4, "corrected": [0.1, 0.3] * 4}
    assert choose(tied, None, 0.05, 0.07) == MEAN  # same median, no evidence either way: the mean
    better = {"mean": [0.3] * 8, "corrected": [0.1] * 8}
    assert choose(better, None, 0.05, 0.07) == CORRECTED
    assert choose(better, MEAN, 0.05, 0.07) == CORRECTED  # clearly better: switch
    few = {"mean": [0.3] * 3, "corrected": [0.1] * 3}
    assert choose(few, MEAN, 0.05, 0.07) == MEAN  # 3 of 3 is not significant at 0.07 (p = 0.125)
    assert choose({"corrected": [0.2] * 8, "served": [0.1] * 8}, None, 0.05, 0.07) == "served"  # no mean known


def test_a_drift_alarm_clears_the_evidence_and_the_category_follows_the_run():
    """The mean won; then the cost doubles (a code change): the alarm serves the run's own tasks, not the stale mean."""
    corrector = corrector_for({"load": 1.0}, min_tasks=8)
    corrector.drift["duration"].baselines["load"] = Baseline(0.0, 0.1)
    rng = np.random.default_rng(3)
    for t in range(30):
        corrector.observe("load", float(np.exp(rng.normal(0, 0.5))), float(rng.uniform(0.97, 1.03)), now=float(t))
    assert corrector.choice("load") == MEAN
    fired = [corrector.observe("load", 1.0, 2.0 * float(rng.uniform(0.97, 1.03)), now=float(t)) for t in range(30, 60)]
    assert any(fired) and "load" in corrector.drifted()
    assert corrector.choice("load") == CORRECTED  # the mean (1 s) lost to the run's tasks since the change
    assert corrector.correct(["load"], np.array([1.0]), now=60.0)[0] == pytest.approx(2.0, rel=0.1)


def test_evidence_weight_moves_from_its_prior_toward_the_candidate_the_tasks_favour():
    closer = {MEAN: [0.3] * 4, CORRECTED: [0.1] * 4}  # the correction closer on 4 of 4: two-sided p 1/8
    behind = {MEAN: [0.1] * 4, CORRECTED: [0.3] * 4}
    even = {MEAN: [0.1, 0.3, 0.2, 0.2], CORRECTED: [0.3, 0.1, 0.2, 0.2]}  # 1 each way, 2 equal
    assert evidence_weight(closer, 0.5) == 0.5 + 0.5 * (1 - 1 / 8)
    assert evidence_weight(behind, 0.5) == 0.5 / 8
    assert evidence_weight(closer, 1.0) == 1.0  # the prior already on the correction: only evidence against moves it
    assert evidence_weight(behind, 1.0) == 1 / 8
    assert evidence_weight(even, 0.5) == 0.5 and evidence_weight(even, 1.0) == 1.0
    assert evidence_weight({MEAN: [], CORRECTED: []}, 0.5) == 0.5 == evidence_weight({CORRECTED: [0.1]}, 0.5)
    assert evidence_weight(behind, 1.0, ties=[0.2] * 4) == 1.0  # every difference within the resolution: no evidence
    mixed = {MEAN: [0.3, 0.3, 0.1], CORRECTED: [0.1, 0.1, 0.3]}  # 2 closer, 1 behind: p2 = 2 * 4/8 = 1
    assert evidence_weight(mixed, 0.5) == 0.5


def test_before_the_first_decision_a_correction_the_mean_beats_is_blended_toward_it_and_not_with_early_shrink_off():
    """The model's p50 (2 s, the correction barely moves it) vs the training mean 1 s, the truth 1 s: the first
    task is served the correction alone; after k tasks the mean closer on all of them, log weight 2 / 2**k."""
    for early in (True, False):
        corrector = corrector_for({"fit": 1.0}, min_tasks=8, early_shrink=early)
        assert corrector.selection["duration"].blend_weight("fit") == 1.0
        for k in range(1, 6):
            corrector.observe("fit", 2.0, 1.0, now=float(k))
            weight = corrector.selection["duration"].blend_weight("fit")
            assert corrector.choice("fit") == CORRECTED
            assert weight == (min(1.0, 2.0 / 2**k) if early else 1.0)
            corrected = 2.0 * corrector._correction("fit", float(k), "duration")
            assert corrector.correct_one("fit", 2.0, now=float(k)) == pytest.approx(corrected ** weight * 1.0 ** (1 - weight))
    # the correction closer on the first tasks: served alone, as before
    corrector = corrector_for({"fit": 1.0}, min_tasks=8)
    for k in range(1, 6):
        corrector.observe("fit", 2.0, 2.0, now=float(k))
        assert corrector.selection["duration"].blend_weight("fit") == 1.0


def _mean_won(selection: OnlineSelection, category: str = "load", tasks: int = 8) -> None:
    for _ in range(tasks):
        selection.record(category, {CORRECTED: 2.0, MEAN: 1.0}, actual=1.0)
    assert selection.choice(category) == MEAN


def test_an_alarm_on_a_mean_served_category_hedges_it_until_the_next_decision_and_every_later_alarm():
    selection = OnlineSelection(OnlineSelectionConfig(min_tasks=8))
    _mean_won(selection)
    assert selection.blend_weight("load") == 1.0  # decided: served by its choice alone
    selection.forget("load")
    assert (selection.choice("load"), selection.blend_weight("load")) == (CORRECTED, 0.5)
    for n in range(1, 8):
        selection.record("load", {CORRECTED: 1.0, MEAN: 2.0}, actual=1.0)  # after the change the correction is right
        assert selection.blend_weight("load") == pytest.approx(1.0 - min(1.0, 2.0 / 2**n) / 2)  # 1/2 + 1/2 (1 - p2)
    selection.record("load", {CORRECTED: 1.0, MEAN: 2.0}, actual=1.0)
    # decided: the hedge ends; the choice's weight is its sign evidence against the mean (closer on 8 of 8: 1 - 2/256)
    assert (selection.choice("load"), selection.blend_weight("load")) == (CORRECTED, 1.0 - 2.0 / 256)
    selection.forget("load")  # a later alarm, now on a corrected-served category that was hedged before
    assert selection.blend_weight("load") == 0.5


def test_an_alarm_on_a_model_served_category_is_not_hedged_nor_with_hedge_off():
    selection = OnlineSelection(OnlineSelectionConfig(min_tasks=4))
    for _ in range(4):
        selection.record("fit", {CORRECTED: 1.0, MEAN: 2.0}, actual=1.0)
    assert selection.choice("fit") == CORRECTED
    selection.forget("fit")
    assert selection.blend_weight("fit") == 1.0 and "fit" not in selection.categories
    off = OnlineSelection(OnlineSelectionConfig(min_tasks=8, hedge=False))
    _mean_won(off)
    off.forget("load")
    assert off.blend_weight("load") == 1.0


def test_a_hedged_category_is_served_the_geometric_blend_of_the_correction_and_its_mean():
    """An alarm clears a mean choice: the next task gets sqrt(corrected x mean), then the correction's weight rises."""
    corrector = corrector_for({"load": 1.0}, min_tasks=8)
    corrector.drift["duration"].baselines["load"] = Baseline(0.0, 0.1)
    for t in range(30):
        corrector.observe("load", 3.0 if t % 2 else 0.4, 1.0, now=float(t))  # the model scatters, the mean is right
    assert corrector.choice("load") == MEAN
    t = 30
    while not corrector.drifted():
        assert corrector.observe("load", 1.0, 2.0, now=float(t)) is None or corrector.drifted()
        t += 1
    weight = corrector.selection["duration"].blend_weight("load")
    assert weight == 0.5
    corrected = 1.0 * corrector._correction("load", float(t), "duration")
    blended = corrected ** weight * 1.0 ** (1 - weight)
    assert corrector.correct(["load"], np.array([1.0]), now=float(t))[0] == pytest.approx(blended)
    assert corrector.correct_one("load", 1.0, now=float(t)) == pytest.approx(blended)
    # the policy's factor view: the mean's part as a factor of the geometric mean of the served p50s (as for a mean choice)
    served = [3.0 if i % 2 else 0.4 for i in range(30)] + [1.0] * (t - 30)
    to_mean = 1.0 / float(np.exp(np.mean(np.log(served))))
    assert corrector.factor("load", now=float(t)) == pytest.approx(corrector._correction("load", float(t), "duration") ** 0.5 * to_mean ** 0.5)
    for _ in range(8):  # the selection decides again on the tasks since the change: the blend ends
        corrector.observe("load", 1.0, 2.0, now=float(t))
        t += 1
    evidence = corrector.selection["duration"].categories["load"]
    assert evidence.choice == CORRECTED and evidence.hedged  # decided again (hedged stays for a later alarm)
    weight = corrector.selection["duration"].blend_weight("load")
    assert weight == confidence(evidence.errors, CORRECTED) > 0.9  # decided on the tasks since the change: the hedge ended
    corrected = corrector._correction("load", float(t), "duration")
    assert corrector.correct_one("load", 1.0, now=float(t)) == pytest.approx(corrected ** weight)


def test_confidence_is_one_minus_the_two_sided_sign_test_p_against_the_mean():
    assert confidence({MEAN: [0.3] * 8, CORRECTED: [0.1] * 8}, CORRECTED) == 1.0 - 2.0 / 256
    assert confidence({MEAN: [0.3] * 8, CORRECTED: [0.1] * 8}, MEAN) == 1.0  # the mean is not blended with itself
    assert confidence({CORRECTED: [0.1] * 8}, CORRECTED) == 1.0  # no mean known
    tie = {MEAN: [0.3, 0.1] * 6, CORRECTED: [0.1, 0.3] * 6}
    assert confidence(tie, CORRECTED) == 0.0  # no sign either way: all weight on the mean
    nan = float("nan")
    assert confidence({MEAN: [0.3, nan, 0.2, 0.2], CORRECTED: [0.1, 0.1, 0.2, 0.1]}, CORRECTED) == 0.5  # 2 of 2 untied


def test_a_choice_that_barely_beats_the_mean_is_shrunk_toward_it_and_not_with_shrink_off():
    """The served p50 (1.25 s) is closer than the mean (1 s) on 18 of 24 tasks (p ~ 0.011: chosen) - served with
    log weight 1 - 2p against the mean."""
    for shrink in (True, False):
        corrector = corrector_for({"fit": 1.0}, min_tasks=24, window=24, shrink=shrink)
        for t in range(24):
            corrector.observe("fit", 1.25, 1.3 if t % 4 else 1.05, now=float(t))
        evidence = corrector.selection["duration"].categories["fit"]
        chosen = corrector.choice("fit")
        assert chosen != MEAN
        weight = corrector.selection["duration"].blend_weight("fit")
        if not shrink:
            assert weight == 1.0
            continue
        p_one_sided = sum(math.comb(24, k) for k in range(18, 25)) / 2.0**24
        assert weight == pytest.approx(1.0 - 2.0 * p_one_sided) == confidence(evidence.errors, chosen)
        base = 1.0 if chosen == "served" else corrector._correction("fit", 24.0, "duration")
        blended = (1.25 * base) ** weight * 1.0 ** (1.0 - weight)
        assert corrector.correct_one("fit", 1.25, now=24.0) == pytest.approx(blended)
        assert corrector.correct(["fit"], np.array([1.25]), now=24.0)[0] == pytest.approx(blended)


def test_error_differences_within_the_resolution_are_ties_in_the_sign_tests():
    """Per task the tie tolerance is a difference of percentage errors (the resolution over the task's actual)."""
    errors = {MEAN: [0.25] * 8, CORRECTED: [0.125] * 8}  # closer on every task, by 1/8 of the actual
    assert choose(errors, None, 0.05, 0.07) == CORRECTED
    assert confidence(errors, CORRECTED) == 1.0 - 2.0 / 256
    within, beyond = [0.125] * 8, [0.12] * 8  # the resolution as a share of each task's actual
    assert choose(errors, None, 0.05, 0.07, within) == MEAN  # no task says anything: the mean stays
    assert confidence(errors, CORRECTED, within) == 0.0
    assert choose(errors, None, 0.05, 0.07, beyond) == CORRECTED
    assert confidence(errors, CORRECTED, beyond) == 1.0 - 2.0 / 256
    mixed = [0.125, 0.0] * 4  # half of the tasks are ties: 4 of 4 untied, one-sided p 1/16
    assert confidence(errors, CORRECTED, mixed) == 1.0 - 2.0 / 16


def test_a_candidate_closer_than_the_mean_only_within_the_resolution_does_not_replace_it():
    """Peaks of ~2.5 MB, the training mean 2.50 MB, the truth 2.55 MB: the correction lands 40 KB closer on every
    task - below the 64 KiB resolution of a peak, so no task is evidence and the category keeps its mean;
    with the resolution 0 (or a larger gap) the correction wins as before."""
    for resolution, gap, expected in ((64 * 1024.0, 40e3, MEAN), (0.0, 40e3, CORRECTED), (64 * 1024.0, 400e3, CORRECTED)):
        selection = OnlineSelection(OnlineSelectionConfig(min_tasks=8), resolution=resolution)
        for _ in range(12):
            selection.record("bowtie2", {MEAN: 2.50e6, CORRECTED: 2.50e6 + gap, SERVED: 2.50e6}, actual=2.50e6 + gap + 10e3)
        assert selection.choice("bowtie2") == expected, (resolution, gap)
        assert selection.blend_weight("bowtie2") == pytest.approx(1.0 if expected == MEAN else 1.0 - 2.0 / 2**12)


def test_the_corrector_gives_each_target_its_own_resolution():
    """Durations tie within ``duration_resolution_s``, peaks within ``memory_resolution_bytes`` (their units differ)."""
    corrector = corrector_for({"fit": 1.0}, duration_resolution_s=0.002, memory_resolution_bytes=4096.0)
    assert corrector.selection["duration"].resolution == 0.002
    assert corrector.selection["peak_memory"].resolution == 4096.0
    for t in range(8):  # the served p50 is 1.5 ms closer than the 1 s mean on every task: within 2 ms, a tie
        corrector.observe("fit", 1.0015, 1.002, now=float(t))
    assert corrector.choice("fit") == MEAN
    off = corrector_for({"fit": 1.0}, duration_resolution_s=0.0)
    for t in range(8):
        off.observe("fit", 1.0015, 1.002, now=float(t))
    assert off.choice("fit") != MEAN


def test_factor_view_of_a_mean_choice_is_exact_for_a_constant_served_p50():
    """The policy plans with per-category factors of the served p50: mean / geometric mean of the served p50s."""
    corrector = corrector_for({"fit": 2.0}, min_tasks=4)
    for t in range(10):
        corrector.observe("fit", 8.0, 2.0 * (1 + 0.01 * (t % 3)), now=float(t))  # served 8 s (a stale mean), truth ~2 s
    assert corrector.choice("fit") == MEAN
    assert 8.0 * corrector.factor("fit", now=10.0) == pytest.approx(2.0)
    assert corrector.correct_one("fit", 8.0, now=10.0) == pytest.approx(2.0)


def test_disabled_selection_serves_the_corrected_p50():
    corrector = corrector_for({"fit": 1.0}, enabled=False)
    for t in range(20):
        corrector.observe("fit", 3.0 if t % 2 else 0.3, 1.0, now=float(t))
    assert corrector.choice("fit") == CORRECTED
    assert corrector.correct(["fit"], np.array([3.0]), now=20.0)[0] == pytest.approx(3.0 * corrector.factor("fit", 20.0))


def test_reset_takes_the_served_models_training_means_and_forgets_the_choices():
    corrector = corrector_for({"fit": 1.0}, min_tasks=4)
    for t in range(10):
        corrector.observe("fit", 5.0, 1.0, now=float(t))
    assert corrector.choice("fit") == MEAN
    corrector.reset(served_model({"fit": 3.0, "load": 0.5}))
    assert corrector.choice("fit") == CORRECTED and corrector.means["duration"] == {"fit": 3.0, "load": 0.5}
    assert corrector.means["peak_memory"]["load"] == 5.0
    assert training_means(SimpleNamespace(manifest=None)) == {"duration": {}, "peak_memory": {}}


def test_selection_state_is_plain_and_describes_itself():
    selection = OnlineSelection(OnlineSelectionConfig(min_tasks=2))
    for _ in range(3):
        selection.record("a", {"mean": 1.0, "corrected": 2.0, "served": None}, actual=1.0)
    assert selection.record("a", {"mean": 1.0}, actual=float("nan")) is False  # unusable: ignored
    described = selection.describe()["a"]
    assert described["finished"] == 3 and described["median_errors"]["mean"] == 0.0 and "served" not in described["median_errors"]
