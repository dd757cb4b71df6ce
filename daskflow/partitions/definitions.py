"""Partitions definitions: an ordered, finite set of partition keys, and explicit (static) keys.

Design note
-----------
A partitioned asset is materialized once per *partition key* (a string such as
``"2024-01-05"`` or ``"eu"``). A partitions definition is plain, frozen data:
two definitions are compatible exactly when they are equal, so the asset graph
can compare them at build time without running anything.

:class:`PartitionsDefinition` is the small contract: subclasses give
:meth:`~PartitionsDefinition.keys` and :meth:`~PartitionsDefinition.describe`,
validation and ranges derive from them. ``StaticPartitions(["eu", "us"])`` is
an explicit list of keys, in that order; the time windows (daily, hourly) are
in :mod:`daskflow.partitions.time_windows`.
"""

from __future__ import annotations

import collections
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from daskflow.errors import PartitionError

RANGE_SEPARATOR = "..."


#: above this many keys, an unknown key gets no "did you mean" (difflib over every key is slow)
_SUGGEST_MAX_KEYS = 10_000


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

        >>> from daskflow.partitions import DailyPartitions
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


def _check_definition_size(n_keys: int, what: str) -> None:
    """Refuse partitions definitions with more keys than ``daskflow.execution.max-partitions``."""
    from daskflow import config

    limit = int(config.get("execution.max-partitions"))
    if n_keys > limit:
        raise PartitionError(
            f"{what} has {n_keys} partition keys, more than daskflow.execution.max-partitions = {limit}. "
            f"Fix: use coarser partitions (daily instead of hourly), a later start, or raise the limit."
        )


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
