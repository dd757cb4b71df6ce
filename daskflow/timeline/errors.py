"""Errors of the timeline (schedules, sensors, the daemon).

They extend the package hierarchy in :mod:`daskflow.errors`; kept here while
the timeline is its own room, to be moved there when it settles.
"""

from __future__ import annotations

from daskflow.errors import AssetDefinitionError, DaskflowError

__all__ = ["DaemonLeaseError", "TimelineDefinitionError", "TimelineError"]


class TimelineError(DaskflowError):
    """Base class of timeline errors."""


class TimelineDefinitionError(TimelineError, AssetDefinitionError):
    """A schedule or sensor is malformed (bad cron, timezone, target, partitions)."""


class DaemonLeaseError(TimelineError):
    """Another daemon holds the catalog's lease (or this one lost it)."""
