"""Partition definitions and how partitions map between assets.

Design note
-----------
A partitioned asset is materialized once per *partition key* (a string such as
``"2024-01-05"`` or ``"eu"``). A partitions definition is plain, frozen data:
two definitions are compatible exactly when they are equal, so the asset graph
can compare them at build time without running anything.

Three kinds exist:

* ``StaticPartitions(["eu", "us"])`` — an explicit list of keys, in that order.
* ``DailyPartitions("2024-01-01", "2024-01-31")`` — one key per day,
  formatted ``YYYY-MM-DD``. Both ends are **inclusive**.
* ``HourlyPartitions("2024-01-01T00", "2024-01-01T23")`` — one key per hour,
  formatted ``YYYY-MM-DDTHH`` (no colon, so keys are safe in file paths).
  Both ends are inclusive.

Open-ended time windows (``end=None``) end at the **last complete** day or
hour in UTC, computed each time ``keys()`` is called: ``DailyPartitions(
"2024-01-01")`` on 2024-03-10 (any time of day) ends at ``"2024-03-09"``.
Pass ``end`` explicitly for fully deterministic keys.

Partition mapping between an upstream and a downstream asset (see
:func:`partition_mapping`):

===================  ===================  =======================================
upstream             downstream           the downstream function receives
===================  ===================  =======================================
unpartitioned        unpartitioned        the value (``"none"``)
partitioned P        partitioned P        the same partition's value (``"identity"``)
partitioned P        unpartitioned        ``dict`` partition key -> value, in key
                                          order, for all partitions (``"all"``)
unpartitioned        partitioned P        the single value, for every partition
                                          (``"single"``)
partitioned P        partitioned Q != P   build-time :class:`PartitionError`
===================  ===================  =======================================

Partition selection strings (see :func:`parse_partition_selection`): ``None``
means every partition; ``"2024-01-03"`` one key; ``"2024-01-01...2024-01-07"``
an inclusive range (three dots, in definition order); ``"eu,us"`` a
comma-separated list; a list/tuple of keys is also accepted.
"""

from __future__ import annotations

import collections
import datetime as _dt
import difflib
import functools
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

from daskflow.errors import PartitionError

__all__ = [
    "DailyPartitions",
    "HourlyPartitions",
    "PartitionAlignmentWarning",
    "PartitionMapping",
    "PartitionsDefinition",
    "RANGE_SEPARATOR",
    "StaticPartitions",
    "parse_partition_selection",
    "partition_mapping",
    "check_run_size",
    "select_partitions",
    "selection_size",
    "upstream_partition_keys",
]

RANGE_SEPARATOR = "..."

#: Names of the four mappings returned by :func:`partition_mapping`.
PartitionMapping = str
MAPPING_NONE: PartitionMapping = "none"
MAPPING_IDENTITY: PartitionMapping = "identity"
MAPPING_ALL: PartitionMapping = "all"
MAPPING_SINGLE: PartitionMapping = "single"


#: above this many keys, an unknown key gets no "did you mean" (difflib over every key is slow)
_SUGGEST_MAX_KEYS = 10_000


class PartitionAlignmentWarning(UserWarning):
    """A daily/hourly start or end that is not at a window boundary (it is truncated)."""


def _owner(asset_key: str | None) -> str:
    return f"asset {asset_key!r}" if asset_key else "partitions"


