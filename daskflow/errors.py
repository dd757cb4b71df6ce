"""The daskflow error hierarchy.

Every message names the object involved, what was expected, and how to fix it.
"""

from __future__ import annotations


class DaskflowError(Exception):
    """Base class for all daskflow errors."""


class AssetDefinitionError(DaskflowError):
    """An ``@asset`` / ``@asset_check`` / ``Definitions`` is malformed."""


class AssetCycleError(AssetDefinitionError):
    """The asset dependency graph has a cycle."""


class UnknownAssetError(AssetDefinitionError):
    """A parameter or ``deps=`` entry names an asset that is not defined."""


class DuplicateAssetError(AssetDefinitionError):
    """Two assets share one key."""


class PartitionError(AssetDefinitionError):
    """Partitions are incompatible, or a partition key is unknown."""


class SelectionError(DaskflowError):
    """An asset selection string matches nothing or is malformed."""


class PipelineLoadError(DaskflowError):
    """A pipeline file or module could not be loaded."""


class SchemaMismatchError(DaskflowError):
    """An asset's output does not match its declared ``pyarrow.Schema``."""


class StorageError(DaskflowError):
    """Reading or writing asset data failed."""


class CatalogError(DaskflowError):
    """The SQLite catalog is missing data or inconsistent."""


class RunFailedError(DaskflowError):
    """A run finished with failed assets (raised only when asked to)."""


class ModelUnavailableError(DaskflowError):
    """No usable model: missing, corrupt, or incompatible manifest."""


class TraceFormatError(DaskflowError):
    """A workload trace JSON file is malformed."""


class ClusterError(DaskflowError):
    """A daskflow cluster could not be started, found, or stopped."""


class UnknownSettingError(DaskflowError, KeyError):
    """A ``daskflow.*`` setting name that ``daskflow.yaml`` does not define (a typo, or a key missing there)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OptionalDependencyError(DaskflowError, ImportError):
    """An optional extra is not installed."""


def import_optional(module: str, extra: str):
    """Import ``module`` or raise with an install hint naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise OptionalDependencyError(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'daskflow[{extra}]'"
        ) from exc


class TrainingError(DaskflowError):
    """The task history cannot train a model (no usable rows)."""


class PolicyError(DaskflowError):
    """Placement rules are malformed, or a classified asset has no allowed worker."""


class ListenerError(DaskflowError):
    """A configured run listener cannot be imported or built."""


class TimelineError(DaskflowError):
    """Base class of timeline errors (schedules, sensors, the daemon)."""


class TimelineDefinitionError(TimelineError, AssetDefinitionError):
    """A schedule or sensor is malformed (bad cron, timezone, target, partitions)."""


class DaemonLeaseError(TimelineError):
    """Another daemon holds the catalog's lease (or this one lost it)."""
