"""The learning tunables are read from daskflow.yaml (``daskflow config show`` lists them) and match the dataclasses."""

from __future__ import annotations

import dask.config

from daskflow.learning.corrector import CorrectorConfig, corrector_config_from_settings
from daskflow.learning.drift import DriftConfig, drift_config_from_settings
from daskflow.learning.registry import PromotionConfig, promotion_config_from_settings
from daskflow.learning.retrain import RetrainConfig, retrain_config_from_settings


def test_packaged_defaults_are_the_dataclass_defaults():
    assert corrector_config_from_settings() == CorrectorConfig()
    assert drift_config_from_settings() == DriftConfig()
    assert promotion_config_from_settings() == PromotionConfig()
    assert retrain_config_from_settings() == RetrainConfig()


def test_settings_and_overrides_are_honoured():
    with dask.config.set({"daskflow.models.drift.threshold": 5, "daskflow.steering.online.half-life": "10s",
                          "daskflow.models.retrain.min-new-rows": 7, "daskflow.models.promotion.min-rows": 3}):
        corrector = corrector_config_from_settings()
        assert corrector.drift.threshold == 5.0 and corrector.online.half_life_s == 10.0
        assert retrain_config_from_settings().min_new_rows == 7
        assert retrain_config_from_settings(min_new_rows=9, rounds=None).min_new_rows == 9
        assert promotion_config_from_settings().min_rows == 3
    with dask.config.set({"daskflow.steering.online.selection.min-tasks": 3, "daskflow.steering.online.selection.enabled": False}):
        selection = corrector_config_from_settings().selection
        assert selection.min_tasks == 3 and selection.enabled is False and selection.margin == 0.05
