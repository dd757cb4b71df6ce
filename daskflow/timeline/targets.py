"""Checking schedules and sensors against their pipeline's asset graph (load time).

Design note
-----------
A spec alone cannot know whether ``target="+reprot"`` names an asset; the
pipeline's graph can. :func:`resolve_timeline` loads nothing itself: given a
pipeline's ``Definitions`` it builds the graph once, resolves every target
selection and finds the partitions definition its ticks run on, and raises one
:class:`TimelineDefinitionError` line naming the schedule or sensor and the fix.
Names must be unique across all pipelines one daemon runs
(:func:`merge_timelines`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from daskflow.errors import DaskflowError
from daskflow.partitions import PartitionsDefinition
from daskflow.timeline.errors import TimelineDefinitionError
from daskflow.timeline.specs import ScheduleSpec, SensorSpec

__all__ = ["ResolvedSchedule", "ResolvedSensor", "Timeline", "load_timeline", "merge_timelines",
           "resolve_timeline"]


@dataclass(frozen=True)
class ResolvedSchedule:
    spec: ScheduleSpec
    pipeline: str                               # what the launcher loads (path or module name)
    asset_keys: tuple[str, ...]                 # the target, resolved
    partitions: PartitionsDefinition | None     # of the target's partitioned assets (None: unpartitioned)


@dataclass(frozen=True)
class ResolvedSensor:
    spec: SensorSpec
    pipeline: str
    asset_keys: tuple[str, ...] | None          # None: each RunRequest names its selection


@dataclass(frozen=True)
class Timeline:
    schedules: tuple[ResolvedSchedule, ...] = ()
    sensors: tuple[ResolvedSensor, ...] = ()


def _select(graph, selection: str, owner: str) -> tuple[str, ...]:
    try:
        return graph.select(selection)
    except DaskflowError as exc:
        message = " ".join(str(exc).split())
        raise TimelineDefinitionError(
            f"{owner}: target {selection!r} does not select assets of the pipeline ({message}). "
            f"Fix: pass a --select expression that matches its assets, e.g. target='+report'."
        ) from exc


def resolve_timeline(definitions, pipeline: str) -> Timeline:
    """Resolve the schedules and sensors of one pipeline's ``Definitions`` against its graph."""
    from daskflow.graph import build_asset_graph

    schedules = tuple(getattr(definitions, "schedules", ()))
    sensors = tuple(getattr(definitions, "sensors", ()))
    if not schedules and not sensors:
        return Timeline()
    graph = build_asset_graph(definitions)
    resolved_schedules = []
    for spec in schedules:
        owner = f"schedule {spec.name!r} (pipeline {pipeline})"
        keys = _select(graph, spec.target, owner)
        found: list[PartitionsDefinition] = []
        for key in keys:
            partitions = graph.spec(key).partitions
            if partitions is not None and partitions not in found:
                found.append(partitions)
        if len(found) > 1 and spec.partitions is None:
            kinds = ", ".join(p.describe() for p in found)
            raise TimelineDefinitionError(
                f"{owner}: target {spec.target!r} mixes differently partitioned assets ({kinds}), so the "
                f"partition a tick closes is ambiguous. Fix: split it into one schedule per partitioning, "
                f"or pass partitions=... (keys, or a function of the tick time)."
            )
        resolved_schedules.append(ResolvedSchedule(spec, pipeline, keys, found[0] if found else None))
    resolved_sensors = []
    for sensor in sensors:
        owner = f"sensor {sensor.name!r} (pipeline {pipeline})"
        keys = None if sensor.target is None else _select(graph, sensor.target, owner)
        resolved_sensors.append(ResolvedSensor(sensor, pipeline, keys))
    return Timeline(tuple(resolved_schedules), tuple(resolved_sensors))


def merge_timelines(timelines: list[Timeline]) -> Timeline:
    """One timeline of several pipelines; a name used twice is an error naming both pipelines."""
    schedules: dict[str, ResolvedSchedule] = {}
    sensors: dict[str, ResolvedSensor] = {}
    for timeline in timelines:
        for kind, items, seen in (("schedule", timeline.schedules, schedules), ("sensor", timeline.sensors, sensors)):
            for item in items:
                other = seen.get(item.spec.name)
                if other is not None:
                    raise TimelineDefinitionError(
                        f"{kind} {item.spec.name!r} is defined by both {other.pipeline} and {item.pipeline}; "
                        f"names are the keys of the daemon's state. Fix: rename one (name=...)."
                    )
                seen[item.spec.name] = item
    return Timeline(tuple(schedules.values()), tuple(sensors.values()))


def load_timeline(pipelines: list[str]) -> Timeline:
    """Load each pipeline (path or module name) and resolve its schedules and sensors."""
    from daskflow.loading import load_definitions

    timelines = []
    for pipeline in pipelines:
        target = os.path.abspath(pipeline) if pipeline.endswith(".py") else pipeline
        timelines.append(resolve_timeline(load_definitions(target), target))
    return merge_timelines(timelines)
