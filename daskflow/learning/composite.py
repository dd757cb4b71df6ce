"""The composite predictor: clean rows, fit model + scaling laws, select per category, calibrate p50/p90.

Design note
-----------
This is how the pieces of issue 12 fit together in training
(:func:`~daskflow.learning.training.train_models` calls :func:`fit_composite`
and saves :meth:`CompositeModel.manifest` + its boosters; the served
:class:`~daskflow.learning.predictor.Predictor` applies the selection and the
spread from that manifest, :meth:`CompositeModel.predictor` builds the same
predictor in memory):

1. :func:`~daskflow.learning.cleaning.clean_history` marks the rows that do
   not measure a task's cost (per target, with weights).
2. The training rows are split once more (by run when there are two or
   more, else randomly, the same :func:`~daskflow.learning.training.split_rows`
   the trainer uses): *fit* rows and *selection* rows.
3. On the fit rows: the global XGBoost model (today's features and
   parameters), the per-category scaling laws
   (:mod:`~daskflow.learning.scaling`) and the per-category means.
4. On the selection rows, per target and category, the candidate with the
   lowest median APE is chosen (:mod:`~daskflow.learning.selection`:
   ``model``, ``scaling``, their geometric ``blend``, or the ``mean``; never
   worse than the mean on those rows), and the spread of the selected
   predictions is calibrated (:mod:`~daskflow.learning.quantiles`), and so
   is the online prior strength per category (how far a whole category is
   typically off in a new run vs. how much its tasks scatter). (Gating the
   online correction on a replay of the selection rows was tried and
   predicted the wrong way on the traces - those rows also chose the
   predictor - so it is not done.)
5. Everything is refit on all rows; the selection and the spread are kept.

At serving time :meth:`CompositeModel.predict` gives p50 (the point estimate)
and p90 per target plus the source of every number; the online correction
(:mod:`~daskflow.learning.online`) then multiplies in what the finished tasks
of the run say. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from daskflow.learning.cleaning import CleaningConfig, clean_history, hygiene_summary
from daskflow.learning.drift import Baseline, baselines_from_holdout, baselines_to_dict
from daskflow.learning.online import prior_observations_from_holdout
from daskflow.learning.quantiles import SpreadConfig, SpreadModel, fit_spread
from daskflow.learning.scaling import ScalingConfig, ScalingModel, fit_scaling
from daskflow.learning.selection import (
    MEAN,
    Selection,
    SelectionConfig,
    apply_selection,
    geometric_blend,
    select_predictors,
)

#: composite target name -> (history column, cleaning prefix, ``Predictions`` attribute)
TARGETS: dict[str, tuple[str, str, str]] = {
    "duration": ("duration_s", "duration", "duration_s"),
    "peak_memory": ("peak_memory_bytes", "peak_memory", "peak_memory_bytes"),
}


@dataclass(frozen=True)
class CompositeConfig:
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    spread: SpreadConfig = field(default_factory=SpreadConfig)
    rounds: int = 200
    use_model: bool = True  # False: scaling laws and means only (no XGBoost)
    params: Mapping[str, Any] | None = None  # XGBoost parameters over training.DEFAULT_PARAMS


@dataclass
class CompositeModel:
    """Everything the composite predictor serves with (the XGBoost part is a Predictor around boosters)."""

    model: Any  # a Predictor around the boosters (or None)
    scaling: dict[str, ScalingModel]
    selection: dict[str, Selection]
    spread: dict[str, SpreadModel]
    means: Any  # a Predictor without boosters: the per-category means (its predict_baseline)
    online_priors: dict[str, dict[str, float]] = field(default_factory=dict)  # target -> category -> k (online.py)
    drift_baselines: dict[str, dict[str, Baseline]] = field(default_factory=dict)  # target -> category -> normal error
    hygiene: dict[str, dict[str, int]] = field(default_factory=dict)  # target -> cleaning reason -> rows

    def candidates(self, rows: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
        """Per target, every candidate's predictions for ``rows``."""
        return _candidates(self.model, self.means, self.scaling, rows)

    def predict(self, rows: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
        """Per target: ``p50``, ``p90`` and ``source`` (the candidate that answered each row)."""
        categories = _categories(rows)
        out = {}
        for target, candidates in self.candidates(rows).items():
            values, source = apply_selection(self.selection[target], categories, candidates)
            p50, p90 = self.spread[target].quantiles(categories, values)
            out[target] = {"point": values, "p50": p50, "p90": p90, "source": source}
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for a manifest: selection tables, spreads, scaling laws, online priors, drift baselines."""
        return {"selection": {t: s.to_dict() for t, s in self.selection.items()},
                "spread": {t: s.to_dict() for t, s in self.spread.items()},
                "scaling": {t: s.to_dict() for t, s in self.scaling.items()},
                "online_priors": self.online_priors,
                "drift_baselines": {t: baselines_to_dict(b) for t, b in self.drift_baselines.items()},
                "hygiene": self.hygiene}

    @property
    def boosters(self) -> dict[str, Any]:
        return dict(self.model.boosters) if self.model is not None else {}

    def manifest(self) -> dict[str, Any]:
        """The format-2 manifest core (without version, rows, metrics: ``train_models`` adds those)."""
        from daskflow.learning.manifest import MANIFEST_FORMAT
        from daskflow.learning.training import _manifest_core

        means_manifest = self.means.manifest or {}
        levels = list((self.model.manifest if self.model is not None else means_manifest).get("category_levels") or [])
        manifest = _manifest_core(levels, (means_manifest.get("baseline") or {}).get("category_means") or {}, self.boosters)
        manifest["format"] = MANIFEST_FORMAT
        manifest["feature_defaults"] = dict((self.model.manifest or {}).get("feature_defaults") or {}) if self.model is not None else {}
        # the categories served by their mean (what format 1 called baseline_categories; the model page lists them)
        manifest["baseline_categories"] = {t: sorted(c for c, name in s.choice.items() if name == MEAN) for t, s in self.selection.items()}
        manifest["composite"] = self.describe()
        return manifest

    def predictor(self) -> Any:
        """The served predictor for this model, in memory (exactly what ``Predictor.load`` builds from the saved manifest)."""
        import json

        from daskflow.learning.predictor import Predictor
        from daskflow.learning.training import _json_default

        manifest = json.loads(json.dumps(self.manifest(), default=_json_default))  # the JSON round trip serving sees
        return Predictor.from_parts(manifest, self.boosters)


def fit_composite(history: pd.DataFrame, config: CompositeConfig | None = None) -> CompositeModel:
    """Fit the composite predictor on history rows (see the module note)."""
    from daskflow.learning.training import split_rows, usable_rows

    config = config or CompositeConfig()
    frame = clean_history(usable_rows(history), config.cleaning)
    fit_mask, select_mask, _ = split_rows(frame)
    if not select_mask.any():  # too few rows to select: means and laws, selected on the fit rows themselves
        select_mask = fit_mask
    fit_rows, select_rows = frame[fit_mask].reset_index(drop=True), frame[select_mask].reset_index(drop=True)
    inner = _fit_parts(fit_rows, config)
    candidates = _candidates(*inner, select_rows)
    categories = _categories(select_rows)
    selection, spread, priors, baselines = {}, {}, {}, {}
    for target, (column, prefix, _) in TARGETS.items():
        actual = _clean_target(select_rows, column, prefix)
        selection[target] = select_predictors(target, categories, candidates[target], actual, config.selection)
        chosen, _ = apply_selection(selection[target], categories, candidates[target])
        spread[target] = fit_spread(target, categories, chosen, actual, config.spread)
        priors[target] = prior_observations_from_holdout(categories, chosen, actual)
        baselines[target] = baselines_from_holdout(categories, chosen, actual)
    model, means, scaling = _fit_parts(frame, config)
    return CompositeModel(model, scaling, selection, spread, means, priors, baselines, hygiene_summary(frame))


def _fit_parts(frame: pd.DataFrame, config: CompositeConfig) -> tuple[Any, Any, dict[str, ScalingModel]]:
    from daskflow.learning.features import category_levels
    from daskflow.learning.predictor import Predictor
    from daskflow.learning.training import TARGETS as BOOSTER_TARGETS
    from daskflow.learning.training import (
        _manifest_core,
        fit_booster,
        worker_feature_defaults,
    )

    training = {}
    for target, (column, prefix, _) in TARGETS.items():
        rows = frame[frame[f"use_{prefix}"]].reset_index(drop=True)
        training[target] = rows
    levels = category_levels(frame)
    means_manifest = dict(_manifest_core(levels, _means(training), {}), feature_defaults={})
    means = Predictor.from_parts(means_manifest, {})
    model = None
    if config.use_model and len(frame) >= 2:
        boosters = {t.name: fit_booster(training[t.name], t, levels, config.params, config.rounds, weight_column=f"{t.name}_weight")
                    for t in BOOSTER_TARGETS}
        manifest = dict(_manifest_core(levels, _means(training), boosters), feature_defaults=worker_feature_defaults(frame))
        model = Predictor.from_parts(manifest, boosters)
    scaling = {t: fit_scaling(training[t], t, config.scaling) for t in TARGETS}
    return model, means, scaling


def _means(training: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """Per-category arithmetic means of the clean rows of each target (the baseline every choice must beat).

    Durations: of the *measured* values (:data:`~daskflow.learning.cleaning.MEASURED`, not floored) - the
    mean Dask keeps per prefix and the held-out benchmark scores against; the noise floor is for the
    model (learn "tiny", not digits), a mean of floored durations is biased up. Peak memory: of the
    cleaned values (below the floor a peak is not resolved).
    """
    from daskflow.learning.cleaning import MEASURED

    out: dict[str, dict[str, Any]] = {}
    for target, column, count in (("duration", "duration_s", "duration_count"), ("peak_memory", "peak_memory_bytes", "peak_memory_count")):
        rows = training[target]
        if not len(rows):
            continue
        source = MEASURED.get(column, column)
        source = source if source in rows else column
        grouped = pd.to_numeric(rows[source], errors="coerce").groupby(rows["category"].astype(str)).agg(["mean", "count"])
        for category, row in grouped.iterrows():
            if row["count"] > 0 and np.isfinite(row["mean"]):
                out.setdefault(str(category), {}).update({column: float(row["mean"]), count: int(row["count"])})
    return {c: e for c, e in out.items() if "duration_s" in e}


def _candidates(model: Any, means: Any, scaling: Mapping[str, ScalingModel], rows: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    base = means.predict_baseline(rows)
    predicted = model.predict(rows) if model is not None else None
    out: dict[str, dict[str, np.ndarray]] = {}
    for target, (_, _, attribute) in TARGETS.items():
        mean = np.asarray(getattr(base, attribute), dtype="float64").copy()
        known = np.asarray(base.memory_quality if target == "peak_memory" else base.quality) == "prefix-mean"
        mean[~known] = np.nan  # unseen category: nothing to say (the default is the caller's)
        law = scaling[target].predict(rows)
        candidates = {MEAN: np.where(known, mean, np.asarray(getattr(base, attribute), dtype="float64")), "scaling": law}
        if predicted is not None:
            quality = np.asarray(predicted.memory_quality if target == "peak_memory" else predicted.quality)
            values = np.where(quality == "model", np.asarray(getattr(predicted, attribute), dtype="float64"), np.nan)
            candidates["model"] = values
            candidates["blend"] = geometric_blend(values, law)
        out[target] = candidates
    return out


def _clean_target(rows: pd.DataFrame, column: str, prefix: str) -> np.ndarray:
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.where(rows[f"use_{prefix}"].to_numpy(dtype=bool), values, np.nan)


def _categories(rows: pd.DataFrame) -> list[str]:
    from daskflow.learning.scaling import _category_list

    return _category_list(rows)
