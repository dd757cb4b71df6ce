"""daskflow: Dagster-style assets on a real Dask cluster, steered by learned task costs.

>>> import daskflow
>>> @daskflow.asset
... def numbers():
...     return [1, 2, 3]
>>> @daskflow.asset(io="json")
... def total(numbers):
...     return sum(numbers)
>>> graph = daskflow.build_asset_graph(daskflow.Definitions(assets=[numbers, total]))
>>> graph.topological_order()
('numbers', 'total')

``daskflow.materialize(...)`` runs a selection on a Dask cluster (embedded
``LocalCluster`` when no client or address is given). The execution layer is
imported on first use, so ``import daskflow`` stays light and pure.
"""

from __future__ import annotations

from daskflow import config
from daskflow.catalog import Catalog, Materialization, RunRecord, compute_data_version
from daskflow.definitions import (
    AssetCheckSpec,
    AssetContext,
    AssetSpec,
    CheckResult,
    Definitions,
    RetryPolicy,
    asset,
    asset_check,
)
from daskflow.errors import (
    AssetCycleError,
    AssetDefinitionError,
    CatalogError,
    DaskflowError,
    DuplicateAssetError,
    ModelUnavailableError,
    PartitionError,
    PipelineLoadError,
    SchemaMismatchError,
    SelectionError,
    StorageError,
    UnknownAssetError,
)
from daskflow.graph import AssetGraph, build_asset_graph
from daskflow.loading import load_definitions
from daskflow.partitions import DailyPartitions, HourlyPartitions, StaticPartitions
from daskflow.storage import AssetStore, StoredObject, validate_schema
from daskflow.timeline import RunRequest, SkipReason, asset_sensor, schedule, sensor

__version__ = "0.1.0"

_LAZY = {
    "materialize": ("daskflow.execution", "materialize"),
    "RunResult": ("daskflow.run_result", "RunResult"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'daskflow' has no attribute {name!r}")


__all__ = [
    "AssetCheckSpec",
    "AssetContext",
    "AssetCycleError",
    "AssetDefinitionError",
    "AssetGraph",
    "AssetSpec",
    "AssetStore",
    "Catalog",
    "CatalogError",
    "CheckResult",
    "DailyPartitions",
    "DaskflowError",
    "Definitions",
    "DuplicateAssetError",
    "HourlyPartitions",
    "Materialization",
    "ModelUnavailableError",
    "PartitionError",
    "PipelineLoadError",
    "RetryPolicy",
    "RunRecord",
    "RunRequest",
    "RunResult",
    "SchemaMismatchError",
    "SelectionError",
    "SkipReason",
    "StaticPartitions",
    "StorageError",
    "StoredObject",
    "UnknownAssetError",
    "__version__",
    "asset",
    "asset_check",
    "asset_sensor",
    "build_asset_graph",
    "compute_data_version",
    "config",
    "load_definitions",
    "materialize",
    "schedule",
    "sensor",
    "validate_schema",
]
