"""The timeline: cron schedules and sensors, ticked by a daemon that launches each run exactly once.

Layers, like the rest of daskflow: specs (:mod:`~daskflow.timeline.specs`,
``daskflow.schedule`` / ``@daskflow.sensor`` only record), pure tick
computation (:mod:`~daskflow.timeline.ticks`, time is an argument), durable
state in the catalog's SQLite file (:mod:`~daskflow.timeline.schema`,
:mod:`~daskflow.timeline.store`), and the daemon loop
(:mod:`~daskflow.timeline.daemon`) with its launcher processes
(:mod:`~daskflow.timeline.launch`).

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
