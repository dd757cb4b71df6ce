"""The timeline: schedules, sensors and backfills, whose runs launch exactly once through a run queue.

Layers, like the rest of daskflow: specs (:mod:`~daskflow.timeline.specs`,
``daskflow.schedule`` / ``@daskflow.sensor`` only record), pure tick
computation (:mod:`~daskflow.timeline.ticks`, time is an argument), durable
state in the catalog's SQLite file (:mod:`~daskflow.timeline.schema`,
:mod:`~daskflow.timeline.store`), and the daemon loop
(:mod:`~daskflow.timeline.daemon`) with its launcher processes
(:mod:`~daskflow.timeline.launch`). Every launched run passes the run queue
(:mod:`~daskflow.timeline.queue`: global, pool and per-backfill limits);
backfills (:mod:`~daskflow.timeline.backfill`, driven by
:mod:`~daskflow.timeline.backfill_driver` or the daemon), cancel
(:mod:`~daskflow.timeline.cancel`), the runs page's data
(:mod:`~daskflow.timeline.overview`) and ``cluster up --daemon``
(:mod:`~daskflow.timeline.cluster_daemon`) build on it.

>>> import daskflow
>>> nightly = daskflow.schedule("10 0 * * *", target="+report", name="nightly")
>>> nightly.timezone
'UTC'
"""

from daskflow.timeline.errors import DaemonLeaseError, TimelineDefinitionError, TimelineError
from daskflow.timeline.sensors import SensorResult, asset_sensor, evaluate_sensor
from daskflow.timeline.specs import (
    RunRequest,
    ScheduleSpec,
    SensorContext,
    SensorSpec,
    SkipReason,
    schedule,
    sensor,
)

__all__ = [
    "DaemonLeaseError", "RunRequest", "ScheduleSpec", "SensorContext", "SensorResult", "SensorSpec",
    "SkipReason", "TimelineDefinitionError", "TimelineError", "asset_sensor", "evaluate_sensor", "schedule",
    "sensor",
]
