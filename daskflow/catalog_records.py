"""Catalog records and data versions: plain frozen dataclasses, no SQLite.

These are what :class:`daskflow.catalog.Catalog` returns (never raw tuples),
:func:`compute_data_version`, the pure rule that makes staleness a function
of code version and input data versions, and :func:`assess_staleness`, that
rule applied to a latest materialization the caller already read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa


# -- records -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run of a pipeline. Timestamps are unix seconds."""

    run_id: str
    pipeline: str | None
    selection: str | None
    partitions: list[str] | None
    status: str
    started_at: float
    finished_at: float | None
    tags: dict[str, Any]
    #: last liveness signal of the client running it (None: never / before catalog version 2)
    heartbeat_at: float | None = None
    #: why it ended as it did, e.g. "abandoned" (its client stopped heartbeating)
    reason: str | None = None
    #: the run id this run resumed (``daskflow run --resume``)
    resumed_from: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclasses.dataclass(frozen=True)
class RunEvent:
    """One event in a run's log (``kind``: e.g. "asset-start", "asset-failure")."""

    id: int
    run_id: str
    timestamp: float
    kind: str
    asset_key: str | None
    partition: str | None
    message: str
    payload: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Materialization:
    """One stored asset-partition value: where it is and what it was made from."""

    id: int
    run_id: str
    asset_key: str
    partition: str | None
    path: str
    format: str
    rows: int | None
    bytes: int | None
    schema: str | None
    host: str | None
    worker: str | None
    code_version: str | None
    data_version: str
    duration_s: float | None
    created_at: float
    #: none (no blocking check) | pending (blocking checks not finished) | passed | failed
    check_status: str = "none"
    #: the blocking check that failed (or is pending), when not usable
    failed_check: str | None = None
    #: the attempt token in the file name (one per task execution)
    attempt: str | None = None

    @property
    def usable(self) -> bool:
        """Whether downstream reads, ``only_stale`` and ``daskflow assets`` may treat it as current data."""
        return self.check_status in USABLE_CHECK_STATUSES


#: check statuses of materializations that count as current data
USABLE_CHECK_STATUSES = ("none", "passed")


@dataclasses.dataclass(frozen=True)
class LineageNode:
    """A materialization reached by a lineage walk.

    ``depth`` is 0 for the starting materialization(s); ``via_id`` is the
    materialization it was reached from (None at depth 0).
    """

    materialization: Materialization
    depth: int
    via_id: int | None


@dataclasses.dataclass(frozen=True)
class CheckResultRow:
    """A stored outcome of one ``@asset_check`` on one asset-partition in one run.

    (What a check *function* returns is :class:`daskflow.definitions.CheckResult`;
    this is the catalog's row of it.)
    """

    id: int
    run_id: str
    asset_key: str
    partition: str | None
    check_name: str
    passed: bool
    blocking: bool
    message: str
    metadata: dict[str, Any]
    created_at: float
    #: the materialization checked (None: recorded before catalog version 2)
    materialization_id: int | None = None


# -- data versions -----------------------------------------------------------
def compute_data_version(
    code_version: str | None, input_data_versions: Iterable[str] | Mapping[str, str] = ()
) -> str:
    """A stable short hash of a code version and its inputs' data versions.

    Input order does not matter (they are sorted); a mapping contributes its
    values. Same code + same inputs -> same data version, in any process.

    >>> compute_data_version("v1", ["b", "a"]) == compute_data_version("v1", ["a", "b"])
    True
    >>> compute_data_version("v1") != compute_data_version("v2")
    True
    """
    if isinstance(input_data_versions, Mapping):
        input_data_versions = input_data_versions.values()
    document = json.dumps([code_version, sorted(str(v) for v in input_data_versions)])
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def assess_staleness(
    latest: "Materialization | None", asset_key: str, partition: str | None, code_version: str | None,
    input_data_versions: Iterable[str] | Mapping[str, str] = (),
) -> tuple[bool, str]:
    """Whether an asset-partition needs re-materializing given its ``latest`` materialization, and why.

    Stale when never materialized (``latest`` is None), when it has no
    ``code_version`` (then daskflow cannot know whether the code changed),
    when the code version differs from the latest materialization's, or when
    the inputs' current data versions give a different data version than the
    recorded one. Pure: the caller reads ``latest`` from the catalog.

    >>> assess_staleness(None, "orders", "eu", "1")
    (True, 'orders[eu] was never materialized')
    """
    where = asset_key if partition is None else f"{asset_key}[{partition}]"
    if latest is None:
        return True, f"{where} was never materialized"
    if code_version is None:
        return True, (
            f"{where} has no code_version, so changes cannot be detected; set "
            "@asset(code_version=...) to let only_stale skip it"
        )
    if latest.code_version != code_version:
        return True, (
            f"{where}: code version changed from {latest.code_version!r} to {code_version!r}"
        )
    expected = compute_data_version(code_version, input_data_versions)
    if expected != latest.data_version:
        return True, (
            f"{where}: upstream data changed since materialization {latest.id} "
            f"(run {latest.run_id})"
        )
    return False, (
        f"{where}: up to date (code version {code_version!r}, inputs unchanged since "
        f"materialization {latest.id}, run {latest.run_id})"
    )


def data_locations_schema() -> "pa.Schema":
    """The Arrow schema of :meth:`Catalog.data_locations`."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("asset_key", pa.string(), nullable=False),
            pa.field("partition", pa.string()),
            pa.field("path", pa.string(), nullable=False),
            pa.field("rows", pa.int64()),
            pa.field("bytes", pa.int64()),
            pa.field("host", pa.string()),
            pa.field("worker", pa.string()),
            pa.field("materialization_id", pa.int64(), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    )
