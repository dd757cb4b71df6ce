"""Contracts between the client (``daskflow``) and the scheduler side (``scheduler_plugins``).

Design note
-----------
Everything that crosses the client/scheduler boundary, or that two modules
must spell the same way, is named here once: plugin names, event topics, the
task-annotation schema, the payloads of decision and materialization events,
and the closed vocabularies (statuses, actions, reasons, prediction quality)
as ``Literal`` types. Modules build and read those payloads through this
module; a typo is then a type error or an import error, not a silent miss.

The dependency direction stays ``scheduler_plugins -> daskflow``: this module
imports nothing from either package.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, get_args

# -- names ---------------------------------------------------------------------
#: scheduler plugin names (``scheduler.plugins[NAME]``)
STEERING_PLUGIN = "daskflow-steering"
RECORDER_PLUGIN = "daskflow-recorder"
DASHBOARD_EXTENSION = "daskflow-dashboard"
REPLAY_WATCH_PLUGIN = "daskflow-replay-watch"
#: worker plugin name
PEAK_MEMORY_PLUGIN = "daskflow-peak-memory"
#: the scheduler preload that installs recorder, steering and dashboard pages
SCHEDULER_PRELOAD = "scheduler_plugins.preload"

#: event topics (``scheduler.log_event(TOPIC, payload)``)
STEERING_TOPIC = "daskflow-steering"
MATERIALIZED_TOPIC = "daskflow-materialized"

#: key of the daskflow part of ``TaskState.annotations`` and of ``TaskState.metadata``
ANNOTATION_KEY = "daskflow"
METADATA_KEY = "daskflow"
#: ``TaskState.metadata`` key of a task's own reads of stored data: ``[[source host, bytes, seconds], ...]``
TRANSFER_METADATA_KEY = "daskflow-transfers"
#: ``TaskState.metadata`` key of a tiny task the worker did not measure (value 0.0). A flat float, not a
#: nested dict: a metadata dict holding only plain values is not tracked by the cyclic garbage collector
SAMPLE_WEIGHT_METADATA_KEY = "daskflow-sample-weight"

#: worker resource an operator sets to declare a worker's relative speed
SPEED_RESOURCE = "daskflow-speed"
#: placeholder worker address a held task is restricted to
HOLD_ADDRESS = "daskflow-steering://hold"

# -- vocabularies --------------------------------------------------------------
TaskKind = Literal["asset", "check", "replay"]
RunStatus = Literal["running", "success", "failure", "canceled"]
AssetStatus = Literal["success", "failed", "skipped", "stale-skipped"]
CheckStatus = Literal["passed", "failed", "skipped"]
#: where a prediction came from
PredictionQuality = Literal["model", "prefix-mean", "default", "oracle"]
#: ``daskflow.steering.mode``
SteeringMode = Literal["off", "shadow", "steer"]
#: what the steering plugin did
DecisionAction = Literal["priority", "place", "hold", "release", "shadow", "fallback", "stock", "straggler", "restart", "drift", "model"]
#: why it did it
DecisionReason = Literal[
    "critical-path",        # graph ranked by predicted critical path, long tasks placed late
    "critical-path-only",   # ranked, nothing long enough to place late
    "no-information",       # no predictions for any task: stock Dask
    "priority",             # shadow: the priority it would have set
    "finish-time",          # worker with the earliest predicted finish
    "memory",               # held / placed for memory headroom
    "memory-overcommit",    # too big for any worker's pause headroom: placed under the kill threshold
    "locality",             # the worker that holds (or is near) the inputs
    "speed",                # the faster worker
    "worker-removed",       # pins released when their worker left
    "fallback",             # an exception in the plugin: stock behaviour
    "short-task",           # predicted shorter than the hold threshold: left to Dask
    "no-valid-worker",      # no running worker satisfies the task's resource restrictions: wait
    "no-open-worker",       # every allowed worker is busy beyond the lookahead: wait
    "straggler",            # a task running well past its plan (and its category's p90): its host gets no long work
    "straggler-restart",    # ... restarted on an idle faster worker predicted to finish it earlier (replay tasks only)
    "straggler-asset",      # ... an asset or check: never restarted (no double materialization)
    "slowed-host-restart",  # a task (no straggler yet) whose host slowed under it, restarted on another host
    "host-overrun",         # a host read as slowed from its running tasks overrunning on several workers at once
    "drift",                # a category's cost changed in this run: planned from this run's tasks from now on
    "model-loaded",         # a new model is served (promotion / rollback): the in-run learner starts over
]


def literal_values(literal: Any) -> tuple[str, ...]:
    """The allowed strings of a ``Literal`` type.

    >>> "hold" in literal_values(DecisionAction)
    True
    """
    return tuple(get_args(literal))


# -- payloads ------------------------------------------------------------------
class InputLocation(TypedDict):
    host: str
    bytes: int


class TaskAnnotation(TypedDict, total=False):
    """``annotations["daskflow"]`` of one task: the features the scheduler plugins read."""

    run_id: str
    kind: TaskKind
    category: str
    asset: str | None
    partition: str | None
    code_version: str | None
    input_bytes: int
    input_rows: int
    n_inputs: int
    input_locations: list[InputLocation]
    tags: dict[str, str]
    # graph position (optional; planner / replay harness fill them, the learning features read them)
    depth: int  # longest chain of dependencies above the task (roots: 0)
    n_dependents: int  # tasks that consume this task's output (fan-out)
    # replay only: the trace's true costs (read by the oracle predictor)
    true_duration_s: float
    true_peak_memory_bytes: int


def task_annotation(
    *,
    run_id: str,
    kind: TaskKind,
    category: str,
    asset: str | None = None,
    partition: str | None = None,
    code_version: str | None = None,
    input_bytes: int = 0,
    input_rows: int = 0,
    n_inputs: int = 0,
    input_locations: list[InputLocation] | None = None,
    tags: dict[str, str] | None = None,
    **replay_truth: Any,
) -> TaskAnnotation:
    """Build one task annotation; the only place the schema is spelled as a dict.

    Optional keyword fields: ``depth``, ``n_dependents`` (graph position) and, for replays,
    ``true_duration_s``, ``true_peak_memory_bytes``.

    >>> task_annotation(run_id="r", kind="asset", category="orders")["n_inputs"]
    0
    """
    unknown = set(replay_truth) - {"true_duration_s", "true_peak_memory_bytes", "depth", "n_dependents"}
    if unknown:
        raise TypeError(f"task_annotation: unknown field(s) {sorted(unknown)}; see daskflow.contracts.TaskAnnotation")
    annotation: TaskAnnotation = {
        "run_id": run_id, "kind": kind, "category": category, "asset": asset, "partition": partition,
        "code_version": code_version, "input_bytes": int(input_bytes), "input_rows": int(input_rows),
        "n_inputs": int(n_inputs), "input_locations": list(input_locations or []), "tags": dict(tags or {}),
    }
    annotation.update(replay_truth)  # type: ignore[typeddict-item]
    return annotation


class MaterializedEvent(TypedDict, total=False):
    """What an asset task publishes on :data:`MATERIALIZED_TOPIC` once its data is durable."""

    key: str
    run_id: str
    path: str
    format: str
    rows: int
    bytes: int
    schema: str | None
    host: str
    worker: str | None
    duration_s: float
    #: the attempt token in the file name: unique per task execution (see daskflow.storage)
    attempt: str
    #: which attempt of the asset's retry policy produced it (1-based)
    attempt_number: int


class DecisionEvent(TypedDict, total=False):
    """One steering decision, as logged on :data:`STEERING_TOPIC` and kept for ``daskflow explain``."""

    key: str | None
    run_id: str | None
    action: DecisionAction
    reason: DecisionReason | None
    worker: str | None
    predicted_duration_s: float | None
    predicted_peak_memory_bytes: int | None
    quality: PredictionQuality | None
    model_version: str | None
    alternatives: list[dict[str, Any]]
    time: float
    rank_s: float
    priority_index: int
    calibration: float
    #: on a graph's ``priority`` decision: tasks predicted shorter than this (and peaking under
    #: ``memory_floor_bytes``, None: no floor) were left to Dask's placement
    hold_threshold_s: float
    memory_floor_bytes: float | None
