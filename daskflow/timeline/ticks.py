"""Pure tick computation: which cron ticks of a schedule are due, and what each runs.

Design note
-----------
Time is an argument: nothing here reads a clock. :func:`due_ticks` takes the
schedule, the time up to which ticks were already evaluated (the persisted
cursor) and ``now``, and returns a :class:`TickPlan` — the ticks to launch and
the ticks skipped by the catch-up policy. The daemon persists the plan in one
transaction (:mod:`daskflow.timeline.store`).

Cron times come from ``croniter`` iterating in the schedule's timezone
(``zoneinfo``), so DST is handled in wall-clock terms:

* spring forward: a wall time inside the gap (02:30 in Europe/Berlin on the
  last Sunday of March) fires at the first instant after the gap (03:00 CEST);
  an hourly schedule simply has no 02:00 that day (23 ticks);
* fall back: a wall time that happens twice (02:30 in Berlin, 01:30 in New
  York) fires **once**, at its first occurrence — unless the cron's hour field
  is every hour, then it fires in both hours like any hourly job (Vixie cron's
  rule for fixed-time vs. wildcard jobs).

Catch-up: a tick is *on time* when it is at most ``grace_s`` older than
``now``; older due ticks were *missed* (no daemon ran). On-time ticks are
always launched; missed ones by policy: ``skip`` none, ``latest`` the newest
one (only when no on-time tick exists), ``all`` the newest ``catchup_limit``.
All comparisons are on instants (``timestamp()``): Python compares two
datetimes of the same zone by wall clock, ignoring ``fold``, so the two
02:00s of a fall-back night would compare equal.

Missed ticks are found walking backwards from ``now - grace_s``, so a week of
downtime of a per-second schedule costs O(limit), not O(missed).

The partition a tick runs (:func:`tick_partitions`) defaults to the one the
tick *closes*: the last time window complete at the tick instant (partitions
are UTC windows), e.g. yesterday for a daily schedule at 00:10 UTC, and the
hour that just ended for an hourly one.
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

from daskflow.partitions import DailyPartitions, HourlyPartitions, PartitionsDefinition
from daskflow.timeline.specs import ScheduleSpec

__all__ = ["MAX_RECORDED_SKIPS", "TickPlan", "cron_times", "due_ticks", "tick_partitions"]

UTC = _dt.timezone.utc
#: missed ticks recorded individually as "skipped" (older ones are summarised by ``more_skipped``)
MAX_RECORDED_SKIPS = 100


@dataclass(frozen=True)
class TickPlan:
    """What one evaluation of a schedule decided. Times are aware, in the schedule's zone."""

    launch: tuple[_dt.datetime, ...]   # ascending
    skipped: tuple[_dt.datetime, ...]  # missed ticks the policy drops (newest MAX_RECORDED_SKIPS), ascending
    more_skipped: bool                 # older missed ticks exist beyond ``skipped``
    evaluated_until: _dt.datetime      # the new cursor: every tick <= this is decided


def _plus(moment: _dt.datetime, seconds: float) -> _dt.datetime:
    """``moment`` shifted by elapsed seconds (aware arithmetic in a zone would be wall-clock)."""
    return (moment.astimezone(UTC) + _dt.timedelta(seconds=seconds)).astimezone(moment.tzinfo)


def _aware(moment: _dt.datetime, what: str) -> _dt.datetime:
    if not isinstance(moment, _dt.datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {moment!r}; "
                         "e.g. datetime.now(timezone.utc)")
    return moment


def _zone(spec: ScheduleSpec) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(spec.timezone)


def _every_hour(cron) -> bool:
    hours = cron.expanded[1]
    return hours == ["*"] or len(set(hours)) >= 24


def _normal(moment: _dt.datetime, zone: zoneinfo.ZoneInfo) -> _dt.datetime:
    # croniter's results carry the right offset but not always the right ``fold``;
    # a round trip through UTC makes the datetime canonical (comparisons, isoformat).
    return moment.astimezone(UTC).astimezone(zone)


def _is_repeat(moment: _dt.datetime, zone: zoneinfo.ZoneInfo) -> bool:
    """True for the *second* occurrence of a wall time that happens twice (fall back)."""
    wall = moment.replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    return first != second and moment.utcoffset() == second and first != moment.utcoffset()


def _iterate(spec: ScheduleSpec, start: _dt.datetime, backwards: bool):
    """Cron times strictly after (or before) ``start``, DST rules of the module note applied."""
    from croniter import croniter

    zone = _zone(spec)
    cron = croniter(spec.cron, start.astimezone(zone))
    keep_repeats = _every_hour(cron)
    step = cron.get_prev if backwards else cron.get_next
    previous = None
    while True:
        moment = _normal(step(_dt.datetime), zone)
        if moment.timestamp() == previous:  # a gap mapped two wall times onto one instant
            continue
        previous = moment.timestamp()
        if not keep_repeats and _is_repeat(moment, zone):
            continue
        yield moment


def cron_times(spec: ScheduleSpec, after: _dt.datetime, until: _dt.datetime,
               limit: int | None = None) -> list[_dt.datetime]:
    """The schedule's cron times ``t`` with ``after < t <= until``, ascending (at most ``limit``).

    >>> import datetime as dt
    >>> from daskflow.timeline.specs import schedule
    >>> s = schedule("0 * * * *", target="x", timezone="Europe/Berlin", name="hourly")
    >>> day = dt.datetime(2024, 3, 30, 23, tzinfo=dt.timezone.utc)  # 00:00 CET on spring-forward day
    >>> len(cron_times(s, day - dt.timedelta(seconds=1), day + dt.timedelta(hours=23)))
    24
    """
    _aware(after, "after")
    until_s = _aware(until, "until").timestamp()
    found: list[_dt.datetime] = []
    for moment in _iterate(spec, after, backwards=False):
        if moment.timestamp() > until_s or (limit is not None and len(found) >= limit):
            break
        found.append(moment)
    return found


