"""The model manifest, validated whole before anything serves from it.

Design note
-----------
``manifest.json`` is the contract between the trainer and every reader
(the steering plugin's :class:`~daskflow.learning.predictor.Predictor`, the
registry, the CLI). A reader must never trust it: a hand-edited file, a newer
or older daskflow, a half-migrated directory can put a string where a number
belongs, and a scheduler that raises on that does not start (issue 16.4).
:func:`validate_manifest` therefore checks EVERY field the predictor reads -
types, shapes, finiteness - and builds the plain serving objects in the same
pass (:class:`ServingManifest`), so "validated" and "what is served" cannot
diverge. Any problem raises :class:`~daskflow.errors.ModelUnavailableError`
with one line naming the field and the fix; the predictor turns that into one
warning and baseline predictions.

Formats:

* ``1`` - boosters + per-category means + ``baseline_categories`` (served
  unchanged: a model trained before the composite keeps working).
* ``2`` - adds ``composite``: per target the scaling laws, the per-category
  selection of the serving candidate, the calibrated spread (p90), the online
  prior strengths and the drift baselines (see :mod:`~daskflow.learning.composite`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daskflow.errors import ModelUnavailableError
from daskflow.learning.drift import Baseline
from daskflow.learning.features import COMPUTED_COLUMNS
from daskflow.learning.quantiles import ResidualQuantiles, SpreadModel
from daskflow.learning.scaling import CategoryLaw, ScalingModel
from daskflow.learning.selection import MEAN, Selection

MANIFEST_FORMAT = 2
SUPPORTED_FORMATS = (1, 2)
TARGET_NAMES = ("duration", "peak_memory")
#: candidates a selection may name (composite.py produces them)
CANDIDATES = (MEAN, "model", "scaling", "blend")


@dataclass
class CompositeParts:
    """The composite sections of a format-2 manifest, as serving objects."""

    scaling: dict[str, ScalingModel] = field(default_factory=dict)
    selection: dict[str, Selection] = field(default_factory=dict)
    spread: dict[str, SpreadModel] = field(default_factory=dict)
    online_priors: dict[str, dict[str, float]] = field(default_factory=dict)
    drift_baselines: dict[str, dict[str, Baseline]] = field(default_factory=dict)


@dataclass
class ServingManifest:
    """Everything the predictor reads from a manifest, type-checked."""

    format: int
    model_version: str | None
    feature_columns: list[str]
    category_levels: list[str]
    feature_defaults: dict[str, float]
    # category -> (duration_s, duration_count, peak_memory_bytes | None, peak_memory_count)
    category_means: dict[str, tuple[float, float, float | None, float]]
    baseline_categories: dict[str, list[str]]
    targets: dict[str, dict[str, Any]]  # target -> {"file": str | None, "sha256": str | None}
    composite: CompositeParts | None = None


def validate_manifest(manifest: Any, where: str = "manifest.json") -> ServingManifest:
    """Check the whole manifest and return its serving form; raises ``ModelUnavailableError`` naming the bad field.

    >>> validate_manifest({"format": 2, "feature_columns": ["category"], "category_levels": "abc"})
    Traceback (most recent call last):
    ...
    daskflow.errors.ModelUnavailableError: manifest.json: category_levels must be a list of strings, got str; retrain with `daskflow model train`
    """
    check = _Checker(where)
    m = check.mapping(manifest, "the manifest")
    fmt = m.get("format")
    if fmt not in SUPPORTED_FORMATS or isinstance(fmt, bool):
        check.fail(f"format is {fmt!r}, this daskflow reads {list(SUPPORTED_FORMATS)}")
    columns = check.strings(m.get("feature_columns"), "feature_columns")
    unknown = [c for c in columns if c not in COMPUTED_COLUMNS]
    if unknown or not columns:
        check.fail(f"feature_columns {columns!r} are not features this daskflow computes ({list(COMPUTED_COLUMNS)})")
    levels = check.strings(m.get("category_levels", []), "category_levels")
    defaults = {}
    for name, value in check.mapping(_opt(m, "feature_defaults"), "feature_defaults").items():
        if name not in COMPUTED_COLUMNS:
            check.fail(f"feature_defaults names {name!r}, not a feature")
        defaults[str(name)] = check.number(value, f"feature_defaults.{name}")
    means = {}
    baseline = check.mapping(_opt(m, "baseline"), "baseline")
    for category, entry in check.mapping(_opt(baseline, "category_means"), "baseline.category_means").items():
        path = f"baseline.category_means.{category}"
        entry = check.mapping(entry, path)
        memory = entry.get("peak_memory_bytes")
        means[str(category)] = (
            check.number(entry.get("duration_s"), f"{path}.duration_s"),
            check.number(entry.get("duration_count", 1), f"{path}.duration_count", minimum=0),
            None if memory is None else check.number(memory, f"{path}.peak_memory_bytes", minimum=0),
            check.number(entry.get("peak_memory_count", 1), f"{path}.peak_memory_count", minimum=0),
        )
    fallback = {}
    for target, categories in check.mapping(_opt(m, "baseline_categories"), "baseline_categories").items():
        fallback[str(target)] = check.strings(categories, f"baseline_categories.{target}")
    targets = {}
    for target, entry in check.mapping(_opt(m, "targets"), "targets").items():
        entry = check.mapping(entry, f"targets.{target}")
        file, digest = entry.get("file"), entry.get("sha256")
        if file is not None and (not isinstance(file, str) or "/" in file or file.startswith(".")):
            check.fail(f"targets.{target}.file must be a file name in the model directory or null, got {file!r}")
        if digest is not None and not isinstance(digest, str):
            check.fail(f"targets.{target}.sha256 must be a string, got {type(digest).__name__}")
        targets[str(target)] = {"file": file, "sha256": digest}
    version = m.get("model_version")
    if version is not None and not isinstance(version, str):
        check.fail(f"model_version must be a string, got {type(version).__name__}")
    composite = _composite(check, m.get("composite")) if fmt == 2 and m.get("composite") is not None else None
    return ServingManifest(int(fmt), version, columns, levels, defaults, means, fallback, targets, composite)


def _composite(check: _Checker, raw: Any) -> CompositeParts:
    section = check.mapping(raw, "composite")
    parts = CompositeParts()
    for target, data in check.mapping(_opt(section, "scaling"), "composite.scaling").items():
        path = f"composite.scaling.{target}"
        data = check.mapping(data, path)
        laws = {}
        for category, law in check.mapping(_opt(data, "laws"), f"{path}.laws").items():
            lp = f"{path}.laws.{category}"
            law = check.mapping(law, lp)
            own = law.get("own_slope")
            laws[str(category)] = CategoryLaw(
                check.number(law.get("intercept"), f"{lp}.intercept"), check.number(law.get("slope"), f"{lp}.slope"),
                None if own is None else check.number(own, f"{lp}.own_slope"), int(check.number(law.get("rows", 0), f"{lp}.rows", minimum=0)),
                check.number(law.get("residual_scale", 0.0), f"{lp}.residual_scale", allow_nan=True),
                check.number(law.get("weight", 0.0), f"{lp}.weight"),
            )
        parts.scaling[str(target)] = ScalingModel(
            str(target), check.number(data.get("pooled_slope", 0.0), f"{path}.pooled_slope"),
            check.number(data.get("floor", 0.0), f"{path}.floor", minimum=0), laws,
            check.number(data.get("pooled_sigma", 0.5), f"{path}.pooled_sigma", minimum=0),
            check.number(data.get("slope_prior_var", 0.01), f"{path}.slope_prior_var", minimum=0),
        )
    for target, data in check.mapping(_opt(section, "selection"), "composite.selection").items():
        path = f"composite.selection.{target}"
        data = check.mapping(data, path)
        choice = {}
        for category, name in check.mapping(_opt(data, "choice"), f"{path}.choice").items():
            choice[str(category)] = check.candidate(name, f"{path}.choice.{category}")
        parts.selection[str(target)] = Selection(str(target), choice, check.candidate(data.get("fallback", MEAN), f"{path}.fallback"),
                                                 dict(check.mapping(_opt(data, "table"), f"{path}.table")),
                                                 check.strings(data.get("small") or [], f"{path}.small"),
                                                 check.candidate(data.get("small_choice", MEAN), f"{path}.small_choice"))
    for target, data in check.mapping(_opt(section, "spread"), "composite.spread").items():
        path = f"composite.spread.{target}"
        data = check.mapping(data, path)
        categories = {str(c): check.quantiles(q, f"{path}.categories.{c}")
                      for c, q in check.mapping(_opt(data, "categories"), f"{path}.categories").items()}
        parts.spread[str(target)] = SpreadModel(str(target), check.quantiles(data.get("pooled"), f"{path}.pooled"), categories,
                                                bool(data.get("shift_median", False)))
    for target, data in check.mapping(_opt(section, "online_priors"), "composite.online_priors").items():
        path = f"composite.online_priors.{target}"
        parts.online_priors[str(target)] = {str(c): check.number(k, f"{path}.{c}", minimum=0)
                                            for c, k in check.mapping(data, path).items()}
    for target, data in check.mapping(_opt(section, "drift_baselines"), "composite.drift_baselines").items():
        path = f"composite.drift_baselines.{target}"
        table = {}
        for category, entry in check.mapping(data, path).items():
            entry = check.mapping(entry, f"{path}.{category}")
            table[str(category)] = Baseline(check.number(entry.get("mean", 0.0), f"{path}.{category}.mean"),
                                            check.number(entry.get("sigma", 0.5), f"{path}.{category}.sigma", minimum=0))
        parts.drift_baselines[str(target)] = table
    for target in TARGET_NAMES:  # selection without its parts cannot serve
        if target in parts.selection and target not in parts.spread:
            check.fail(f"composite.spread.{target} is missing while composite.selection.{target} exists")
    return parts


def _opt(mapping: Mapping[str, Any], key: str) -> Any:
    """An optional section: ``{}`` when absent or null, else the value as it is (a wrong type is then caught)."""
    value = mapping.get(key)
    return {} if value is None else value


class _Checker:
    """Type checks that fail with one line naming the field (``where`` = the manifest's location)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, problem: str) -> None:
        raise ModelUnavailableError(f"{self.where}: {problem}; retrain with `daskflow model train`")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(f"{path} must be an object, got {type(value).__name__}")
        return value

    def strings(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"{path} must be a list of strings, got {type(value).__name__}")
        return list(value)

    def number(self, value: Any, path: str, minimum: float | None = None, allow_nan: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{path} must be a number, got {type(value).__name__}")
        number = float(value)
        if math.isnan(number) and allow_nan:
            return number
        if not math.isfinite(number) or (minimum is not None and number < minimum):
            self.fail(f"{path} must be a finite number" + (f" >= {minimum}" if minimum is not None else "") + f", got {value!r}")
        return number

    def candidate(self, value: Any, path: str) -> str:
        if value not in CANDIDATES:
            self.fail(f"{path} must be one of {list(CANDIDATES)}, got {value!r}")
        return str(value)

    def quantiles(self, value: Any, path: str) -> ResidualQuantiles:
        entry = self.mapping(value, path)
        return ResidualQuantiles(self.number(entry.get("q50"), f"{path}.q50"), self.number(entry.get("q90"), f"{path}.q90"),
                                 int(self.number(entry.get("rows", 0), f"{path}.rows", minimum=0)))
