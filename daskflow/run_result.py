"""What a run produced: :class:`RunResult` with one record per asset-partition and per check.

Plain dataclasses, JSON-able through :meth:`RunResult.to_dict`; returned by
:func:`daskflow.materialize` and printed by ``daskflow run``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from daskflow.contracts import AssetStatus, CheckStatus, RunStatus


@dataclasses.dataclass
class AssetRecord:
    """What happened to one asset-partition in a run.

    ``status``: success | failed | skipped (an upstream failed: not attempted)
    | stale-skipped (up to date, ``only_stale``).
    """

    asset: str
    partition: str | None
    status: AssetStatus
    duration_s: float | None = None
    rows: int | None = None
    bytes: int | None = None
    path: str | None = None
    worker: str | None = None
    host: str | None = None
    materialization_id: int | None = None
    data_version: str | None = None
    reason: str | None = None
    error: str | None = None
    traceback: str | None = None
    #: which attempt of the asset's retry policy produced the data (1-based)
    attempt: int | None = None
    #: files of executions Dask discarded before this one was recorded (listed for ``daskflow gc``)
    superseded: list[str] | None = None


@dataclasses.dataclass
class CheckRecord:
    """One check on one asset-partition: status passed | failed | skipped.

    ``metadata``: what the check function returned with its result (a
    crashing check: its traceback).
    """

    asset: str
    partition: str | None
    check: str
    status: CheckStatus
    blocking: bool
    message: str = ""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunResult:
    """The outcome of :func:`materialize`: per asset-partition records and checks."""

    run_id: str
    status: RunStatus
    records: list[AssetRecord]
    checks: list[CheckRecord] = dataclasses.field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def record(self, asset: str, partition: str | None = None) -> AssetRecord:
        """The record of one asset-partition (KeyError when it was not in the run)."""
        for rec in self.records:
            if rec.asset == asset and rec.partition == partition:
                return rec
        raise KeyError(f"asset {asset!r} partition {partition!r} was not part of run {self.run_id}")

    def by_status(self, status: str) -> list[AssetRecord]:
        return [rec for rec in self.records if rec.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "duration_s": self.duration_s,
            "assets": [dict(vars(r)) for r in self.records],  # flat records: vars() is asdict() without the recursion
            "checks": [dict(vars(c)) for c in self.checks],
        }

    def _repr_html_(self) -> str:
        """Jupyter's view: a status line and a table (see :func:`daskflow.notebook.run_result_html`)."""
        from daskflow.notebook import run_result_html

        return run_result_html(self)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for rec in self.records:
            counts[rec.status] = counts.get(rec.status, 0) + 1
        return f"RunResult(run_id={self.run_id!r}, status={self.status!r}, {counts})"
