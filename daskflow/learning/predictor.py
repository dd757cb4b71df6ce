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

``quality`` stays within :data:`daskflow.contracts.PredictionQuality`; the
finer ``source`` says which learned candidate answered (``model`` - the
booster, ``scaling`` - the category's size law, ``blend`` - their geometric
mean, ``mean``, ``default``, ``oracle``). Every prediction has a p50 (the
point value) and a p90 (``p90_duration_s``, ``p90_peak_memory_bytes``).

Format-2 models (the composite, :mod:`~daskflow.learning.composite`) carry per
category the candidate selected on held-out runs and the calibrated spread;
:meth:`Predictor.predict` applies both. Format-1 models are served as before
(booster, or the mean for ``baseline_categories``), with a default spread
(p90 = 2 x p50).

The manifest is validated whole before it is installed
(:func:`~daskflow.learning.manifest.validate_manifest`): a wrong-typed field
gives one warning and baseline predictions, never an exception.

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
from daskflow.learning.manifest import CompositeParts, validate_manifest
from daskflow.learning.quantiles import ResidualQuantiles, SpreadModel
from daskflow.learning.selection import MEAN, apply_selection, geometric_blend

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
    p90_duration_s: float | None = None
    p90_peak_memory_bytes: float | None = None
    source: str | None = None
    memory_source: str | None = None


#: p90 / p50 when no spread was calibrated (format-1 models, baselines): a factor 2
DEFAULT_SPREAD = SpreadModel("default", ResidualQuantiles(0.0, math.log(2.0), 0))
_SOURCE_OF_QUALITY = {"prefix-mean": MEAN, "default": "default", "oracle": "oracle", "model": "model"}


