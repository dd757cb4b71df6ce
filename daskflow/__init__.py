"""daskflow: Dagster-style assets on a real Dask cluster, steered by learned task costs.

The public API is re-exported here; see ``__all__``.
"""

from __future__ import annotations

from daskflow import config
from daskflow.errors import (
    AssetCycleError,
    AssetDefinitionError,
    DaskflowError,
    ModelUnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "AssetCycleError",
    "AssetDefinitionError",
    "DaskflowError",
    "ModelUnavailableError",
    "__version__",
    "config",
]
