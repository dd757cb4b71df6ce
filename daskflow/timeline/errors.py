"""Errors of the timeline (schedules, sensors, the daemon): re-exported from :mod:`daskflow.errors`.

They live in the package hierarchy there; this module keeps the old import
path (``from daskflow.timeline.errors import TimelineError``) working.
"""

from __future__ import annotations

from daskflow.errors import DaemonLeaseError, TimelineDefinitionError, TimelineError

__all__ = ["DaemonLeaseError", "TimelineDefinitionError", "TimelineError"]
