"""The steering policy: pure functions over plain data.

Design note
-----------
Inputs are plain records (:mod:`.model`: tasks with predictions, workers with
state, the frozen :class:`PolicyConfig` and a per-round :class:`RoundContext`);
outputs are decisions with typed reasons. No ``distributed`` import, no I/O, no
clock reads — time comes in as ``now`` — so every rule is testable with fake
tasks, fake workers and made-up times. The plugin
(:mod:`scheduler_plugins.steering`) only gathers inputs, calls this package,
applies the decisions and logs them.

* :mod:`.ordering` — critical-path ranks (the one definition, from
  :mod:`daskflow.critical_path`) → dispatch order.
* :mod:`.placement` — list scheduling by predicted finish time: transfer,
  storage locality, worker speed, memory headroom; holds; loose vs strict pins.
* :mod:`.memory` — memory admission: what a worker really holds, a learned
  baseline of memory it does not give back.
* :mod:`.stragglers` — stragglers, slowed hosts, restarts and their orphans.
* :mod:`.correction` — the in-run correction of durations and peak memory
  (p50 for the plan, p90 memory for admission), a snapshot of the plugin's
  online learner.
* :mod:`.estimates` — calibration of model predictions by finished tasks, the
  dispatch-latency EWMA and the adaptive lookahead, the hold rule, worker
  backlogs, when the next timed round is due, the watchdog.
"""

from __future__ import annotations

from scheduler_plugins.policy.correction import (
    CategoryCorrection,
    admission_peak_memory_bytes,
    is_corrected,
    planned_peak_memory_bytes,
)
from scheduler_plugins.policy.estimates import (
    CategoryCalibration,
    DispatchLatency,
    HoldThresholds,
    admitted_memory_bytes,
    hold_thresholds,
    is_baseline,
    lookahead_s,
    memory_refresh_due,
    next_timed_round_at,
    places_late,
    plan_timer,
    planned_duration_s,
    remaining_s,
    watchdog_action,
    worker_backlog_s,
)
from scheduler_plugins.policy.memory import MemoryBaseline
from scheduler_plugins.policy.model import (
    DependencyInfo,
    PolicyConfig,
    RoundContext,
    TaskInfo,
    TaskPrediction,
    WorkerInfo,
)
from scheduler_plugins.policy.ordering import (
    GraphCycleError,
    critical_path_ranks,
    order_keys,
    plan_order,
)
from scheduler_plugins.policy.placement import (
    Estimate,
    Placement,
    assign,
    choose_worker,
    estimate_finish,
    fits_memory,
    is_memory_heavy,
    is_open,
    pair_allowed,
    pin_is_loose,
    plan_dispatch,
)
from scheduler_plugins.policy.speeds import SpeedEstimates, relative_speed, speed_for

__all__ = [
    "CategoryCalibration",
    "CategoryCorrection",
    "DependencyInfo",
    "DispatchLatency",
    "Estimate",
    "GraphCycleError",
    "HoldThresholds",
    "MemoryBaseline",
    "Placement",
    "PolicyConfig",
    "RoundContext",
    "SpeedEstimates",
    "TaskInfo",
    "TaskPrediction",
    "WorkerInfo",
    "admission_peak_memory_bytes",
    "admitted_memory_bytes",
    "assign",
    "choose_worker",
    "critical_path_ranks",
    "estimate_finish",
    "fits_memory",
    "hold_thresholds",
    "is_baseline",
    "is_memory_heavy",
    "is_corrected",
    "is_open",
    "lookahead_s",
    "memory_refresh_due",
    "next_timed_round_at",
    "order_keys",
    "pair_allowed",
    "pin_is_loose",
    "places_late",
    "plan_dispatch",
    "plan_order",
    "planned_duration_s",
    "planned_peak_memory_bytes",
    "relative_speed",
    "remaining_s",
    "speed_for",
    "watchdog_action",
    "worker_backlog_s",
]
