"""Serving the models: batched predictions with a per-category baseline that never fails.

Design note
-----------
:class:`Predictor` answers "how long will this task take, and how much memory
will it peak at?" for a *batch* of records (one XGBoost call per graph update:
a single-row call costs ~200 us, a row in a batch ~1 us). Each row gets a
``quality`` flag saying where its number came from:

* ``"model"`` - the XGBoost model (the row's category was seen in training),
* ``"prefix-mean"`` - the running mean of earlier tasks of that category
  (Dask's own per-prefix estimate; seeded from the manifest, updated by
  :meth:`Predictor.observe`),
* ``"default"`` - a category never seen: ``daskflow.models.default-duration``
  and ``default-peak-memory``,
* ``"oracle"`` - :class:`OraclePredictor` read the true costs from the record.

Degrading safely: a missing, corrupt or incompatible model directory gives ONE
warning and baseline predictions; nothing here raises into the caller.
:meth:`Predictor.maybe_reload` re-reads ``manifest.json`` at most every
``daskflow.models.reload-interval`` and swaps in a new model when it changed
(checksums in the manifest guard against a half-written directory; on any
problem the current model stays).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import posixpath
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from daskflow.errors import ModelUnavailableError
from daskflow.learning.features import FEATURE_COLUMNS, feature_frame

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CostPrediction:
    """The predicted cost of one task (one row of :class:`Predictions`).

    Not the steering plugin's per-task record (``scheduler_plugins``), which
    adds where the task went in the plan.
    """

    duration_s: float
    peak_memory_bytes: float
    quality: str
    memory_quality: str
    model_version: str | None


@dataclass
class Predictions:
    """Predictions for a batch, as arrays aligned with the input records."""

    duration_s: np.ndarray
    peak_memory_bytes: np.ndarray
    quality: np.ndarray  # of str: source of duration_s
    memory_quality: np.ndarray  # of str: source of peak_memory_bytes
    model_version: str | None

    def __len__(self) -> int:
        return len(self.duration_s)

    def __getitem__(self, index: int) -> CostPrediction:
        return CostPrediction(
            float(self.duration_s[index]),
            float(self.peak_memory_bytes[index]),
            str(self.quality[index]),
            str(self.memory_quality[index]),
            self.model_version,
        )

    def __iter__(self) -> Iterator[CostPrediction]:
        return (self[i] for i in range(len(self)))


def default_costs() -> tuple[float, float]:
    """``(duration_s, peak_memory_bytes)`` predicted for a category never seen (``daskflow.models.default-*``)."""
    from dask.utils import parse_bytes, parse_timedelta

    from daskflow import config

    memory = config.get("models.default-peak-memory")
    return (
        float(parse_timedelta(config.get("models.default-duration"), default="s")),
        float(parse_bytes(memory) if isinstance(memory, str) else (memory or 0)),
    )


class Predictor:
    """Duration and peak-memory predictions from the model at ``url`` (default ``daskflow.models.url``).

    >>> predictor = Predictor.load("/nonexistent/models")   # doctest: +SKIP
    >>> predictor.predict([{"category": "load", "input_bytes": 10}]).quality[0]   # doctest: +SKIP
    'default'
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        reload_interval_s: float | None = None,
        default_duration_s: float | None = None,
        default_peak_memory_bytes: float | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        from dask.utils import parse_timedelta

        from daskflow import config

        self.url = str(url) if url is not None else config.models_url(config.get("steering.model"))
        self.storage_options = dict(storage_options or {})
        self.reload_interval_s = float(
            reload_interval_s if reload_interval_s is not None else parse_timedelta(config.get("models.reload-interval"))
        )
        configured_duration_s, configured_memory_bytes = default_costs()
        self.default_duration_s = float(default_duration_s if default_duration_s is not None else configured_duration_s)
        self.default_peak_memory_bytes = float(
            default_peak_memory_bytes if default_peak_memory_bytes is not None else configured_memory_bytes
        )
        self.manifest: dict[str, Any] | None = None
        self.boosters: dict[str, Any] = {}
        self.load_error: str | None = None
        self._levels: list[str] = []
        self._feature_defaults: dict[str, float] = {}
        self._level_set: frozenset[str] = frozenset()
        self._baseline_categories: dict[str, frozenset[str]] = {}
        self._manifest_digest: str | None = None
        self._last_check = 0.0
        self._warned: set[str] = set()
        # category -> [mean, count]; running means of observed costs (the baseline)
        self._duration_mean: dict[str, list[float]] = {}
        self._memory_mean: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, url: str | None = None, **kwargs: Any) -> Predictor:
        """A predictor for the model at ``url``; without a usable model it predicts the baseline (one warning)."""
        predictor = cls(url, **kwargs)
        predictor.maybe_reload(force=True)
        return predictor

    @classmethod
    def from_parts(cls, manifest: Mapping[str, Any], boosters: Mapping[str, Any], **kwargs: Any) -> Predictor:
        """A predictor around in-memory boosters (training evaluation, tests)."""
        predictor = cls(url=kwargs.pop("url", "memory://unused"), **kwargs)
        predictor.install_model(dict(manifest), {k: v for k, v in boosters.items() if v is not None}, digest=None)
        return predictor

    @property
    def model_version(self) -> str | None:
        return (self.manifest or {}).get("model_version")

    @property
    def has_model(self) -> bool:
        return bool(self.boosters)

    def maybe_reload(self, force: bool = False) -> bool:
        """Reload when ``manifest.json`` changed (checked at most every reload interval); True if a new model loaded."""
        now = time.monotonic()
        if not force and now - self._last_check < self.reload_interval_s:
            return False
        self._last_check = now
        try:
            raw = self._read(MANIFEST)
        except FileNotFoundError:
            if self.manifest is None:
                self._warn_once("missing", f"no model at {self.url!r} (no {MANIFEST}); predicting per-category means / "
                                "defaults. Train one with `daskflow model train`.")
            return False
        except Exception as exc:  # noqa: BLE001
            self._warn_once("read", f"could not read the model manifest at {self.url!r} ({exc}); keeping the current predictions")
            return False
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._manifest_digest:
            return False
        try:
            manifest, boosters = self._parse(raw)
        except Exception as exc:  # noqa: BLE001 - corrupt or half-written: keep what we have
            self.load_error = str(exc)
            self._warn_once(
                f"corrupt-{digest}",
                f"model at {self.url!r} is unusable ({exc}); "
                + ("keeping model " + str(self.model_version) if self.has_model else "predicting per-category means / defaults")
                + ". Retrain with `daskflow model train`.",
            )
            return False
        self.install_model(manifest, boosters, digest)
        logger.info("daskflow: loaded model %s from %s", self.model_version, self.url)
        return True

    def _read(self, name: str) -> bytes:
        import fsspec.core

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        with fs.open(posixpath.join(root, name), "rb") as f:
            return f.read()

    def _parse(self, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        import xgboost as xgb

        manifest = json.loads(raw)
        if not isinstance(manifest, dict) or manifest.get("format") != 1:
            raise ModelUnavailableError(f"manifest.json in {self.url!r} has format {manifest.get('format') if isinstance(manifest, dict) else None!r}, expected 1")
        if list(manifest.get("feature_columns", [])) != list(FEATURE_COLUMNS):
            raise ModelUnavailableError(
                f"model in {self.url!r} was trained on features {manifest.get('feature_columns')}, this daskflow computes "
                f"{list(FEATURE_COLUMNS)}; retrain with `daskflow model train`"
            )
        boosters = {}
        for name, entry in (manifest.get("targets") or {}).items():
            if not entry.get("file"):
                continue
            blob = self._read(entry["file"])
            if entry.get("sha256") and hashlib.sha256(blob).hexdigest() != entry["sha256"]:
                raise ModelUnavailableError(f"{entry['file']} in {self.url!r} does not match the manifest checksum (being replaced?)")
            booster = xgb.Booster()
            booster.load_model(bytearray(blob))
            booster.set_param({"nthread": 1})
            boosters[name] = booster
        return manifest, boosters

    def install_model(self, manifest: dict[str, Any], boosters: dict[str, Any], digest: str | None) -> None:
        """Serve ``manifest`` and its ``boosters`` from now on (``digest``: the manifest checksum, None in memory)."""
        self.manifest = manifest
        self.boosters = boosters
        self._manifest_digest = digest
        self.load_error = None
        self._feature_defaults = {k: float(v) for k, v in (manifest.get("feature_defaults") or {}).items()}
        self._levels = list(manifest.get("category_levels") or [])
        self._level_set = frozenset(self._levels)
        self._baseline_categories = {
            str(target): frozenset(map(str, categories))
            for target, categories in (manifest.get("baseline_categories") or {}).items()
        }
        for category, entry in ((manifest.get("baseline") or {}).get("category_means") or {}).items():
            if "duration_s" in entry and category not in self._duration_mean:
                self._duration_mean[category] = [float(entry["duration_s"]), float(entry.get("duration_count", 1))]
            if entry.get("peak_memory_bytes") is not None and category not in self._memory_mean:
                self._memory_mean[category] = [float(entry["peak_memory_bytes"]), float(entry.get("peak_memory_count", 1))]

    def _warn_once(self, what: str, message: str) -> None:
        if what in self._warned:
            return
        self._warned.add(what)
        # One channel only (a RuntimeWarning: catchable, filterable, shown once per
        # process by Python's default filter); logging it as well printed it twice.
        warnings.warn(f"daskflow: {message}", RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ baseline
    def observe(self, category: str, duration_s: float | None, peak_memory_bytes: float | None = None) -> None:
        """Add one finished task to the per-category running means."""
        for table, value in ((self._duration_mean, duration_s), (self._memory_mean, peak_memory_bytes)):
            if value is None or not np.isfinite(value):
                continue
            entry = table.setdefault(str(category), [0.0, 0.0])
            entry[1] += 1
            entry[0] += (float(value) - entry[0]) / entry[1]

    def baseline_for(self, category: str) -> tuple[float, str, float, str]:
        """``(duration_s, quality, peak_memory_bytes, memory_quality)`` of the baseline for one category."""
        duration = self._duration_mean.get(category)
        memory = self._memory_mean.get(category)
        return (
            duration[0] if duration else self.default_duration_s,
            "prefix-mean" if duration else "default",
            memory[0] if memory else self.default_peak_memory_bytes,
            "prefix-mean" if memory else "default",
        )

    def predict_baseline(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> Predictions:
        """Per-category mean (else default) for every record, ignoring the model."""
        categories = _categories(records)
        n = len(categories)
        duration = np.empty(n)
        memory = np.empty(n)
        quality = np.empty(n, dtype=object)
        memory_quality = np.empty(n, dtype=object)
        cache: dict[str, tuple[float, str, float, str]] = {}
        for i, category in enumerate(categories):
            value = cache.get(category)
            if value is None:
                value = cache[category] = self.baseline_for(category)
            duration[i], quality[i], memory[i], memory_quality[i] = value
        return Predictions(duration, memory, quality, memory_quality, self.model_version)

    # ------------------------------------------------------------------ prediction
    def predict(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> Predictions:
        """Batched predictions for ``records`` (dicts with the history-row shape, or a DataFrame)."""
        result = self.predict_baseline(records)
        if not self.boosters or len(result) == 0:
            return result
        try:
            from daskflow.learning.training import TARGETS

            categories = _categories(records)
            known = np.fromiter((c in self._level_set for c in categories), dtype=bool, count=len(categories))
            if not known.any():
                return result
            features = feature_frame(records if isinstance(records, pd.DataFrame) else list(records), categories=self._levels)
            features = features[known] if not known.all() else features
            for column, value in self._feature_defaults.items():
                if column in features:  # worker not known yet (predicting before placement)
                    features[column] = features[column].fillna(value)
            for target in TARGETS:
                booster = self.boosters.get(target.name)
                if booster is None:
                    continue
                values = target.inverse(np.asarray(booster.inplace_predict(features), dtype="float64"))
                served = known
                losers = self._baseline_categories.get(target.name)
                if losers:  # the model lost to the category mean on held-out rows: keep the mean there
                    keep = np.fromiter((c not in losers for c in categories), dtype=bool, count=len(categories))
                    values = values[keep[known]]
                    served = known & keep
                if target.name == "duration":
                    result.duration_s[served] = values
                    result.quality[served] = "model"
                else:
                    result.peak_memory_bytes[served] = values
                    result.memory_quality[served] = "model"
        except Exception as exc:  # noqa: BLE001 - a broken model must not break scheduling
            self._warn_once(f"predict-{type(exc).__name__}", f"model {self.model_version} failed to predict ({exc}); using the baseline")
            return self.predict_baseline(records)
        return result

    def describe(self) -> dict[str, Any]:
        """Model version, URL, load error and manifest metrics (for the CLI and dashboard)."""
        manifest = self.manifest or {}
        return {
            "url": self.url,
            "model_version": self.model_version,
            "has_model": self.has_model,
            "load_error": self.load_error,
            "rows": manifest.get("rows"),
            "metrics": manifest.get("metrics"),
            "categories": len(self._levels),
        }


class OraclePredictor(Predictor):
    """Predicts the true costs declared in the records (``true_duration_s``, ``true_peak_memory_bytes``).

    Used by ``--mode oracle`` replays to bound what perfect predictions buy;
    records without true costs fall back to the :class:`Predictor` baseline.
    """

    def maybe_reload(self, force: bool = False) -> bool:
        return False

    def predict(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> Predictions:
        result = self.predict_baseline(records)
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(
            list(records), columns=["true_duration_s", "true_peak_memory_bytes"]
        )
        for column, values, quality in (
            ("true_duration_s", result.duration_s, result.quality),
            ("true_peak_memory_bytes", result.peak_memory_bytes, result.memory_quality),
        ):
            if column not in frame:
                continue
            true = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            mask = np.isfinite(true)
            values[mask] = true[mask]
            quality[mask] = "oracle"
        result.model_version = "oracle"
        return result


def _categories(records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> list[str]:
    if isinstance(records, pd.DataFrame):
        if "category" not in records:
            return ["" for _ in range(len(records))]
        return [("" if c is None or (isinstance(c, float) and math.isnan(c)) else str(c)) for c in records["category"].tolist()]
    return [("" if r.get("category") is None else str(r.get("category"))) for r in records]