def _missed(spec: ScheduleSpec, last: _dt.datetime, before: _dt.datetime, wanted: int
            ) -> tuple[list[_dt.datetime], bool]:
    """Up to ``wanted`` newest cron times in ``(last, before]``, ascending, and whether more exist."""
    found: list[_dt.datetime] = []
    last_s = last.timestamp()
    # get_prev is strict: start a hair after ``before`` so a tick exactly at it counts.
    for moment in _iterate(spec, _plus(before, 1e-6), backwards=True):
        if moment.timestamp() <= last_s:
            return found[::-1], False
        if len(found) >= wanted:
            return found[::-1], True
        found.append(moment)
    return found[::-1], False  # pragma: no cover - the iterator is infinite


def due_ticks(spec: ScheduleSpec, last_tick_time: _dt.datetime | None, now: _dt.datetime,
              grace_s: float = 60.0) -> TickPlan:
    """Decide the ticks of ``spec`` in ``(last_tick_time, now]`` under its catch-up policy.

    ``last_tick_time=None`` (a schedule seen for the first time) starts the
    clock at ``now``: nothing is due, nothing is back-filled.

    >>> import datetime as dt
    >>> from daskflow.timeline.specs import schedule
    >>> s = schedule("10 0 * * *", target="x", name="nightly", catchup="latest")
    >>> now = dt.datetime(2024, 1, 5, 0, 10, 30, tzinfo=dt.timezone.utc)
    >>> plan = due_ticks(s, now - dt.timedelta(days=3), now)
    >>> [t.day for t in plan.launch], [t.day for t in plan.skipped]
    ([5], [3, 4])
    """
    now = _aware(now, "now").astimezone(_zone(spec))
    if last_tick_time is None:
        return TickPlan((), (), False, now)
    last = _aware(last_tick_time, "last_tick_time").astimezone(_zone(spec))
    if last.timestamp() >= now.timestamp():
        return TickPlan((), (), False, last)
    horizon = _plus(now, -max(0.0, float(grace_s)))
    on_time = cron_times(spec, last if last.timestamp() > horizon.timestamp() else horizon, now)
    launch_missed, skipped, more = [], [], False
    if last.timestamp() < horizon.timestamp():
        if spec.catchup == "all":
            keep = spec.catchup_limit
        elif spec.catchup == "latest":
            keep = 0 if on_time else 1
        else:
            keep = 0
        missed, more = _missed(spec, last, horizon, keep + MAX_RECORDED_SKIPS)
        split = len(missed) - keep
        launch_missed, skipped = missed[max(split, 0):], missed[:max(split, 0)]
    return TickPlan(tuple(launch_missed + on_time), tuple(skipped), more, now)


def _window(partitions: PartitionsDefinition) -> tuple[_dt.timedelta, str] | None:
    if isinstance(partitions, HourlyPartitions):
        return _dt.timedelta(hours=1), "%Y-%m-%dT%H"
    if isinstance(partitions, DailyPartitions):
        return _dt.timedelta(days=1), "%Y-%m-%d"
    return None


def closed_window_key(partitions: PartitionsDefinition, tick_time: _dt.datetime) -> str | None:
    """The key of the last window of ``partitions`` complete at ``tick_time``; None outside the definition.

    >>> import datetime as dt
    >>> days = DailyPartitions("2024-01-01")
    >>> closed_window_key(days, dt.datetime(2024, 3, 10, 0, 10, tzinfo=dt.timezone.utc))
    '2024-03-09'
    """
    window = _window(partitions)
    if window is None:
        return None
    step, key_format = window
    utc = _aware(tick_time, "tick_time").astimezone(UTC).replace(tzinfo=None)
    if step == _dt.timedelta(days=1):
        end = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        end = utc.replace(minute=0, second=0, microsecond=0)
    start = end - step
    if start < partitions.start or (partitions.end is not None and start > partitions.end):
        return None
    return start.strftime(key_format)


def tick_partitions(spec: ScheduleSpec, tick_time: _dt.datetime,
                    partitions: PartitionsDefinition | None) -> tuple[str | Sequence[str] | None, str | None]:
    """``(partitions to run, skip reason)`` for one tick of ``spec`` on a target partitioned by ``partitions``.

    ``partitions=None`` (unpartitioned target) runs with no partition filter.
    The schedule's ``partitions=`` wins: a selection string / keys as given, a
    function called with the tick time (``None`` from it skips the tick).
    Otherwise time windows run the window the tick closes, and static
    partitions run all keys. A skip reason is returned instead of raising, so
    one odd tick never stops the daemon.
    """
    chosen = spec.partitions
    if callable(chosen):
        try:
            chosen = chosen(tick_time)
        except Exception as exc:  # user code: one line on the tick, never a dead daemon
            return None, f"partitions function raised {type(exc).__name__}: {exc}"
        if chosen is None:
            return None, "partitions function returned None"
        return (chosen if isinstance(chosen, str) else tuple(str(p) for p in chosen)), None
    if chosen is not None:
        return chosen, None
    if partitions is None or _window(partitions) is None:
        return None, None
    key = closed_window_key(partitions, tick_time)
    if key is None:
        return None, (f"the window closed at {tick_time.isoformat()} is outside {partitions.describe()}")
    return key, None
