"""The model registry: versions, promotion with reasons, rollback, and the model event log.

Design note
-----------
Layout of a models directory (any fsspec URL)::

    <models>/manifest.json, duration.ubj, peak_memory.ubj    the SERVED model (what Predictor reads, unchanged)
    <models>/versions/<model_version>/manifest.json + boosters    every registered version, immutable
    <models>/registry.json    {"format", "current", "promoted" (stack, oldest first), "versions", "history"}
    <models>/events.jsonl     detections, trainings, promotions, rejections (bounded; newest last)

* **Promote** copies the version's boosters byte for byte to the top level
  (boosters first, the manifest last and atomically, as ``save_model`` does),
  then records the promotion in ``registry.json`` (atomic rewrite). A
  :class:`~daskflow.learning.predictor.Predictor` on ``<models>`` therefore
  keeps working as today and picks the new model up on its next reload (the
  manifest digest changed; the checksums in the manifest guard the window
  where boosters are already new and the manifest is still old).
* **Rollback** promotes the previously promoted version again - the exact
  bytes - so the predictor serves exactly the previous model's predictions.
* A top-level model that the registry does not know yet (trained by
  ``daskflow model train`` before the registry existed) is adopted as a
  version on first contact, so a promotion can always be rolled back.
* **Evaluate** (:func:`evaluate_candidate`): a candidate is promoted only when
  it beats the current model on the most recent held-out rows: lower duration
  median APE by at least ``min_gain`` and memory not worse by more than
  ``memory_tolerance`` (relative) plus ``memory_slack`` (absolute APE points) - or, when it is worse by
  more, not worse in a paired sign test on the same rows where per-row error differences below
  ``memory_resolution_bytes`` are ties (a median APE at 100 KiB peaks measures the allocator, not the
  model); with too few rows it is rejected ("not enough
  evidence"), and with no current model it is promoted.

The registry file is small (versions and a bounded history); concurrent
writers are not expected (one trainer at a time: the background retrainer).
"""

from __future__ import annotations

import datetime as _dt
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from daskflow.errors import ModelUnavailableError

REGISTRY = "registry.json"
EVENTS = "events.jsonl"
MANIFEST = "manifest.json"
VERSIONS = "versions"
REGISTRY_FORMAT = 1

Decision = Literal["promote", "reject"]
VersionStatus = Literal["candidate", "promoted", "rejected", "retired"]


@dataclass(frozen=True)
class PromotionConfig:
    """Tunables (:func:`promotion_config_from_settings` reads them from ``daskflow.models.promotion.*``)."""

    min_rows: int = 20  # held-out rows needed to judge a candidate
    min_gain: float = 0.0  # the candidate's duration median APE must be below current * (1 - min_gain)
    memory_tolerance: float = 0.05  # ... and its memory median APE at most current * (1 + tolerance) + memory_slack
    memory_slack: float = 0.02  # absolute APE points: 0.041 vs 0.033 is noise, not a worse model
    memory_resolution_bytes: float = float(2**16)  # paired test: |error| differences below this are ties (measurement noise)
    memory_alpha: float = 0.05  # ... memory is worse only if the sign test of the non-tied rows says so at this level
    max_events: int = 2000  # events kept in events.jsonl
    max_history: int = 500  # promotion/rejection entries kept in registry.json


def promotion_config_from_settings() -> PromotionConfig:
    """:class:`PromotionConfig` from ``daskflow.models.promotion.*`` (defaults in ``daskflow.yaml``)."""
    from daskflow import config

    def get(name: str) -> Any:
        return config.get(f"models.promotion.{name}")

    return PromotionConfig(min_rows=int(get("min-rows")), min_gain=float(get("min-gain")),
                           memory_tolerance=float(get("memory-tolerance")), memory_slack=float(get("memory-slack")),
                           memory_resolution_bytes=float(_or(get("memory-resolution"), 2**16)),
                           memory_alpha=float(_or(get("memory-alpha"), 0.05)),
                           max_events=int(get("max-events")), max_history=int(get("max-history")))


def _or(value: Any, default: Any) -> Any:
    if value is None:
        return default
    if isinstance(value, str):
        from dask.utils import parse_bytes
        return parse_bytes(value)
    return value


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    metrics: dict[str, Any]