def _preview(keys: Sequence[str], limit: int = 6) -> str:
    if len(keys) <= limit:
        return ", ".join(keys)
    head = ", ".join(keys[: limit // 2])
    tail = ", ".join(keys[-(limit // 2):])
    return f"{head}, ... {tail} ({len(keys)} keys)"


class PartitionsDefinition:
    """Base class: an ordered, finite set of partition keys.

    Subclasses implement :meth:`keys`; everything else derives from it.
    """

    def keys(self) -> tuple[str, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in set(self.keys())

    def validate_key(self, key: str, asset_key: str | None = None) -> str:
        """Return ``key`` if it is one of :meth:`keys`, else raise :class:`PartitionError`.

        >>> StaticPartitions(["eu", "us"]).validate_key("eu")
        'eu'
        """
        keys = self.keys()
        if key in keys:
            return key
        # difflib is quadratic-ish per candidate: only offer suggestions among a bounded number of keys
        close = difflib.get_close_matches(str(key), keys, n=3) if len(keys) <= _SUGGEST_MAX_KEYS else []
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise PartitionError(
            f"{_owner(asset_key)} has no partition {key!r}; expected one of "
            f"{self.describe()}: {_preview(keys)}.{hint} Fix: pass a valid key "
            f"or a range 'FIRST{RANGE_SEPARATOR}LAST'."
        )

    def range(self, start_key: str, end_key: str, asset_key: str | None = None) -> tuple[str, ...]:
        """Keys from ``start_key`` to ``end_key``, both inclusive, in definition order.

        >>> DailyPartitions("2024-01-01", "2024-01-31").range("2024-01-02", "2024-01-04")
        ('2024-01-02', '2024-01-03', '2024-01-04')
        """
        keys = self.keys()
        self.validate_key(start_key, asset_key)
        self.validate_key(end_key, asset_key)
        first, last = keys.index(start_key), keys.index(end_key)
        if first > last:
            raise PartitionError(
                f"{_owner(asset_key)}: partition range {start_key!r}{RANGE_SEPARATOR}{end_key!r} "
                f"is reversed; expected the first key to come before the last in {self.describe()}. "
                f"Fix: write '{end_key}{RANGE_SEPARATOR}{start_key}'."
            )
        return keys[first : last + 1]


@dataclass(frozen=True)
class StaticPartitions(PartitionsDefinition):
    """An explicit, ordered list of partition keys.

    >>> StaticPartitions(["eu", "us"]).keys()
    ('eu', 'us')
    """

    partition_keys: tuple[str, ...]

    def __init__(self, keys: Iterable[str]):
        if isinstance(keys, str):
            raise PartitionError(
                f"StaticPartitions expected a list of keys, got the string {keys!r}. "
                f"Fix: StaticPartitions([{keys!r}])."
            )
        keys = tuple(keys)
        if not keys:
            raise PartitionError("StaticPartitions needs at least one key. Fix: StaticPartitions(['a', 'b']).")
        for key in keys:
            if not isinstance(key, str) or not key:
                raise PartitionError(
                    f"StaticPartitions keys must be non-empty strings, got {key!r}. Fix: use str keys."
                )
            if key != key.strip() or any(ch in key for ch in "\\\n\t"):
                raise PartitionError(
                    f"StaticPartitions key {key!r} has surrounding whitespace, a backslash or a control "
                    f"character; selections strip spaces and keys become paths. "
                    f"Fix: remove them, e.g. {key.strip().replace(chr(92), '_').replace(chr(9), '_')!r}."
                )
            if RANGE_SEPARATOR in key or "," in key or "/" in key:
                raise PartitionError(
                    f"StaticPartitions key {key!r} contains '{RANGE_SEPARATOR}', ',' or '/', "
                    f"which are reserved for selections and paths. Fix: rename the key."
                )
        _check_definition_size(len(keys), "StaticPartitions")
        counts = collections.Counter(keys)
        duplicates = sorted(k for k, n in counts.items() if n > 1)
        if duplicates:
            raise PartitionError(
                f"StaticPartitions has duplicate keys {duplicates}. Fix: list each key once."
            )
        object.__setattr__(self, "partition_keys", keys)

    def keys(self) -> tuple[str, ...]:
        return self.partition_keys

    def __repr__(self) -> str:
        return f"StaticPartitions({list(self.partition_keys)!r})"

    def describe(self) -> str:
        return f"StaticPartitions({len(self.partition_keys)} keys)"


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


def _check_definition_size(n_keys: int, what: str) -> None:
    """Refuse partitions definitions with more keys than ``daskflow.execution.max-partitions``."""
    from daskflow import config

    limit = int(config.get("execution.max-partitions"))
    if n_keys > limit:
        raise PartitionError(
            f"{what} has {n_keys} partition keys, more than daskflow.execution.max-partitions = {limit}. "
            f"Fix: use coarser partitions (daily instead of hourly), a later start, or raise the limit."
        )


def check_run_size(n_tasks: int, what: str = "this run") -> None:
    """Refuse a run of more than ``daskflow.execution.max-tasks-per-run`` asset-partitions.

    Called by planning *before* the (asset, partition) pairs are built, with a
    count from :func:`selection_size`, so an oversized selection fails in
    milliseconds instead of sending a huge graph.

    >>> check_run_size(3)
    """
    from daskflow import config

    limit = int(config.get("execution.max-tasks-per-run"))
    if n_tasks > limit:
        raise PartitionError(
            f"{what} selects {n_tasks} asset-partitions, more than daskflow.execution.max-tasks-per-run = {limit}. "
            f"Fix: select fewer with --partition FIRST{RANGE_SEPARATOR}LAST, run the range as a backfill "
            f"(`daskflow backfill`), or raise the limit."
        )


def selection_size(partitions: PartitionsDefinition | None, selection: str | Sequence[str] | None) -> int:
    """How many keys ``selection`` picks out of ``partitions``, without listing them (an upper bound for lists).

    Time windows count arithmetically, so 100 years of hourly partitions cost nothing to size.

    >>> selection_size(HourlyPartitions("1950-01-01", "2049-12-31T23"), None)
    876600
    >>> selection_size(DailyPartitions("2024-01-01", "2024-12-31"), "2024-01-01...2024-01-10,2024-03-01")
    11
    """
    if partitions is None:
        return 1
    if selection is None:
        return len(partitions)
    parts = [p.strip() for p in selection.split(",")] if isinstance(selection, str) else [str(p).strip() for p in selection]
    total = 0
    for part in parts:
        if not part:
            continue
        if RANGE_SEPARATOR in part and isinstance(partitions, _TimeWindowPartitions):
            start, _, end = part.partition(RANGE_SEPARATOR)
            try:
                total += max(0, partitions.index(end.strip()) - partitions.index(start.strip()) + 1)
            except PartitionError:
                total += 1  # the real parse reports the bad key
        elif RANGE_SEPARATOR in part:
            total += len(partitions.range(*(x.strip() for x in part.split(RANGE_SEPARATOR, 1))))
        else:
            total += 1
    return min(total, len(partitions))


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


def as_partitions(value: object, asset_key: str | None = None) -> PartitionsDefinition | None:
    """Normalize what ``@asset(partitions=...)`` accepts: None, a definition, or a list of keys."""
    if value is None or isinstance(value, PartitionsDefinition):
        return value
    if isinstance(value, (list, tuple)):
        return StaticPartitions(value)
    raise PartitionError(
        f"{_owner(asset_key)}: partitions must be StaticPartitions, DailyPartitions, HourlyPartitions "
        f"or a list of keys, got {type(value).__name__}. Fix: e.g. partitions=DailyPartitions('2024-01-01')."
    )


def parse_partition_selection(
    partitions: PartitionsDefinition, selection: str | Sequence[str] | None, asset_key: str | None = None
) -> tuple[str, ...]:
    """Turn a partition selection into keys of ``partitions`` (definition order, no duplicates).

    ``None`` → all keys; ``"K"`` → one key; ``"A...B"`` → inclusive range;
    ``"K1,K2"`` or ``["K1", "K2"]`` → those keys (each may itself be a range).

    >>> parse_partition_selection(StaticPartitions(["a", "b", "c"]), "a...b")
    ('a', 'b')
    """
    if selection is None:
        return partitions.keys()
    if isinstance(selection, str):
        parts = [p.strip() for p in selection.split(",")]
    else:
        parts = [str(p).strip() for p in selection]
    parts = [p for p in parts if p]
    if not parts:
        raise PartitionError(
            f"{_owner(asset_key)}: empty partition selection {selection!r}. Fix: pass a key, "
            f"'FIRST{RANGE_SEPARATOR}LAST', or nothing to select all partitions."
        )
    chosen: set[str] = set()
    for part in parts:
        if RANGE_SEPARATOR in part:
            start, _, end = part.partition(RANGE_SEPARATOR)
            chosen.update(partitions.range(start.strip(), end.strip(), asset_key))
        else:
            chosen.add(partitions.validate_key(part, asset_key))
    return tuple(k for k in partitions.keys() if k in chosen)


# Alias with a verb-first name for callers that think in "select".
select_partitions = parse_partition_selection


def partition_mapping(
    downstream_key: str,
    downstream: PartitionsDefinition | None,
    upstream_key: str,
    upstream: PartitionsDefinition | None,
) -> PartitionMapping:
    """How ``downstream_key`` consumes ``upstream_key``: one of none/identity/all/single.

    Raises :class:`PartitionError` naming both assets when both are partitioned
    differently.

    >>> p = DailyPartitions("2024-01-01", "2024-01-02")
    >>> partition_mapping("b", p, "a", p), partition_mapping("b", None, "a", p)
    ('identity', 'all')
    """
    if upstream is None and downstream is None:
        return MAPPING_NONE
    if upstream is None:
        return MAPPING_SINGLE
    if downstream is None:
        return MAPPING_ALL
    if upstream == downstream:
        return MAPPING_IDENTITY
    raise PartitionError(
        f"asset {downstream_key!r} is partitioned by {downstream.describe()} but its upstream "
        f"{upstream_key!r} is partitioned by {upstream.describe()}; partitioned assets can only "
        f"depend on assets with the same partitions. Fix: give both assets the same partitions "
        f"definition (e.g. one shared object), or make {downstream_key!r} unpartitioned so it "
        f"receives all partitions of {upstream_key!r} as a dict."
    )


def upstream_partition_keys(mapping: PartitionMapping, upstream: PartitionsDefinition | None,
                            downstream_partition: str | None) -> tuple[str | None, ...]:
    """The upstream partition keys one downstream partition reads (``None`` = unpartitioned).

    >>> upstream_partition_keys("identity", StaticPartitions(["a", "b"]), "b")
    ('b',)
    """
    if mapping == MAPPING_IDENTITY:
        return (downstream_partition,)
    if mapping == MAPPING_ALL:
        assert upstream is not None
        return upstream.keys()
    return (None,)
