"""ONE feature extraction for training and serving (no train/serve skew).

Design note
-----------
A *record* is a plain dict with the shape of a history row (see
``daskflow.learning.history.HISTORY_SCHEMA``): ``category``, ``kind``,
``asset``, ``partition``, ``input_bytes``, ``input_rows``, ``n_inputs``,
``n_dependencies``, ``dependency_bytes``, ``worker_threads``,
``worker_memory_limit_bytes`` and more. The recorder writes records, the
trainer reads them back from Parquet, and the steering plugin builds them from
task annotations with :func:`record_from_annotations` - all three end in
:func:`feature_frame`, the only place where a record becomes model input.

Features (:data:`FEATURE_COLUMNS`):

* ``category`` - pandas ``category`` dtype with a *fixed* list of levels (the
  levels seen in training, saved in the model manifest). XGBoost treats it as
  a native categorical; a category not in the list becomes missing (NaN).
* ``kind`` - code of asset/check/replay/dask (fixed list), NaN when unknown.
* partition features - when the partition key parses as a date: year, month,
  day, day of week; when it is a number: that number. The stable hash bucket
  of the key (CRC32 mod 1024, ``partition_hash``) is still *computed* (models
  of manifest format 1 were trained on it and keep being served) but no longer
  *trained on*: a hash can only let the model memorise single partitions, and
  held-out runs are new partitions (issue 12; on the traces, which have no
  partitions, it is constant and changes nothing).
* sizes - ``log1p`` of input bytes/rows and dependency bytes (trees do not care
  about monotone transforms, but it keeps magnitudes comparable), counts of
  inputs and dependencies.
* worker resources - threads and memory limit of the worker.
* graph position - ``depth`` (longest dependency chain above the task) and
  ``n_dependents`` (fan-out), from the annotation, which the planner and the
  replay harness fill with :func:`graph_positions` (NaN otherwise); fan-in is
  ``n_dependencies``. Computed and
  recorded, but NOT trained on: on the traces (held out per instance) adding
  them changed nothing for the composite (duration ratio 0.655 -> 0.656) and
  made the bare booster worse (0.625 -> 0.671); the category and sizes already
  say what position says.

Missing numbers stay NaN: XGBoost learns a default direction for them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Every column :func:`feature_frame` can compute (a manifest's ``feature_columns`` must be a subset).
COMPUTED_COLUMNS: tuple[str, ...] = (
    "category",
    "kind_code",
    "partition_year",
    "partition_month",
    "partition_day",
    "partition_dayofweek",
    "partition_number",
    "partition_hash",
    "log_input_bytes",
    "log_input_rows",
    "n_inputs",
    "n_dependencies",
    "log_dependency_bytes",
    "worker_threads",
    "worker_memory_limit_bytes",
    "depth",
    "n_dependents",
)

#: Computed but not trained on: the partition hash only memorises; the graph position (depth,
#: n_dependents) is filled by the planner and the harness but is not yet in the trained set.
UNTRAINED_COLUMNS: frozenset[str] = frozenset({"partition_hash", "depth", "n_dependents"})

#: The columns new models are trained on.
FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in COMPUTED_COLUMNS if c not in UNTRAINED_COLUMNS)

KIND_LEVELS: tuple[str, ...] = ("asset", "check", "replay", "dask")

#: Record fields that feed the features (everything else in a row is ignored).
RECORD_FIELDS: tuple[str, ...] = (
    "category",
    "kind",
    "asset",
    "partition",
    "input_bytes",
    "input_rows",
    "n_inputs",
    "n_dependencies",
    "dependency_bytes",
    "worker_threads",
    "worker_memory_limit_bytes",
    "depth",
    "n_dependents",
)

_PARTITION_HASH_BUCKETS = 1024


def record_from_annotations(
    key: str,
    annotations: Mapping[str, Any] | None,
    *,
    n_dependencies: int | None = None,
    dependency_bytes: int | None = None,
    worker_threads: int | None = None,
    worker_memory_limit_bytes: int | None = None,
    key_prefix: str | None = None,
) -> dict[str, Any]:
    """A feature record for one task from its ``annotations["daskflow"]`` dict.

    Tasks without daskflow annotations (plain Dask tasks) are categorised by
    their key prefix, as Dask does.

    >>> r = record_from_annotations("load-abc-1", {"category": "load", "input_bytes": 10})
    >>> r["category"], r["input_bytes"], r["kind"]
    ('load', 10, 'asset')
    """
    get = (annotations or _NO_ANNOTATIONS).get  # read only: no copy (the recorder calls this per finished task)
    category = get("category") or key_prefix or _key_prefix(key)
    partition = get("partition")
    return {
        "key": key if type(key) is str else str(key),
        "run_id": get("run_id"),
        "category": category if type(category) is str else str(category),
        "kind": get("kind") or ("asset" if annotations else "dask"),
        "asset": get("asset"),
        "partition": None if partition is None else str(partition),
        "code_version": get("code_version"),
        "input_bytes": _int_or_none(get("input_bytes")),
        "input_rows": _int_or_none(get("input_rows")),
        "n_inputs": _int_or_none(get("n_inputs")),
        "n_dependencies": _int_or_none(n_dependencies),
        "dependency_bytes": _int_or_none(dependency_bytes),
        "worker_threads": _int_or_none(worker_threads),
        "worker_memory_limit_bytes": _int_or_none(worker_memory_limit_bytes),
        "depth": _int_or_none(get("depth")),
        "n_dependents": _int_or_none(get("n_dependents")),
        "true_duration_s": _float_or_none(get("true_duration_s")),
        "true_peak_memory_bytes": _float_or_none(get("true_peak_memory_bytes")),
    }


_NO_ANNOTATIONS: Mapping[str, Any] = {}


def feature_frame(
    records: Sequence[Mapping[str, Any]] | pd.DataFrame,
    categories: Sequence[str] | None = None,
    columns: Sequence[str] = FEATURE_COLUMNS,
) -> pd.DataFrame:
    """Model input for ``records`` (list of dicts or a history DataFrame).

    ``categories`` is the fixed list of category levels (from the manifest);
    ``None`` uses the sorted distinct categories of ``records`` (training).
    Columns are exactly ``columns`` (default :data:`FEATURE_COLUMNS`; a model's
    manifest names its own, a subset of :data:`COMPUTED_COLUMNS`), numeric ones ``float64``.
    """
    if isinstance(records, pd.DataFrame):
        source = records
    else:
        source = pd.DataFrame.from_records(list(records), columns=list(RECORD_FIELDS)) if len(records) else pd.DataFrame(columns=list(RECORD_FIELDS))
    n = len(source)

    def column(name: str) -> pd.Series:
        if name in source.columns:
            return source[name].reset_index(drop=True)
        return pd.Series([None] * n, dtype=object)

    def numeric(name: str) -> np.ndarray:
        return pd.to_numeric(column(name), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)

    category_values = column("category").astype(object).where(column("category").notna(), None)
    category_strings = [None if v is None else str(v) for v in category_values]
    levels = sorted({c for c in category_strings if c is not None}) if categories is None else list(categories)
    level_set = set(levels)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    # Unseen categories become missing (not a new level): codes must match the manifest's level list.
    out["category"] = pd.Categorical([c if c in level_set else None for c in category_strings], categories=levels)

    kind_index = {k: float(i) for i, k in enumerate(KIND_LEVELS)}
    out["kind_code"] = np.array([kind_index.get(str(k), np.nan) if k is not None else np.nan for k in column("kind")], dtype="float64")

    cache: dict[Any, tuple] = {}
    parts = np.array(
        [cache[p] if p in cache else cache.setdefault(p, partition_features(p)) for p in column("partition")], dtype="float64"
    ).reshape(n, 6)
    for i, name in enumerate(("partition_year", "partition_month", "partition_day", "partition_dayofweek", "partition_number", "partition_hash")):
        out[name] = parts[:, i]

    out["log_input_bytes"] = np.log1p(np.clip(numeric("input_bytes"), 0, None))
    out["log_input_rows"] = np.log1p(np.clip(numeric("input_rows"), 0, None))
    out["n_inputs"] = numeric("n_inputs")
    out["n_dependencies"] = numeric("n_dependencies")
    out["log_dependency_bytes"] = np.log1p(np.clip(numeric("dependency_bytes"), 0, None))
    out["worker_threads"] = numeric("worker_threads")
    out["worker_memory_limit_bytes"] = numeric("worker_memory_limit_bytes")
    out["depth"] = numeric("depth")
    out["n_dependents"] = numeric("n_dependents")
    return out[list(columns)]


def partition_features(partition: Any) -> tuple[float, float, float, float, float, float]:
    """``(year, month, day, dayofweek, number, hash_bucket)`` of a partition key; NaN where not applicable.

    >>> partition_features("2024-03-05")[:4]
    (2024.0, 3.0, 5.0, 1.0)
    >>> partition_features(None)
    (nan, nan, nan, nan, nan, nan)
    """
    nan = math.nan
    if partition is None or (isinstance(partition, float) and math.isnan(partition)):
        return (nan, nan, nan, nan, nan, nan)
    text = str(partition)
    bucket = float(zlib.crc32(text.encode("utf-8")) % _PARTITION_HASH_BUCKETS)
    year = month = day = dow = number = nan
    try:
        number = float(text)
        if math.isinf(number):
            number = nan
    except ValueError:
        pass
    if math.isnan(number) and len(text) >= 7 and text[:4].isdigit():
        try:
            stamp = pd.Timestamp(text)
            year, month, day, dow = float(stamp.year), float(stamp.month), float(stamp.day), float(stamp.weekday())
        except (ValueError, TypeError):
            pass
    return (year, month, day, dow, number, bucket)


def graph_positions(dependencies: Mapping[Any, Iterable[Any]]) -> dict[Any, dict[str, int]]:
    """Per task its graph features: ``depth`` (longest dependency chain above it, roots 0) and ``n_dependents`` (fan-out).

    The one definition used by the planner (asset runs), the replay harness and the accuracy
    benchmark; fan-in is ``n_dependencies``, which the scheduler plugins read from the task
    itself. Dependencies outside the mapping are ignored. Built on dask's graph utilities
    (:func:`dask.core.toposort`, :func:`dask.core.reverse_dict`).

    >>> graph_positions({"a": [], "b": ["a"], "c": ["a", "b"]})
    {'a': {'depth': 0, 'n_dependents': 2}, 'b': {'depth': 1, 'n_dependents': 1}, 'c': {'depth': 2, 'n_dependents': 0}}
    """
    from dask.core import reverse_dict, toposort

    inside = {key: [d for d in deps if d in dependencies] for key, deps in dependencies.items()}
    dependents = reverse_dict(inside)
    depth: dict[Any, int] = {}
    for key in toposort(inside, dependencies=inside):
        depth[key] = 1 + max((depth[d] for d in inside[key]), default=-1)
    return {key: {"depth": depth[key], "n_dependents": len(dependents.get(key, ()))} for key in dependencies}


def category_levels(records: pd.DataFrame | Iterable[Mapping[str, Any]]) -> list[str]:
    """Sorted distinct categories: the level list saved in the manifest."""
    if isinstance(records, pd.DataFrame):
        values = records["category"].dropna().astype(str).unique() if "category" in records else []
    else:
        values = {str(r["category"]) for r in records if r.get("category") is not None}
    return sorted(values)


def _key_prefix(key: Any) -> str:
    from dask.utils import key_split

    return key_split(key)


def _int_or_none(value: Any) -> int | None:
    if value is None or type(value) is int:
        return value
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or type(value) is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