@dataclass
class Predictions:
    """Predictions for a batch, as arrays aligned with the input records.

    ``duration_s`` / ``peak_memory_bytes`` are the p50 (point) values; the p90 arrays and the
    ``source`` arrays are filled from them when not given (p90 = 2 x p50, source from quality).
    """

    duration_s: np.ndarray
    peak_memory_bytes: np.ndarray
    quality: np.ndarray  # of str: source of duration_s
    memory_quality: np.ndarray  # of str: source of peak_memory_bytes
    model_version: str | None
    p90_duration_s: np.ndarray | None = None
    p90_peak_memory_bytes: np.ndarray | None = None
    source: np.ndarray | None = None  # of str: model | scaling | blend | mean | default | oracle
    memory_source: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.p90_duration_s is None:
            self.p90_duration_s = np.asarray(self.duration_s, dtype="float64") * 2.0
        if self.p90_peak_memory_bytes is None:
            self.p90_peak_memory_bytes = np.asarray(self.peak_memory_bytes, dtype="float64") * 2.0
        if self.source is None:
            self.source = np.array([_SOURCE_OF_QUALITY.get(str(q), str(q)) for q in self.quality], dtype=object)
        if self.memory_source is None:
            self.memory_source = np.array([_SOURCE_OF_QUALITY.get(str(q), str(q)) for q in self.memory_quality], dtype=object)

    def __len__(self) -> int:
        return len(self.duration_s)

    def __getitem__(self, index: int) -> CostPrediction:
        return CostPrediction(
            float(self.duration_s[index]),
            float(self.peak_memory_bytes[index]),
            str(self.quality[index]),
            str(self.memory_quality[index]),
            self.model_version,
            float(self.p90_duration_s[index]),
            float(self.p90_peak_memory_bytes[index]),
            str(self.source[index]),
            str(self.memory_source[index]),
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
        self._feature_columns: list[str] = list(FEATURE_COLUMNS)
        self._composite: CompositeParts | None = None
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
        serving = validate_manifest(manifest, f"manifest.json in {self.url!r}")  # the whole manifest, before any booster is read
        boosters = {}
        for name, entry in serving.targets.items():
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

    def install_model(self, manifest: dict[str, Any], boosters: dict[str, Any], digest: str | None) -> bool:
        """Serve ``manifest`` and its ``boosters`` from now on (``digest``: the manifest checksum, None in memory).

        The manifest is validated whole first; on any problem nothing of it is served (baseline
        predictions, one warning) and False is returned. Never raises.
        """
        try:
            serving = validate_manifest(manifest, f"manifest.json in {self.url!r}")
        except Exception as exc:  # noqa: BLE001 - a broken manifest must not break scheduling
            self.manifest, self.boosters, self._composite = None, {}, None
            self._levels, self._level_set, self._baseline_categories, self._feature_defaults = [], frozenset(), {}, {}
            self._manifest_digest = digest
            self.load_error = str(exc)
            self._warn_once(f"invalid-{digest}", f"model at {self.url!r} is unusable ({exc}); predicting per-category means / defaults")
            return False
        self.manifest = manifest
        self.boosters = dict(boosters)
        self._manifest_digest = digest
        self.load_error = None
        self._feature_columns = serving.feature_columns
        self._feature_defaults = dict(serving.feature_defaults)
        self._levels = serving.category_levels
        self._level_set = frozenset(self._levels)
        self._composite = serving.composite
        self._baseline_categories = {target: frozenset(categories) for target, categories in serving.baseline_categories.items()}
        for category, (duration, duration_count, memory, memory_count) in serving.category_means.items():
            if category not in self._duration_mean:
                self._duration_mean[category] = [duration, duration_count]
            if memory is not None and category not in self._memory_mean:
                self._memory_mean[category] = [memory, memory_count]
        return True

    @property
    def composite(self) -> CompositeParts | None:
        """The composite sections of the served model (format 2), else None: online priors and drift baselines live here."""
        return self._composite

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
            if value is None or not math.isfinite(value):  # math, not numpy: per finished task
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
        """Batched p50/p90 predictions for ``records`` (dicts with the history-row shape, or a DataFrame)."""
        result = self.predict_baseline(records)
        if len(result) == 0:
            return result
        try:
            categories = _categories(records)
            raw = self.predict_model(records, categories) if self.boosters else {}
            if self._composite is not None:
                return self._select(records, categories, result, raw)
            for target, values in raw.items():  # format 1: the booster, except where it lost to the mean
                served = np.isfinite(values)
                losers = self._baseline_categories.get(target)
                if losers:
                    served &= np.fromiter((c not in losers for c in categories), dtype=bool, count=len(categories))
                point, quality = (result.duration_s, result.quality) if target == "duration" else (result.peak_memory_bytes, result.memory_quality)
                point[served] = values[served]
                quality[served] = "model"
            spread = DEFAULT_SPREAD.quantiles(categories, result.duration_s)[1], DEFAULT_SPREAD.quantiles(categories, result.peak_memory_bytes)[1]
            return Predictions(result.duration_s, result.peak_memory_bytes, result.quality, result.memory_quality,
                               result.model_version, spread[0], spread[1])
        except Exception as exc:  # noqa: BLE001 - a broken model must not break scheduling
            self._warn_once(f"predict-{type(exc).__name__}", f"model {self.model_version} failed to predict ({exc}); using the baseline")
            return self.predict_baseline(records)

    def predict_model(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame, categories: list[str] | None = None) -> dict[str, np.ndarray]:
        """The boosters' raw predictions per target (NaN for categories not seen in training); ``{}`` without boosters."""
        from daskflow.learning.training import TARGETS

        categories = _categories(records) if categories is None else categories
        known = np.fromiter((c in self._level_set for c in categories), dtype=bool, count=len(categories))
        out: dict[str, np.ndarray] = {}
        if not known.any() or not self.boosters:
            return {t.name: np.full(len(categories), np.nan) for t in TARGETS if t.name in self.boosters}
        features = feature_frame(records if isinstance(records, pd.DataFrame) else list(records), categories=self._levels,
                                 columns=self._feature_columns)
        features = features[known] if not known.all() else features
        for column, value in self._feature_defaults.items():
            if column in features:  # worker not known yet (predicting before placement)
                features[column] = features[column].fillna(value)
        for target in TARGETS:
            booster = self.boosters.get(target.name)
            if booster is None:
                continue
            values = np.full(len(categories), np.nan)
            values[known] = target.inverse(np.asarray(booster.inplace_predict(features), dtype="float64"))
            out[target.name] = values
        return out

    def _select(self, records: Any, categories: list[str], result: Predictions, raw: Mapping[str, np.ndarray]) -> Predictions:
        """Format 2: per category the candidate chosen on held-out runs, and the calibrated p90."""
        composite = self._composite
        if isinstance(records, pd.DataFrame):
            frame = records
        else:  # only what the scaling laws read (a full from_records of 10k dicts costs ~0.1 s)
            rows = records if isinstance(records, list) else list(records)
            frame = pd.DataFrame({"category": categories, "input_bytes": [r.get("input_bytes") for r in rows],
                                  "dependency_bytes": [r.get("dependency_bytes") for r in rows]})
        outputs = {}
        for target, point, quality in (("duration", result.duration_s, result.quality),
                                       ("peak_memory", result.peak_memory_bytes, result.memory_quality)):
            candidates: dict[str, np.ndarray] = {MEAN: point}
            law = composite.scaling.get(target)
            law_values = law.predict(frame) if law is not None else np.full(len(point), np.nan)
            candidates["scaling"] = law_values
            if target in raw:
                candidates["model"] = raw[target]
                candidates["blend"] = geometric_blend(raw[target], law_values)
            selection = composite.selection.get(target)
            if selection is None:
                values, source = point, np.array([_SOURCE_OF_QUALITY.get(str(q), str(q)) for q in quality], dtype=object)
            else:
                values, source = apply_selection(selection, categories, candidates)
                learned = source != MEAN
                quality = np.where(learned, "model", quality).astype(object)
                source = np.where(learned, source, [_SOURCE_OF_QUALITY.get(str(q), str(q)) for q in quality]).astype(object)
            _, p90 = composite.spread.get(target, DEFAULT_SPREAD).quantiles(categories, values)
            outputs[target] = (values, quality, p90, source)
        (duration, quality, p90_duration, source), (memory, memory_quality, p90_memory, memory_source) = outputs["duration"], outputs["peak_memory"]
        return Predictions(duration, memory, quality, memory_quality, result.model_version, p90_duration, p90_memory, source, memory_source)

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
        return Predictions(result.duration_s, result.peak_memory_bytes, result.quality, result.memory_quality, "oracle",
                           np.where(result.quality == "oracle", result.duration_s, 2.0 * result.duration_s),
                           np.where(result.memory_quality == "oracle", result.peak_memory_bytes, 2.0 * result.peak_memory_bytes))


def _categories(records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> list[str]:
    if isinstance(records, pd.DataFrame):
        if "category" not in records:
            return ["" for _ in range(len(records))]
        return [("" if c is None or (isinstance(c, float) and math.isnan(c)) else str(c)) for c in records["category"].tolist()]
    return [("" if r.get("category") is None else str(r.get("category"))) for r in records]
