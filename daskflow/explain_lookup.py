"""Finding the task ``daskflow explain`` is asked about, and what is known about it without a cluster.

Design note
-----------
People name a task the way the CLI showed it to them: an asset key
(``revenue`` or ``sales/revenue``) with ``--run`` (default: the last run
that ran it) and ``--partition``; a task key with the 12-character run id
that ``daskflow runs`` prints; or a full task key
(``<asset>-<32-hex run id>[-<partition>]``, :func:`daskflow.planning.task_key`).
:func:`resolve_target` turns any of those into one :class:`Target` using the
catalog's runs and run events only; a name it cannot place is passed through
as a raw Dask key (a graph submitted without daskflow's planner); when no
record knows that key either, :func:`unknown_target` makes it one line with
the closest asset name or run id.

When no scheduler is reachable, the story is told from durable sources:
decisions from the audit (:class:`daskflow.audit.AuditStore`), the actual
cost from the history dataset or, failing that, the catalog's
materialization, and a prediction computed now (:func:`offline_prediction`:
the model, else the per-category running mean of earlier tasks, else the
default) — labelled as such, because it is not the number steering acted on.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from daskflow.errors import DaskflowError
from daskflow.planning import task_key

__all__ = ["Target", "offline_prediction", "resolve_target", "unknown_target", "why_no_decision"]

_FULL_RUN = re.compile(r"-(?P<run>[0-9a-f]{32})(?=-|$)")
_RUN_PREFIX = re.compile(r"-(?P<run>[0-9a-f]{6,31})(?=-|$)")
#: how many recent runs are searched for an asset named without --run
_RECENT_RUNS = 50
#: run events that mean the asset's task ran in that run
_RAN_KINDS = ("asset-success", "asset-failed")


@dataclasses.dataclass(frozen=True)
class Target:
    """One task: its Dask key and, when daskflow planned it, its run, asset and partition."""

    key: str
    run_id: str | None = None
    asset: str | None = None
    partition: str | None = None


def _split(key: str, match: re.Match) -> tuple[str, str | None]:
    name = key[:match.start()]
    rest = key[match.end():]
    return name, (rest[1:] if rest.startswith("-") else None)


def _asset_of(name: str) -> str:
    return name.split(".check.", 1)[0]


def _run_by_prefix(prefix: str, run_ids: list[str], catalog_path: Any) -> str:
    matches = [r for r in run_ids if r.startswith(prefix)]
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs"
        raise DaskflowError(f"{found} with id starting {prefix!r} in {catalog_path}; list them with `daskflow runs`")
    return matches[0]


def resolve_target(text: str, run: str | None = None, partition: str | None = None, catalog: Any = None) -> Target:
    """The task named by ``text`` (asset key, task key with a run-id prefix, or full task key).

    >>> resolve_target("orders-" + "a" * 32 + "-2024-01-01", catalog=False)
    Target(key='orders-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-2024-01-01', run_id='aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', \
asset='orders', partition='2024-01-01')
    """
    full = _FULL_RUN.search(text)
    if full is not None:
        name, part = _split(text, full)
        return Target(text, full["run"], _asset_of(name), part)
    if catalog is False:
        return Target(text, run, None, partition)
    if catalog is None:
        from daskflow.catalog import Catalog

        catalog = Catalog()
    if not catalog.path.exists():
        return Target(text, run, None, partition)
    run_ids = [r.run_id for r in catalog.runs(limit=None)]
    run_id = _run_by_prefix(run, run_ids, catalog.path) if run else None
    for match in _RUN_PREFIX.finditer(text):  # a key as `daskflow runs` shows it: <asset>-<12 hex>[-<partition>]
        candidates = [r for r in run_ids if r.startswith(match["run"])]
        if len(candidates) == 1:
            name, part = _split(text, match)
            _check_asset_ran(catalog, _asset_of(name), candidates[0])
            return Target(task_key(name, part, candidates[0]), candidates[0], _asset_of(name), part)
    searched = [run_id] if run_id else run_ids[:_RECENT_RUNS]
    # without --run: the newest run that *ran* the asset (an --only-stale run that found it up to date did not)
    for kinds in ((_RAN_KINDS,) if not run_id else ()) + (None,):
        target = _asset_in_runs(catalog, text, searched, partition, kinds)
        if target is not None:
            return target
    if run_id is not None and not _FULL_RUN.search(text):
        raise DaskflowError(f"no asset {text!r} in run {run_id[:12]}; see `daskflow runs {run_id[:12]}` for its assets")
    return Target(text, run_id, None, partition)  # a raw Dask key (not planned by daskflow)


def _check_asset_ran(catalog: Any, asset: str, run_id: str) -> None:
    """Raise a one-line error (with the closest name) when ``asset`` is not an asset of run ``run_id``."""
    import difflib

    assets = {e.asset_key for e in catalog.events(run_id) if e.asset_key}
    if not assets or asset in assets:
        return
    close = difflib.get_close_matches(asset, sorted(assets), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise DaskflowError(f"no asset {asset!r} in run {run_id[:12]}; {hint}see `daskflow runs {run_id[:12]}` for its assets")


def _asset_in_runs(catalog: Any, text: str, searched: list[str], partition: str | None,
                   kinds: tuple[str, ...] | None) -> Target | None:
    for candidate in searched:
        ran: dict[str, set] = {}
        for event in catalog.events(candidate):
            if kinds is not None and event.kind not in kinds:
                continue
            if event.asset_key and (event.asset_key == text or event.asset_key.endswith("/" + text)):
                ran.setdefault(event.asset_key, set()).add(event.partition)
        if not ran:
            continue
        if len(ran) > 1:
            raise DaskflowError(f"{text!r} names {len(ran)} assets in run {candidate[:12]} ({', '.join(sorted(ran))}); "
                                "pass the full asset key")
        asset, parts = next(iter(ran.items()))
        if len(parts) > 1:
            parts.discard(None)  # run-level events of a partitioned asset carry no partition
        if partition is None:
            if len(parts) > 1:
                example = sorted(p for p in parts if p)[0]
                raise DaskflowError(f"asset {asset!r} ran {len(parts)} partitions in run {candidate[:12]}; "
                                    f"pass --partition, e.g. --partition {example}")
            partition = next(iter(parts))
        elif partition not in parts:
            shown = ", ".join(sorted(str(p) for p in parts)[:5])
            raise DaskflowError(f"asset {asset!r} has no partition {partition!r} in run {candidate[:12]} "
                                f"(it ran: {shown}); check --partition")
        return Target(task_key(asset, partition, candidate), candidate, asset, partition)
    return None


def unknown_target(text: str, catalog: Any) -> DaskflowError:
    """The one-line error for a name no run, audit row or history row knows, with the closest asset or run id.

    >>> str(unknown_target("daily_revenu", catalog=None))
    "no asset, task or run 'daily_revenu' is known; list them with `daskflow runs`"
    """
    import difflib

    known: set[str] = set()
    runs = []
    if catalog is not None and getattr(catalog, "path", None) is not None and catalog.path.exists():
        runs = [r.run_id for r in catalog.runs(limit=_RECENT_RUNS)]
        for run_id in runs[:10]:
            known.update(e.asset_key for e in catalog.events(run_id) if e.asset_key)
    names = sorted(known | {r[:12] for r in runs})
    head = text.split("-", 1)[0] if text not in names else text
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.6) or difflib.get_close_matches(head, names, n=1,
                                                                                                    cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    where = f" in {catalog.path}" if runs else ""
    return DaskflowError(f"no asset, task or run {text!r} is known{where}; {hint}list them with `daskflow runs`")


# -- no decision: why ------------------------------------------------------------
def why_no_decision(run_decisions: Iterable[Mapping[str, Any]], predicted_s: float | None,
                    predicted_peak_bytes: float | None = None, source: str = "scheduler",
                    state: Mapping[str, Any] | None = None) -> str:
    """Why a task has no decision of its own, from the graph-level decisions of its run.

    >>> why_no_decision([{"key": None, "action": "priority", "reason": "critical-path", "hold_threshold_s": 0.08,
    ...                   "n_tasks": 4, "n_held": 1}], 0.02)
    'left to Dask: predicted 0.02 s < hold threshold 0.08 s (critical-path priority set; 1 of 4 tasks placed late)'
    """
    graph = [d for d in run_decisions if d.get("key") is None]
    if state and state.get("mode") == "off":
        return "steering is off (daskflow.steering.mode: off): stock Dask placed it"
    fallbacks = [d for d in graph if d.get("action") == "fallback"]
    if fallbacks:
        return f"steering fell back to stock Dask for its graph ({fallbacks[-1].get('where') or 'an exception'})"
    priority = [d for d in graph if d.get("action") == "priority"]
    if not priority:
        if source == "audit":
            return "no decision recorded: the durable audit has no steering rows for this run"
        return "no decision recorded (steering off, or evicted from the plugin's bounded log)"
    last = priority[-1]
    if last.get("reason") == "no-information":
        return "left to Dask: nothing learned yet for any task of its graph (all predictions were defaults)"
    counts = f"{last.get('n_held', 0)} of {last.get('n_tasks', '?')} tasks placed late"
    threshold = last.get("hold_threshold_s")
    if threshold is not None and predicted_s is not None:
        floor = last.get("memory_floor_bytes")
        memory = ""
        if floor is not None and predicted_peak_bytes is not None:
            from daskflow.formatting import format_bytes

            memory = f", peak {format_bytes(predicted_peak_bytes)} < {format_bytes(floor)}"
        if predicted_s >= float(threshold):
            return (f"left to Dask although predicted {_secs(predicted_s)} s >= hold threshold "
                    f"{_secs(float(threshold))} s: the plugin did not place it (e.g. restricted by a placement "
                    f"rule, which Dask enforces) ({counts})")
        return (f"left to Dask: predicted {_secs(predicted_s)} s < hold threshold {_secs(float(threshold))} s{memory} "
                f"(critical-path priority set; {counts})")
    return (f"left to Dask with a critical-path priority: too short or small to place late ({counts}; the "
            "threshold is not in the decision events)")


def _secs(value: float) -> str:
    """Seconds short but not rounded to zero: ``0.02``, ``0.0014``, ``1.23``."""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.2g}"


# -- a prediction computed now ----------------------------------------------------
def offline_prediction(row: Mapping[str, Any], earlier: Iterable[Mapping[str, Any]] = (),
                       models_url: str | None = None) -> dict[str, Any]:
    """The model's prediction for one history row now; else the mean of ``earlier`` rows of its category; else the default.

    ``{"predicted_duration_s", "predicted_peak_memory_bytes", "quality", "model_version", "computed_now": True}``.
    """
    from daskflow import config
    from daskflow.learning.predictor import Predictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no model": the quality says so
        predictor = Predictor.load(config.models_url(models_url))
        predictor.maybe_reload(force=True)
    category = str(row.get("category") or "")
    for previous in earlier:
        if str(previous.get("category") or "") == category:
            predictor.observe(category, previous.get("duration_s"), previous.get("peak_memory_bytes"))
    try:
        predicted = predictor.predict([dict(row)])
        duration, memory, quality = (float(predicted.duration_s[0]), float(predicted.peak_memory_bytes[0]),
                                     str(predicted.quality[0]))
    except Exception:  # noqa: BLE001 - a record the model cannot featurize: the baseline
        duration, quality, memory, _ = predictor.baseline_for(category)
    return {"predicted_duration_s": duration, "predicted_peak_memory_bytes": memory, "quality": quality,
            "model_version": predictor.model_version, "computed_now": True}
