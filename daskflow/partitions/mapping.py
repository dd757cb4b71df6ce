"""Partition mapping: how a downstream asset consumes an upstream asset's partitions.

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
"""

from __future__ import annotations

from daskflow.errors import PartitionError
from daskflow.partitions.definitions import PartitionsDefinition

#: Names of the four mappings returned by :func:`partition_mapping`.
PartitionMapping = str
MAPPING_NONE: PartitionMapping = "none"
MAPPING_IDENTITY: PartitionMapping = "identity"
MAPPING_ALL: PartitionMapping = "all"
MAPPING_SINGLE: PartitionMapping = "single"


def partition_mapping(
    downstream_key: str,
    downstream: PartitionsDefinition | None,
    upstream_key: str,
    upstream: PartitionsDefinition | None,
) -> PartitionMapping:
    """How ``downstream_key`` consumes ``upstream_key``: one of none/identity/all/single.

    Raises :class:`PartitionError` naming both assets when both are partitioned
    differently.

    >>> from daskflow.partitions import DailyPartitions
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

    >>> from daskflow.partitions import StaticPartitions
    >>> upstream_partition_keys("identity", StaticPartitions(["a", "b"]), "b")
    ('b',)
    """
    if mapping == MAPPING_IDENTITY:
        return (downstream_partition,)
    if mapping == MAPPING_ALL:
        assert upstream is not None
        return upstream.keys()
    return (None,)
