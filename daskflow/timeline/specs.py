"""Schedules and sensors as frozen specs: ``daskflow.schedule(...)``, ``@daskflow.sensor``.

Design note
-----------
Like ``@asset``, these only *record*: :func:`schedule` returns a frozen
:class:`ScheduleSpec`; ``@sensor`` records a :class:`SensorSpec` on the
function as ``fn.__daskflow_sensor__`` and returns the function unchanged.
Everything that can be checked without the asset graph is checked here, at
import time of the pipeline (cron syntax, timezone, names, catch-up policy);
the target against the graph is checked by :func:`daskflow.timeline.targets.resolve_timeline`
when the daemon loads the pipeline. Every mistake is one line naming the
schedule or sensor and the fix.

A sensor function takes one :class:`SensorContext` (its persisted ``cursor``,
``last_tick_time``, ``update_cursor``) and returns or yields
:class:`RunRequest` and :class:`SkipReason` objects (or ``None``). A run key
launches at most once, ever (see :mod:`daskflow.timeline.store`).

``target`` is a selection in the ``--select`` language (``"+report"``,
``"group:sales"``) or a list of asset keys / @asset functions.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from daskflow.timeline.errors import TimelineDefinitionError

if TYPE_CHECKING:  # pragma: no cover
    import datetime as _dt

    from daskflow.catalog import Catalog

__all__ = [
    "CATCHUP_POLICIES", "SENSOR_ATTRIBUTE", "RunRequest", "ScheduleSpec", "SensorContext", "SensorSpec",
    "SkipReason", "normalize_schedules", "normalize_sensors", "schedule", "schedule_spec_of", "sensor",
    "sensor_spec_of",
]

SENSOR_ATTRIBUTE = "__daskflow_sensor__"
CatchupPolicy = Literal["skip", "latest", "all"]
CATCHUP_POLICIES: tuple[str, ...] = ("skip", "latest", "all")
# Schedule and sensor names become catalog keys and CLI arguments: keep them plain.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

#: ``partitions=`` of a schedule: a fixed selection, or a function of the tick time.
PartitionsOfTick = "str | Sequence[str] | Callable[[_dt.datetime], str | Sequence[str] | None] | None"


@dataclass(frozen=True)
class ScheduleSpec:
    """A cron schedule of a target selection. Frozen, plain data; see :func:`schedule`."""

    name: str
    cron: str
    target: str
    timezone: str = "UTC"
    partitions: Any = field(default=None, compare=False)  # PartitionsOfTick
    catchup: CatchupPolicy = "latest"
    catchup_limit: int = 10
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)
    description: str | None = None


@dataclass(frozen=True)
class SensorSpec:
    """A sensor: ``fn(context)`` evaluated every ``minimum_interval_s``; see :func:`sensor`."""

    name: str
    fn: Callable[[SensorContext], Any] = field(repr=False, compare=False)
    target: str | None = None
    minimum_interval_s: float = 30.0
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)
    description: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """What a sensor asks for: one run of ``selection`` (default: the sensor's target).

    ``run_key`` launches at most once per sensor, ever; ``None`` means one per
    evaluation (keyed by the tick). ``tags`` are stored on the run
    (``runs.tags``) beside the trigger and the run key.
    """

    run_key: str | None = None
    partitions: str | tuple[str, ...] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    selection: str | None = None

    def __post_init__(self) -> None:
        if self.run_key is not None and not isinstance(self.run_key, str):
            object.__setattr__(self, "run_key", str(self.run_key))
        if self.partitions is not None and not isinstance(self.partitions, str):
            object.__setattr__(self, "partitions", tuple(str(p) for p in self.partitions))
        if self.selection is not None and not isinstance(self.selection, str):
            object.__setattr__(self, "selection", _selection_of(self.selection, "RunRequest", "selection"))
        object.__setattr__(self, "tags", {str(k): str(v) for k, v in dict(self.tags or {}).items()})


@dataclass(frozen=True)
class SkipReason:
    """A sensor's way of saying "nothing to do", with why (recorded on the tick)."""

    message: str = ""


@dataclass
class SensorContext:
    """What a sensor function receives. ``cursor`` is persisted between evaluations.

    Set it with :meth:`update_cursor`; it is stored in the same transaction
    that claims the evaluation's run keys, so a crash never loses one without
    the other.
    """

    sensor_name: str
    cursor: str | None
    last_tick_time: _dt.datetime | None
    tick_time: _dt.datetime
    catalog: Catalog | None = None

    def update_cursor(self, cursor: str | None) -> None:
        self.cursor = None if cursor is None else str(cursor)


def _fail(owner: str, problem: str, fix: str) -> TimelineDefinitionError:
    return TimelineDefinitionError(f"{owner}: {problem}. Fix: {fix}.")


def _check_name(name: object, owner: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(owner, f"name {name!r} is not a valid name (letters, digits, '_', '.', '-', starting "
                           "with a letter or '_')", "pass name='nightly_report'")
    return name


def _selection_of(target: object, owner: str, what: str = "target") -> str:
    """A selection string from a string, or a list of keys / @asset functions / AssetSpecs."""
    from daskflow.definitions import spec_of

    if isinstance(target, str):
        if not target.strip():
            raise _fail(owner, f"{what} is empty", f"{what}='+report' (the --select language) or a list of assets")
        return target.strip()
    spec = spec_of(target)
    if spec is not None:
        return spec.key
    if isinstance(target, Iterable):
        parts = [_selection_of(item, owner, what) for item in target]
        if parts:
            return ",".join(parts)
    raise _fail(owner, f"{what} {target!r} is not a selection", f"{what}='+report', "
                f"{what}='group:sales' or {what}=[orders, 'sales/total']")


def _check_cron(cron: object, owner: str) -> str:
    from croniter import croniter

    if not isinstance(cron, str) or not croniter.is_valid(cron.strip()):
        raise _fail(owner, f"cron {cron!r} is not a valid cron expression",
                    "five fields 'minute hour day month weekday', e.g. cron='10 0 * * *' (a sixth field "
                    "adds seconds: '* * * * * */5')")
    return " ".join(cron.split())


def _check_timezone(timezone: object, owner: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(str(timezone))
        if isinstance(timezone, str):
            return timezone
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    close = difflib.get_close_matches(str(timezone), sorted(zoneinfo.available_timezones()), n=1)
    hint = f"timezone={close[0]!r}" if close else "an IANA name such as timezone='Europe/Berlin' or 'UTC'"
    raise _fail(owner, f"timezone {timezone!r} is unknown", hint)


def _check_tags(tags: object, owner: str) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise _fail(owner, f"tags must map str to str, got {tags!r}", "tags={'team': 'sales'}")
    return dict(tags)


def _default_name(target: str, suffix: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", target).strip("_") or "all"
    return f"{slug}_{suffix}"


def schedule(
    cron: str, target: object, *, timezone: str = "UTC", partitions: Any = None,
    catchup: CatchupPolicy = "latest", catchup_limit: int = 10, name: str | None = None,
    tags: Mapping[str, str] | None = None, description: str | None = None,
) -> ScheduleSpec:
    """A cron schedule that materializes ``target``; returns a frozen :class:`ScheduleSpec`.

    ``partitions`` (for partitioned targets): ``None`` runs the partition the
    tick closes (yesterday for a daily schedule at 00:10), a selection string or
    list runs those keys, a function ``f(tick_time) -> keys`` decides per tick.
    ``catchup`` for ticks missed while no daemon ran: ``"skip"`` none,
    ``"latest"`` the most recent one, ``"all"`` up to ``catchup_limit`` (newest).

    >>> nightly = schedule("10 0 * * *", target="+report", timezone="Europe/Berlin", name="nightly")
    >>> nightly.name, nightly.cron, nightly.catchup
    ('nightly', '10 0 * * *', 'latest')
    """
    owner = f"schedule {name!r}" if name is not None else f"schedule(cron={cron!r})"
    selection = _selection_of(target, owner)
    name = _check_name(name if name is not None else _default_name(selection, "schedule"), owner)
    owner = f"schedule {name!r}"
    cron = _check_cron(cron, owner)
    timezone = _check_timezone(timezone, owner)
    if catchup not in CATCHUP_POLICIES:
        raise _fail(owner, f"catchup={catchup!r} is unknown", "catchup='skip', 'latest' or 'all'")
    if not isinstance(catchup_limit, int) or isinstance(catchup_limit, bool) or catchup_limit < 1:
        raise _fail(owner, f"catchup_limit must be an int >= 1, got {catchup_limit!r}", "catchup_limit=10")
    if partitions is not None and not (isinstance(partitions, str) or callable(partitions)):
        if not isinstance(partitions, Iterable):
            raise _fail(owner, f"partitions={partitions!r} is not a selection or a function",
                        "partitions='2024-01-01...2024-01-07', a list of keys, or a function of the tick time")
        partitions = tuple(str(p) for p in partitions)
    return ScheduleSpec(name=name, cron=cron, target=selection, timezone=timezone, partitions=partitions,
                        catchup=catchup, catchup_limit=catchup_limit, tags=_check_tags(tags, owner),
                        description=description)


def sensor(
    fn: Callable | None = None, *, target: object = None, minimum_interval_s: float = 30.0,
    name: str | None = None, tags: Mapping[str, str] | None = None, description: str | None = None,
) -> Callable:
    """Declare ``fn(context)`` a sensor; record a :class:`SensorSpec` on it; return it.

    >>> @sensor(target="report", minimum_interval_s=10)
    ... def new_files(context):
    ...     return SkipReason("no new files")
    >>> new_files.__daskflow_sensor__.name, new_files.__daskflow_sensor__.target
    ('new_files', 'report')
    """
    options = dict(target=target, minimum_interval_s=minimum_interval_s, name=name, tags=tags,
                   description=description)
    if fn is None:
        return lambda f: _record_sensor(f, **options)
    return _record_sensor(fn, **options)


def make_sensor_spec(fn: Callable, *, target: object, minimum_interval_s: float, name: str | None,
                     tags: Mapping[str, str] | None, description: str | None) -> SensorSpec:
    """Validate and build a :class:`SensorSpec` (shared by ``@sensor`` and ``asset_sensor``)."""
    label = getattr(fn, "__qualname__", repr(fn))
    owner = f"sensor {name!r}" if name is not None else f"@sensor {label}"
    if not callable(fn) or isinstance(fn, type):
        raise _fail(owner, f"@sensor decorates functions, got {fn!r}", "put @sensor on a 'def fn(context)'")
    name = _check_name(name if name is not None else getattr(fn, "__name__", None), owner)
    owner = f"sensor {name!r}"
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        parameters = {"context": None}
    if len(parameters) != 1:
        raise _fail(owner, f"the function takes {len(parameters)} parameters, expected one (the context)",
                    f"def {name}(context): ...")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise _fail(owner, "async sensors are not supported", "make it a plain 'def' that returns or yields")
    if isinstance(minimum_interval_s, bool) or not isinstance(minimum_interval_s, (int, float)) \
            or minimum_interval_s < 0:
        raise _fail(owner, f"minimum_interval_s must be a number >= 0, got {minimum_interval_s!r}",
                    "minimum_interval_s=30")
    selection = None if target is None else _selection_of(target, owner)
    return SensorSpec(name=name, fn=fn, target=selection, minimum_interval_s=float(minimum_interval_s),
                      tags=_check_tags(tags, owner),
                      description=description if description is not None else inspect.getdoc(fn))


def _record_sensor(fn: Callable, **options: Any) -> Callable:
    spec = make_sensor_spec(fn, **options)
    try:
        setattr(fn, SENSOR_ATTRIBUTE, spec)
    except (AttributeError, TypeError) as exc:
        raise _fail(f"sensor {spec.name!r}", f"cannot record the spec on {fn!r} ({exc})",
                    "decorate a plain 'def' function") from exc
    return fn


def schedule_spec_of(obj: object) -> ScheduleSpec | None:
    return obj if isinstance(obj, ScheduleSpec) else None


def sensor_spec_of(obj: object) -> SensorSpec | None:
    """The :class:`SensorSpec` of a decorated sensor (or the spec itself), else None."""
    if isinstance(obj, SensorSpec):
        return obj
    spec = getattr(obj, SENSOR_ATTRIBUTE, None) if callable(obj) and not isinstance(obj, type) else None
    return spec if isinstance(spec, SensorSpec) else None


def _unique(specs: Sequence[Any], kind: str) -> tuple[Any, ...]:
    by_name: dict[str, Any] = {}
    for spec in specs:
        if spec.name in by_name and by_name[spec.name] is not spec:
            raise _fail(f"{kind} {spec.name!r}", f"two {kind}s share the name {spec.name!r}",
                        f"give each {kind} its own name=")
        by_name[spec.name] = spec
    return tuple(by_name.values())


def _normalize(items: Iterable[object], spec_of: Callable[[object], Any], kind: str, fix: str) -> tuple:
    """The specs of ``items`` (each read with ``spec_of``), unique by name; a one-line error for anything else."""
    specs = []
    for item in items or ():
        spec = spec_of(item)
        if spec is None:
            raise TimelineDefinitionError(
                f"Definitions({kind}s=...) got {item!r}, which is not a {kind}. Fix: {fix}.")
        specs.append(spec)
    return _unique(specs, kind)


def normalize_schedules(items: Iterable[object]) -> tuple[ScheduleSpec, ...]:
    """``Definitions(schedules=...)``: ScheduleSpecs, unique by name."""
    return _normalize(items, schedule_spec_of, "schedule", "build it with daskflow.schedule(cron=..., target=...)")


def normalize_sensors(items: Iterable[object]) -> tuple[SensorSpec, ...]:
    """``Definitions(sensors=...)``: @sensor functions or SensorSpecs, unique by name."""
    return _normalize(items, sensor_spec_of, "sensor",
                      "decorate it with @daskflow.sensor(target=...), or use daskflow.asset_sensor(...)")
