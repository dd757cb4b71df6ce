"""The accuracy benchmark's application folds: every held-out row of an application pooled (pure, no cluster)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from benchmarks import accuracy

pytestmark = pytest.mark.timeout(30)


def _fold(app: str, model, base, online) -> dict:
    arrays = tuple(np.asarray(v, dtype=float) for v in (model, base, online, online))
    ones = np.ones(len(base))
    return {"application": app, "_ape": {"duration": arrays}, "_cover": {"duration": (ones, ones, ones)}}


def test_an_application_fold_pools_its_instances_rows_not_their_ratios():
    """Instance ratios 2.0 (2 rows) and 0.5 (6 rows): their mean says 1.25; the pooled rows say otherwise."""
    small = _fold("a", [2, 2], [1, 1], [2, 2])
    large = _fold("a", [1] * 6, [2] * 6, [1] * 6)
    other = _fold("b", [3], [1], [3])
    apps = accuracy.by_application([small, large, other])
    assert apps["a"]["rows"] == 8 and apps["a"]["instances"] == 2
    assert apps["a"]["online_duration_ratio"] == pytest.approx(np.median([2, 2] + [1] * 6) / np.median([1, 1] + [2] * 6))
    assert "memory_ratio" not in apps["a"]  # no memory rows: no memory fold
    summary = accuracy.summarize([small, large, other])
    assert summary["worst_application_online_duration_ratio"] == pytest.approx(3.0)  # b


def test_the_application_fold_doctests_pass():
    assert doctest.testmod(accuracy).failed == 0
