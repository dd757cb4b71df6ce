"""Reading a scheduler ``WorkerState``: facts, memory, pressure, and the memory thresholds workers act on."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import dask.config
from distributed.core import Status

from daskflow.contracts import SPEED_RESOURCE

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler, TaskState, WorkerState


def running_workers(scheduler: Scheduler) -> list[WorkerState]:
    """Workers accepting tasks (not paused, not retiring)."""
    return list(scheduler.running)


def worker_address(ws: WorkerState) -> str:
    return ws.address


def worker_facts(ws: WorkerState) -> dict:
    """Static-ish facts of a worker: address, host, threads, speed, memory limit."""
    speed = 1.0
    try:
        speed = float((ws.resources or {}).get(SPEED_RESOURCE, 1.0)) or 1.0
    except (TypeError, ValueError):
        speed = 1.0
    return {
        "address": ws.address,
        "host": ws.host,
        "nthreads": max(int(ws.nthreads or 1), 1),
        "speed": speed,
        "memory_limit_bytes": int(ws.memory_limit or 0),
    }


def speed_declared(ws: WorkerState) -> bool:
    """Whether an operator declared the worker's speed (the ``daskflow-speed`` resource): it overrides learning."""
    return SPEED_RESOURCE in (ws.resources or {})


def worker_memory(ws: WorkerState) -> tuple[int, int | None]:
    """``(managed bytes now, unmanaged_old bytes or None before the first memory report)``."""
    memory = ws.memory
    if not memory.process:
        return int(ws.nbytes), None
    return int(ws.nbytes), int(memory.unmanaged_old)


def worker_process_bytes(ws: WorkerState) -> int | None:
    """The worker process's whole memory at its last heartbeat (managed + unmanaged), None before the first."""
    process = ws.memory.process
    return int(process) if process else None


def worker_heartbeat_at(ws: WorkerState) -> float | None:
    """Scheduler wall time of the worker's last heartbeat (when its ``memory.process`` was measured), None if unknown."""
    seen = getattr(ws, "last_seen", None)
    # the heartbeat carries the system monitor's latest sample (distributed.admin.system-monitor.interval old at
    # most), with the wall time it was taken: that is when ``memory.process`` was measured
    sampled = (getattr(ws, "metrics", None) or {}).get("time")
    if sampled and seen and float(sampled) <= float(seen):
        return float(sampled)
    return float(seen) if seen else None


def worker_threads_and_memory_limit(scheduler: Scheduler, address: str | None) -> tuple[int | None, int | None]:
    """``(nthreads, memory limit bytes)`` of the worker at ``address``; None for what is unknown or unlimited."""
    ws = scheduler.workers.get(address) if address else None
    if ws is None:
        return None, None
    return ws.nthreads, (ws.memory_limit or None)


def worker_pressure(scheduler: Scheduler, address: str | None) -> tuple[bool | None, int | None]:
    """``(paused, bytes spilled to disk)`` of the worker at ``address`` as of its last heartbeat; ``(None, None)`` when unknown."""
    ws = scheduler.workers.get(address) if address else None
    if ws is None:
        return None, None
    # ws.memory builds a MemoryState; its ``spilled`` is this heartbeat metric (read directly: per-task hot path)
    spilled = (ws.metrics.get("spilled_bytes") or {}).get("disk", 0)
    return ws.status is Status.paused, int(spilled)


def worker_managed_bytes(ws: WorkerState) -> int:
    """Bytes of task results the worker holds (updated as results land, not only on heartbeats)."""
    return int(ws.nbytes)


def worker_processing(ws: WorkerState) -> list[TaskState]:
    """Tasks processing on a worker (running or queued there)."""
    return list(ws.processing)


def _memory_fraction(name: str, default: float) -> float:
    """``distributed.worker.memory.<name>`` as a fraction; 0 when disabled (0 / False / None / invalid)."""
    value = dask.config.get(f"distributed.worker.memory.{name}", default)
    if value is False or value is None:
        return 0.0
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if value > 0 and math.isfinite(value) else 0.0


def pause_fraction() -> float:
    """``distributed.worker.memory.pause`` (0 / False: workers never pause)."""
    return _memory_fraction("pause", 0.8)


def terminate_fraction() -> float:
    """``distributed.worker.memory.terminate`` (0 / False: the nanny never kills for memory)."""
    return _memory_fraction("terminate", 0.95)


def bandwidth(scheduler: Scheduler) -> float:
    """Measured average bandwidth between workers (bytes/s)."""
    value = getattr(scheduler, "bandwidth", 0) or 0
    return float(value) if value > 0 else 100e6