class ModelRegistry:
    """Versions of the models at ``url`` (default ``daskflow.models.url``)."""

    def __init__(self, url: str | None = None, storage_options: Mapping[str, Any] | None = None,
                 config: PromotionConfig | None = None) -> None:
        import fsspec.core

        if url is None:
            from daskflow import config as daskflow_config

            url = daskflow_config.models_url()
        self.url = str(url)
        self.config = config or promotion_config_from_settings()
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))

    # ---------------------------------------------------------------- reading
    def state(self) -> dict[str, Any]:
        path = self._path(REGISTRY)
        if not self.fs.exists(path):
            return {"format": REGISTRY_FORMAT, "current": None, "promoted": [], "versions": {}, "history": []}
        with self.fs.open(path, "rb") as f:
            state = json.loads(f.read())
        if state.get("format") != REGISTRY_FORMAT:
            raise ModelUnavailableError(f"{REGISTRY} in {self.url!r} has format {state.get('format')!r}, expected {REGISTRY_FORMAT}; move it aside to start a new registry")
        return state

    def list_versions(self) -> list[dict[str, Any]]:
        """Every version, oldest first: ``version``, ``status``, ``created_at``, ``current``, ``metrics``, ``reason``."""
        state = self._adopted_state()
        return [
            {"version": version, **entry, "current": version == state.get("current")}
            for version, entry in sorted(state["versions"].items(), key=lambda item: (item[1].get("created_at") or "", item[0]))
        ]

    @property
    def current(self) -> str | None:
        return self._adopted_state().get("current")

    # ---------------------------------------------------------------- writing
    def register(self, model_url: str, *, status: VersionStatus = "candidate", reason: str = "trained",
                 now: float | None = None) -> str:
        """Copy the model at ``model_url`` (a manifest + its boosters) in as a version; returns the version."""
        import fsspec.core

        fs, root = fsspec.core.url_to_fs(str(model_url))
        with fs.open(posixpath.join(root, MANIFEST), "rb") as f:
            raw = f.read()
        manifest = json.loads(raw)
        version = _version_of(manifest, model_url)
        blobs = {}
        for entry in (manifest.get("targets") or {}).values():
            if entry.get("file"):
                with fs.open(posixpath.join(root, entry["file"]), "rb") as f:
                    blobs[entry["file"]] = f.read()
        self._write_version(version, raw, blobs)
        state = self._adopted_state()
        state["versions"].setdefault(version, {
            "status": status, "created_at": manifest.get("created_at"), "rows": manifest.get("rows"),
            "metrics": manifest.get("metrics"), "reason": reason,
        })
        self._save(state)
        self.append_event({"event": "training", "at": _now(now), "version": version, "rows": manifest.get("rows"), "reason": reason})
        return version

    def promote(self, version: str, reason: str, *, now: float | None = None, _action: str = "promote") -> dict[str, Any]:
        """Serve ``version``: copy it to the top level, record it (and why). Returns the version's manifest."""
        state = self._adopted_state()
        if version not in state["versions"]:
            known = ", ".join(sorted(state["versions"])) or "none"
            raise ModelUnavailableError(f"model version {version!r} is not in the registry at {self.url!r} (known: {known}); see `daskflow model list`")
        raw, blobs = self._read_version(version)
        from daskflow.learning.training import _write_atomic

        for name, blob in sorted(blobs.items()):
            _write_atomic(self.fs, self._path(name), blob)
        _write_atomic(self.fs, self._path(MANIFEST), raw)  # last: a reader that sees it sees its boosters
        previous = state.get("current")
        if previous and previous != version and state["versions"].get(previous, {}).get("status") == "promoted":
            state["versions"][previous]["status"] = "retired"
        state["versions"][version]["status"] = "promoted"
        state["versions"][version]["reason"] = reason
        state["current"] = version
        if _action == "promote" and (not state["promoted"] or state["promoted"][-1] != version):
            state["promoted"].append(version)
        self._record(state, _action, version, reason, now, previous=previous)
        self._save(state)
        self.append_event({"event": _action, "at": _now(now), "version": version, "previous": previous, "reason": reason})
        return json.loads(raw)

    def reject(self, version: str, reason: str, *, now: float | None = None) -> None:
        """Keep ``version`` as a rejected candidate (with the reason)."""
        state = self._adopted_state()
        if version not in state["versions"]:
            raise ModelUnavailableError(f"model version {version!r} is not in the registry at {self.url!r}; register it first")
        state["versions"][version]["status"] = "rejected"
        state["versions"][version]["reason"] = reason
        self._record(state, "reject", version, reason, now)
        self._save(state)
        self.append_event({"event": "rejection", "at": _now(now), "version": version, "reason": reason})

    def rollback(self, reason: str = "rollback", *, now: float | None = None) -> str:
        """Serve the previously promoted version again (its exact bytes); returns it."""
        state = self._adopted_state()
        stack = list(state["promoted"])
        if len(stack) < 2:
            raise ModelUnavailableError(f"nothing to roll back to in {self.url!r}: {len(stack)} promoted version(s); see `daskflow model list`")
        current = stack.pop()
        target = stack[-1]
        state["versions"][current]["status"] = "rejected"
        state["versions"][current]["reason"] = f"rolled back: {reason}"
        state["promoted"] = stack
        self._save(state)
        self.promote(target, f"rollback from {current}: {reason}", now=now, _action="rollback")
        return target

    # ---------------------------------------------------------------- events
    def append_event(self, event: Mapping[str, Any]) -> None:
        """Append one event row to ``events.jsonl`` (keeps the newest ``max_events``; atomic rewrite)."""
        from daskflow.learning.training import _json_default, _write_atomic

        rows = self.read_events()
        rows.append(dict(event))
        rows = rows[-self.config.max_events:]
        data = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows).encode()
        self.fs.makedirs(self.root, exist_ok=True)
        _write_atomic(self.fs, self._path(EVENTS), data)

    def read_events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Event rows, oldest first (a torn last line is skipped)."""
        path = self._path(EVENTS)
        if not self.fs.exists(path):
            return []
        with self.fs.open(path, "rb") as f:
            lines = f.read().decode().splitlines()
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows[-limit:] if limit else rows

    # ---------------------------------------------------------------- internals
    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _adopted_state(self) -> dict[str, Any]:
        """The registry state; a served model it does not know is registered as promoted first."""
        state = self.state()
        top = self._path(MANIFEST)
        if not self.fs.exists(top):
            return state
        with self.fs.open(top, "rb") as f:
            raw = f.read()
        manifest = json.loads(raw)
        version = _version_of(manifest, self.url)
        if version in state["versions"]:
            return state
        blobs = {}
        for entry in (manifest.get("targets") or {}).values():
            if entry.get("file"):
                with self.fs.open(self._path(entry["file"]), "rb") as f:
                    blobs[entry["file"]] = f.read()
        self._write_version(version, raw, blobs)
        state["versions"][version] = {"status": "promoted", "created_at": manifest.get("created_at"), "rows": manifest.get("rows"),
                                      "metrics": manifest.get("metrics"), "reason": "adopted: served before the registry knew it"}
        state["current"] = version
        state["promoted"].append(version)
        self._save(state)
        return state

    def _write_version(self, version: str, raw_manifest: bytes, blobs: Mapping[str, bytes]) -> None:
        from daskflow.learning.training import _write_atomic

        directory = self._path(VERSIONS, version)
        if self.fs.exists(posixpath.join(directory, MANIFEST)):
            return  # versions are immutable (the version name carries the boosters' digest)
        self.fs.makedirs(directory, exist_ok=True)
        for name, blob in blobs.items():
            _write_atomic(self.fs, posixpath.join(directory, name), blob)
        _write_atomic(self.fs, posixpath.join(directory, MANIFEST), raw_manifest)

    def _read_version(self, version: str) -> tuple[bytes, dict[str, bytes]]:
        directory = self._path(VERSIONS, version)
        with self.fs.open(posixpath.join(directory, MANIFEST), "rb") as f:
            raw = f.read()
        blobs = {}
        for entry in (json.loads(raw).get("targets") or {}).values():
            if entry.get("file"):
                with self.fs.open(posixpath.join(directory, entry["file"]), "rb") as f:
                    blobs[entry["file"]] = f.read()
        return raw, blobs

    def _record(self, state: dict[str, Any], action: str, version: str, reason: str, now: float | None, **extra: Any) -> None:
        state["history"].append({"at": _now(now), "action": action, "version": version, "reason": reason, **extra})
        state["history"] = state["history"][-self.config.max_history:]

    def _save(self, state: dict[str, Any]) -> None:
        from daskflow.learning.training import _json_default, _write_atomic

        self.fs.makedirs(self.root, exist_ok=True)
        _write_atomic(self.fs, self._path(REGISTRY), json.dumps(state, indent=2, sort_keys=True, default=_json_default).encode())


def evaluate_candidate(candidate: Any, current: Any | None, rows: pd.DataFrame,
                       config: PromotionConfig | None = None) -> Verdict:
    """Promote or reject ``candidate`` (a predictor) against ``current`` on recent held-out ``rows``.

    Both are anything with ``predict(rows) -> Predictions``. The reason names the numbers. Memory is
    judged only on rows whose peak is above the noise floor (``CleaningConfig.memory_floor_bytes``):
    a few KiB of allocator noise must not reject a model that fixed a doubled duration.
    """
    from daskflow.learning.cleaning import CleaningConfig
    from daskflow.learning.training import median_ape

    config = config or PromotionConfig()
    duration = _column(rows, "duration_s")
    memory = _column(rows, "peak_memory_bytes")
    with np.errstate(invalid="ignore"):  # peaks at or below the noise floor measure allocator noise, not a model
        memory = np.where(memory > CleaningConfig().memory_floor_bytes, memory, np.nan)
    n = int((np.isfinite(duration) & (duration > 0)).sum())
    new = candidate.predict(rows)
    metrics: dict[str, Any] = {
        "rows": n,
        "candidate_duration_median_ape": median_ape(new.duration_s, duration),
        "candidate_memory_median_ape": median_ape(new.peak_memory_bytes, memory),
    }
    if current is None or not getattr(current, "has_model", True):
        return Verdict("promote", "no current model", metrics)
    if n < config.min_rows:
        return Verdict("reject", f"not enough evidence: {n} held-out rows with a duration, {config.min_rows} needed", metrics)
    old = current.predict(rows)
    metrics["current_duration_median_ape"] = median_ape(old.duration_s, duration)
    metrics["current_memory_median_ape"] = median_ape(old.peak_memory_bytes, memory)
    cd, od = metrics["candidate_duration_median_ape"], metrics["current_duration_median_ape"]
    cm, om = metrics["candidate_memory_median_ape"], metrics["current_memory_median_ape"]
    if od is not None and cd is not None and not cd < od * (1.0 - config.min_gain):
        return Verdict("reject", f"duration median APE {cd:.3f} does not beat the current {od:.3f} on {n} held-out rows", metrics)
    if om is not None and cm is not None and cm > om * (1.0 + config.memory_tolerance) + config.memory_slack:
        worse, better, p_value = paired_memory_test(new.peak_memory_bytes, old.peak_memory_bytes, memory,
                                                    config.memory_resolution_bytes)
        metrics.update(memory_rows_worse=worse, memory_rows_better=better, memory_sign_p=p_value)
        if p_value < config.memory_alpha:
            return Verdict("reject", f"memory median APE {cm:.3f} is worse than the current {om:.3f} (tolerance "
                           f"{config.memory_tolerance:.0%}; worse on {worse} rows, better on {better}, "
                           f"beyond {config.memory_resolution_bytes / 1024:.0f} KiB: sign test p={p_value:.3g})", metrics)
        return Verdict("promote", f"duration median APE {cd:.3f} beats the current {od:.3f} on {n} held-out rows; "
                       f"memory {cm:.3f} vs {om:.3f} is a tie within measurement noise (worse on {worse} rows, "
                       f"better on {better}, beyond {config.memory_resolution_bytes / 1024:.0f} KiB: p={p_value:.3g})", metrics)
    return Verdict("promote", f"duration median APE {cd:.3f} beats the current {od:.3f} on {n} held-out rows"
                   + (f"; memory {cm:.3f} vs {om:.3f}" if cm is not None and om is not None else ""), metrics)


def paired_memory_test(candidate: Any, current: Any, actual: Any, resolution: float) -> tuple[int, int, float]:
    """Paired sign test of the candidate's memory errors against the current model's on the same rows.

    Per row with a measured peak, the candidate is *worse* when its absolute error exceeds the current's
    by more than ``resolution`` bytes, *better* when it is below by more, otherwise a tie (both errors are
    equal at the measurement's resolution). Returns ``(worse, better, p)`` with ``p`` the one-sided
    binomial probability of at least ``worse`` worse rows among the non-tied ones if neither model were
    better (1.0 when no row differs).
    """
    c, o, y = (np.asarray(v, dtype="float64") for v in (candidate, current, actual))
    ok = np.isfinite(c) & np.isfinite(o) & np.isfinite(y)
    diff = np.abs(c[ok] - y[ok]) - np.abs(o[ok] - y[ok])
    worse, better = int((diff > resolution).sum()), int((diff < -resolution).sum())
    n = worse + better
    if n == 0:
        return worse, better, 1.0
    from scipy.stats import binom
    return worse, better, float(binom.sf(worse - 1, n, 0.5))


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _version_of(manifest: Mapping[str, Any], where: str) -> str:
    version = manifest.get("model_version")
    if not version:
        raise ModelUnavailableError(f"manifest.json at {where!r} has no model_version; retrain it with `daskflow model train`")
    return str(version)


def _now(now: float | None) -> float:
    return float(now) if now is not None else _dt.datetime.now(_dt.timezone.utc).timestamp()


def registry_events(url: str | None = None, limit: int | None = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` events of the models directory (for the model page)."""
    return ModelRegistry(url).read_events(limit)
