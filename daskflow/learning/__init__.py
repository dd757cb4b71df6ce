"""Learning what tasks cost: history, features, training, prediction.

* :mod:`~daskflow.learning.history` - the append-only Parquet task history.
* :mod:`~daskflow.learning.features` - ONE feature extraction for training and serving.
* :mod:`~daskflow.learning.training` - trains and evaluates the composite (or bare boosters), saves + manifest.
* :mod:`~daskflow.learning.manifest` - the manifest contract, validated whole before serving.
* :mod:`~daskflow.learning.predictor` - batched p50/p90 predictions with a per-category baseline.
* :mod:`~daskflow.learning.cleaning`, :mod:`~daskflow.learning.scaling`, :mod:`~daskflow.learning.selection`,
  :mod:`~daskflow.learning.quantiles`, :mod:`~daskflow.learning.composite` - the composite predictor's parts.
* :mod:`~daskflow.learning.online`, :mod:`~daskflow.learning.drift`, :mod:`~daskflow.learning.corrector` -
  learning within a run: online correction and drift detection (``OnlineCorrector`` is the steering adapter's API).
* :mod:`~daskflow.learning.registry`, :mod:`~daskflow.learning.retrain` - versions, promotion, rollback, self-healing.
* :mod:`~daskflow.learning.metrics` - the one prediction-error metric (median APE).
"""

from daskflow.learning.corrector import OnlineCorrector
from daskflow.learning.features import (
    FEATURE_COLUMNS,
    feature_frame,
    record_from_annotations,
)
from daskflow.learning.history import append_history, read_history
from daskflow.learning.manifest import validate_manifest
from daskflow.learning.metrics import median_ape
from daskflow.learning.predictor import (
    CostPrediction,
    OraclePredictor,
    Predictions,
    Predictor,
)
from daskflow.learning.retrain import maybe_retrain
from daskflow.learning.training import TrainingError, evaluate, train_models

__all__ = [
    "FEATURE_COLUMNS",
    "CostPrediction",
    "OnlineCorrector",
    "OraclePredictor",
    "Predictions",
    "Predictor",
    "TrainingError",
    "append_history",
    "evaluate",
    "feature_frame",
    "maybe_retrain",
    "median_ape",
    "read_history",
    "record_from_annotations",
    "train_models",
    "validate_manifest",
]
