"""Partition selections: which keys a run picks, and refusing runs that pick too many.

Partition selection strings (see :func:`parse_partition_selection`): ``None``
means every partition; ``"2024-01-03"`` one key; ``"2024-01-01...2024-01-07"``
an inclusive range (three dots, in definition order); ``"eu,us"`` a
comma-separated list; a list/tuple of keys is also accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

from daskflow.errors import PartitionError
from daskflow.partitions.definitions import (
    RANGE_SEPARATOR,
    PartitionsDefinition,
    _owner,
)
from daskflow.partitions.time_windows import _TimeWindowPartitions


def parse_partition_selection(
    partitions: PartitionsDefinition, selection: str | Sequence[str] | None, asset_key: str | None = None
) -> tuple[str, ...]:
    """Turn a partition selection into keys of ``partitions`` (definition order, no duplicates).

    ``None`` → all keys; ``"K"`` → one key; ``"A...B"`` → inclusive range;
    ``"K1,K2"`` or ``["K1", "K2"]`` → those keys (each may itself be a range).

    >>> from daskflow.partitions import StaticPartitions
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


def selection_size(partitions: PartitionsDefinition | None, selection: str | Sequence[str] | None) -> int:
    """How many keys ``selection`` picks out of ``partitions``, without listing them (an upper bound for lists).

    Time windows count arithmetically, so 100 years of hourly partitions cost nothing to size.

    >>> from daskflow.partitions import DailyPartitions, HourlyPartitions
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
