"""Time-window partitions: one key per UTC day or hour, counted and sliced arithmetically.

* ``DailyPartitions("2024-01-01", "2024-01-31")`` — one key per day,
  formatted ``YYYY-MM-DD``. Both ends are **inclusive**.
* ``HourlyPartitions("2024-01-01T00", "2024-01-01T23")`` — one key per hour,
  formatted ``YYYY-MM-DDTHH`` (no colon, so keys are safe in file paths).
  Both ends are inclusive.

Open-ended time windows (``end=None``) end at the **last complete** day or
hour in UTC, computed each time ``keys()`` is called: ``DailyPartitions(
"2024-01-01")`` on 2024-03-10 (any time of day) ends at ``"2024-03-09"``.
Pass ``end`` explicitly for fully deterministic keys.
"""

from __future__ import annotations

import datetime as _dt
import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from daskflow.errors import PartitionError
from daskflow.partitions.definitions import (
    _SUGGEST_MAX_KEYS,
    RANGE_SEPARATOR,
    PartitionsDefinition,
    _check_definition_size,
    _owner,
)


class PartitionAlignmentWarning(UserWarning):
    """A daily/hourly start or end that is not at a window boundary (it is truncated)."""


def _utcnow() -> _dt.datetime:
    """The current UTC time (a seam so tests can pin 'now')."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _parse_time(value: object, formats: Sequence[str], what: str) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:  # aware: express in UTC, the zone of all keys
            value = value.astimezone(_dt.timezone.utc)
        return value.replace(tzinfo=None)
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        for fmt in formats:
            try:
                return _dt.datetime.strptime(value.strip(), fmt)
            except ValueError:
                continue
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
    raise PartitionError(
        f"{what} {shown!r} is not a valid time; expected one of the formats "
        f"{', '.join(formats)} (or a datetime/date). Fix: e.g. {_dt.datetime(2024, 1, 1).strftime(formats[0])!r}."
    )


@dataclass(frozen=True, repr=False)
class _TimeWindowPartitions(PartitionsDefinition):
    """Shared logic of daily and hourly windows: ``start`` .. ``end`` inclusive.

    Keys are evenly spaced, so counting, validating and slicing are arithmetic
    on the window index; only :meth:`keys` lists them (cached).
    """

    start: _dt.datetime
    end: _dt.datetime | None = None

    _STEP = _dt.timedelta(days=1)
    _KEY_FORMAT = "%Y-%m-%d"
    _INPUT_FORMATS = ("%Y-%m-%d",)

    def __init__(self, start: object, end: object = None):
        kind = type(self).__name__
        start_dt = self._aligned(_parse_time(start, self._INPUT_FORMATS, f"{kind} start"), f"{kind} start", start)
        end_dt = None
        if end is not None:
            end_dt = self._aligned(_parse_time(end, self._INPUT_FORMATS, f"{kind} end"), f"{kind} end", end)
            if end_dt < start_dt:
                raise PartitionError(
                    f"{kind} end {self._format(end_dt)!r} is before start {self._format(start_dt)!r}. "
                    f"Fix: swap them or move the end later."
                )
        last = end_dt or start_dt
        if _dt.datetime.max - last < self._STEP:
            raise PartitionError(
                f"{kind} window {self._format(last)!r} ends after year 9999, which datetime cannot represent. "
                f"Fix: end at {self._format(self._truncate(_dt.datetime.max) - self._STEP)!r} or earlier."
            )
        object.__setattr__(self, "start", start_dt)
        object.__setattr__(self, "end", end_dt)
        if end_dt is not None:
            _check_definition_size(self._count(start_dt, end_dt), self.describe())

    def _truncate(self, moment: _dt.datetime) -> _dt.datetime:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    def _aligned(self, moment: _dt.datetime, what: str, given: object) -> _dt.datetime:
        """``moment`` truncated to its window start; a mis-aligned value is never truncated silently.

        It warns (one :class:`PartitionAlignmentWarning` naming the fix) instead of
        raising, because truncation of ``"...T05:30"`` is documented behaviour.
        """
        truncated = self._truncate(moment)
        if truncated != moment:
            warnings.warn(
                f"{what} {given!r} is not at the start of {self._unit()} window; using "
                f"{self._format(truncated)!r}. Fix: pass {self._format(truncated)!r}.",
                PartitionAlignmentWarning, stacklevel=4,
            )
        return truncated

    def _unit(self) -> str:
        return "a day" if self._STEP == _dt.timedelta(days=1) else "an hour"

    def _format(self, moment: _dt.datetime) -> str:
        return _format_key(moment, self._KEY_FORMAT)

    def _count(self, start: _dt.datetime, last: _dt.datetime) -> int:
        return max(0, (last - start) // self._STEP + 1)

    def last_window_start(self) -> _dt.datetime:
        """Start of the last partition: ``end`` or the last complete window before now (UTC)."""
        if self.end is not None:
            return self.end
        return self._truncate(_utcnow()) - self._STEP

    def __len__(self) -> int:
        return self._count(self.start, self.last_window_start())

    def __contains__(self, key: object) -> bool:
        try:
            self.index(key)  # type: ignore[arg-type]
        except PartitionError:
            return False
        return True

    def index(self, key: str, asset_key: str | None = None) -> int:
        """Position of ``key`` in :meth:`keys` (arithmetic; raises :class:`PartitionError` if it is not a key).

        >>> DailyPartitions("2024-01-01", "2024-01-31").index("2024-01-05")
        4
        """
        moment = None
        if isinstance(key, str):
            try:
                moment = _dt.datetime.strptime(key, self._KEY_FORMAT)
            except ValueError:
                moment = None
        if moment is not None and self._format(moment) == key and self.start <= moment <= self.last_window_start():
            return (moment - self.start) // self._STEP
        if len(self) <= _SUGGEST_MAX_KEYS:  # small: the generic message with a preview and "did you mean"
            PartitionsDefinition.validate_key(self, key if isinstance(key, str) else str(key), asset_key)
        shown = key if not isinstance(key, str) or len(key) <= 40 else key[:40] + "..."
        raise PartitionError(
            f"{_owner(asset_key)} has no partition {shown!r}; expected {self._unit()} key formatted "
            f"{self._KEY_FORMAT.replace('%', '')} in {self.describe()} (e.g. {self._format(self.start)!r}). "
            f"Fix: pass a valid key or a range 'FIRST{RANGE_SEPARATOR}LAST'."
        )

    def validate_key(self, key: str, asset_key: str | None = None) -> str:
        self.index(key, asset_key)
        return key

    def range(self, start_key: str, end_key: str, asset_key: str | None = None) -> tuple[str, ...]:
        first, last = self.index(start_key, asset_key), self.index(end_key, asset_key)
        if first > last:
            raise PartitionError(
                f"{_owner(asset_key)}: partition range {start_key!r}{RANGE_SEPARATOR}{end_key!r} "
                f"is reversed; expected the first key to come before the last in {self.describe()}. "
                f"Fix: write '{end_key}{RANGE_SEPARATOR}{start_key}'."
            )
        return _window_keys(self.start + first * self._STEP, self.start + last * self._STEP, self._STEP, self._KEY_FORMAT)

    def keys(self) -> tuple[str, ...]:
        last = self.last_window_start()
        _check_definition_size(self._count(self.start, last), self.describe())
        keys = _window_keys(self.start, last, self._STEP, self._KEY_FORMAT)
        if not keys:
            raise PartitionError(
                f"{self.describe()} has no complete window yet (start is in the future or today). "
                f"Fix: pass an explicit end, or an earlier start."
            )
        return tuple(keys)

    def describe(self) -> str:
        end = repr(self._format(self.end)) if self.end is not None else "last complete window (UTC)"
        return f"{type(self).__name__}({self._format(self.start)!r} .. {end})"

    def __repr__(self) -> str:
        end = repr(self._format(self.end)) if self.end is not None else "None"
        return f"{type(self).__name__}({self._format(self.start)!r}, {end})"

    def window(self, key: str) -> tuple[_dt.datetime, _dt.datetime]:
        """The half-open time window ``[start, end)`` a key stands for (naive UTC).

        >>> DailyPartitions("2024-01-01", "2024-01-02").window("2024-01-02")[0].day
        2
        """
        start = self.start + self.index(key) * self._STEP
        return start, start + self._STEP


def _format_key(moment: _dt.datetime, key_format: str) -> str:
    """``strftime`` with a zero-padded 4-digit year (glibc writes year 1 as ``1``, which strptime reads back badly)."""
    return moment.strftime(key_format.replace("%Y", f"{moment.year:04d}"))


@functools.lru_cache(maxsize=64)
def _window_keys(start: _dt.datetime, last: _dt.datetime, step: _dt.timedelta, key_format: str) -> tuple[str, ...]:
    """Formatted window starts from ``start`` to ``last`` inclusive (cached: keys() is called often).

    Hourly keys are built per day (one ``strftime`` per day, the hours appended),
    which makes a century of hours (876,600 keys) take a fraction of a second.
    """
    keys: list[str] = []
    if last < start:
        return ()
    if step == _dt.timedelta(hours=1) and key_format == "%Y-%m-%dT%H":
        hour_suffixes = [f"T{h:02d}" for h in range(24)]
        day = start.replace(hour=0)
        first_hour, last_day = start.hour, last.replace(hour=0)
        while True:
            prefix = _format_key(day, "%Y-%m-%d")
            low = first_hour if day == start.replace(hour=0) else 0
            high = last.hour + 1 if day == last_day else 24
            keys.extend(prefix + suffix for suffix in hour_suffixes[low:high])
            if day >= last_day:
                break
            day += _dt.timedelta(days=1)
        return tuple(keys)
    moment = start
    while moment <= last:
        keys.append(_format_key(moment, key_format))
        if _dt.datetime.max - moment < step:
            break
        moment += step
    return tuple(keys)


class DailyPartitions(_TimeWindowPartitions):
    """One partition per UTC day, keys ``YYYY-MM-DD``, ``start`` and ``end`` inclusive.

    ``end=None`` means "up to the last complete day" (yesterday, UTC), computed
    when :meth:`keys` is called.

    >>> DailyPartitions("2024-01-01", "2024-01-03").keys()
    ('2024-01-01', '2024-01-02', '2024-01-03')
    """

    _STEP = _dt.timedelta(days=1)
    _KEY_FORMAT = "%Y-%m-%d"
    _INPUT_FORMATS = ("%Y-%m-%d",)


class HourlyPartitions(_TimeWindowPartitions):
    """One partition per UTC hour, keys ``YYYY-MM-DDTHH``, ``start`` and ``end`` inclusive.

    ``start``/``end`` accept ``"2024-01-01T05"``, ``"2024-01-01T05:00"``,
    ``"2024-01-01"`` (hour 0) or a datetime. ``end=None`` means "up to the last
    complete hour" (UTC), computed when :meth:`keys` is called.

    >>> HourlyPartitions("2024-01-01T22", "2024-01-02T00").keys()
    ('2024-01-01T22', '2024-01-01T23', '2024-01-02T00')
    """

    _STEP = _dt.timedelta(hours=1)
    _KEY_FORMAT = "%Y-%m-%dT%H"
    _INPUT_FORMATS = ("%Y-%m-%dT%H", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")

    def _truncate(self, moment: _dt.datetime) -> _dt.datetime:
        return moment.replace(minute=0, second=0, microsecond=0)
