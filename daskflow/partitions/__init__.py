"""Partitions: definitions of partition keys, selections of them, and how partitions map between assets.

A partitioned asset is materialized once per *partition key* (a string such as
``"2024-01-05"`` or ``"eu"``). One module per concept, every public name
re-exported here (``from daskflow.partitions import DailyPartitions``):

* :mod:`~daskflow.partitions.definitions` — the contract (an ordered, finite
  set of keys, compared by equality at build time) and ``StaticPartitions``;
* :mod:`~daskflow.partitions.time_windows` — ``DailyPartitions`` and
  ``HourlyPartitions`` (inclusive ends; ``end=None`` is the last complete
  window in UTC);
* :mod:`~daskflow.partitions.selection` — ``None`` / ``"K"`` / ``"A...B"`` /
  ``"K1,K2"`` selections, and the run-size limit;
* :mod:`~daskflow.partitions.mapping` — none / identity / all / single between
  an upstream and a downstream asset.

>>> from daskflow.partitions import DailyPartitions, parse_partition_selection
>>> parse_partition_selection(DailyPartitions("2024-01-01", "2024-01-31"), "2024-01-30...2024-01-31")
('2024-01-30', '2024-01-31')
"""

from daskflow.partitions.definitions import (  # noqa: F401 - as_partitions: for the decorators
    RANGE_SEPARATOR,
    PartitionsDefinition,
    StaticPartitions,
    as_partitions,
)
from daskflow.partitions.mapping import (  # noqa: F401 - the MAPPING_* names, as before the split
    MAPPING_ALL,
    MAPPING_IDENTITY,
    MAPPING_NONE,
    MAPPING_SINGLE,
    PartitionMapping,
    partition_mapping,
    upstream_partition_keys,
)
from daskflow.partitions.selection import (
    check_run_size,
    parse_partition_selection,
    select_partitions,
    selection_size,
)
from daskflow.partitions.time_windows import (
    DailyPartitions,
    HourlyPartitions,
    PartitionAlignmentWarning,
)

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
