"""Evaluating sensors, and the built-in :func:`asset_sensor`.

Design note
-----------
:func:`evaluate_sensor` calls the user's function with a
:class:`~daskflow.timeline.specs.SensorContext` and turns whatever it returned
or yielded (``RunRequest``, ``SkipReason``, ``None``, or an iterable of them)
into one :class:`SensorResult`. A sensor that raises is an ``error`` result
with one line (type and message) — the daemon records it on the tick and
carries on; the cursor is then left unchanged, so the next evaluation retries
from the same place.

:func:`asset_sensor` requests a run of a downstream selection whenever an
upstream asset gets a new materialization. Its cursor is the id of the newest
materialization seen; it reads the catalog only through its public API
(``latest_materializations``), one run request per partition that changed,
with run key ``"<asset>:<materialization id>"``. On its first evaluation it
requests one run for the newest existing materialization (like Dagster).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daskflow.timeline.specs import RunRequest, SensorContext, SensorSpec, SkipReason, make_sensor_spec

__all__ = ["SensorResult", "asset_sensor", "evaluate_sensor"]

SensorStatus = Literal["requested", "skipped", "error"]


@dataclass(frozen=True)
class SensorResult:
    """One evaluation: its status, a one-line message, the run requests and the cursor to store."""

    status: SensorStatus
    message: str
    requests: tuple[RunRequest, ...]
    cursor: str | None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def evaluate_sensor(spec: SensorSpec, context: SensorContext) -> SensorResult:
    """Call ``spec.fn(context)`` and normalize the outcome; never raises for user errors."""
    before = context.cursor
    requests: list[RunRequest] = []
    skips: list[str] = []
    try:
        produced = spec.fn(context)
        items = list(produced) if inspect.isgenerator(produced) or isinstance(produced, (list, tuple)) \
            else [produced]
        for item in items:
            if isinstance(item, RunRequest):
                requests.append(item)
            elif isinstance(item, SkipReason):
                skips.append(item.message)
            elif item is not None:
                raise TypeError(f"sensor returned {type(item).__name__} {item!r}; expected RunRequest, "
                                "SkipReason or None")
    except Exception as exc:
        return SensorResult("error", _one_line(f"sensor {spec.name!r} raised {type(exc).__name__}: {exc}"),
                            (), before)
    if requests:
        return SensorResult("requested", f"{len(requests)} run request(s)", tuple(requests), context.cursor)
    return SensorResult("skipped", _one_line("; ".join(m for m in skips if m)) or "no run requested", (),
                        context.cursor)


def asset_sensor(
    asset: object, target: object, *, name: str | None = None, minimum_interval_s: float = 30.0,
    tags: Mapping[str, str] | None = None, description: str | None = None,
) -> SensorSpec:
    """A sensor that runs ``target`` when ``asset`` gets a new materialization.

    >>> spec = asset_sensor("orders", target="orders+")
    >>> spec.name, spec.target
    ('orders_sensor', 'orders+')
    """
    from daskflow.definitions import spec_of

    asset_spec = spec_of(asset)
    asset_key = asset_spec.key if asset_spec is not None else str(asset).strip("/")

    def evaluate(context: SensorContext) -> Any:
        if context.catalog is None or not context.catalog.path.exists():
            return SkipReason(f"no catalog yet: {asset_key!r} was never materialized")
        seen = int(context.cursor) if context.cursor else None
        latest = sorted(context.catalog.latest_materializations([asset_key]).values(), key=lambda m: m.id)
        if seen is None:
            latest = latest[-1:]
        fresh = [m for m in latest if seen is None or m.id > seen]
        if not fresh:
            return SkipReason(f"no new materialization of {asset_key!r} since id {seen}")
        context.update_cursor(str(max(m.id for m in fresh)))
        return [RunRequest(run_key=f"{asset_key}:{m.id}", partitions=None if m.partition is None else (m.partition,),
                           tags={"upstream_materialization": str(m.id)}) for m in fresh]

    sensor_name = name if name is not None else f"{asset_key.replace('/', '_')}_sensor"
    evaluate.__name__ = evaluate.__qualname__ = sensor_name
    return make_sensor_spec(evaluate, target=target, minimum_interval_s=minimum_interval_s, name=sensor_name,
                            tags=tags, description=description or f"runs {target!r} on new materializations "
                                                                  f"of {asset_key!r}")
