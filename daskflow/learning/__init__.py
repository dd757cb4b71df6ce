"""Learning what tasks cost: history, features, training, prediction.

* :mod:`~daskflow.learning.history` - the append-only Parquet task history.
* :mod:`~daskflow.learning.features` - ONE feature extraction for training and serving.
* :mod:`~daskflow.learning.training` - two XGBoost regressors (duration, peak memory) + manifest.
* :mod:`~daskflow.learning.predictor` - batched predictions with a per-category baseline.
* :mod:`~daskflow.learning.metrics` - the one prediction-error metric (median APE).
"""

from daskflow.learning.features import (
    FEATURE_COLUMNS,
    feature_frame,
    record_from_annotations,
)
from daskflow.learning.history import append_history, read_history
from daskflow.learning.metrics import median_ape
from daskflow.learning.predictor import (
    CostPrediction,
    OraclePredictor,
    Predictions,
    Predictor,
)
from daskflow.learning.training import TrainingError, evaluate, train_models

__all__ = [
    "FEATURE_COLUMNS",
    "CostPrediction",
    "OraclePredictor",
    "Predictions",
    "Predictor",
    "TrainingError",
    "append_history",
    "evaluate",
    "feature_frame",
    "median_ape",
    "read_history",
    "record_from_annotations",
    "train_models",
]
