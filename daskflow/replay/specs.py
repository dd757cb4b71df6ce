"""What a replayed trace task does on a worker, and the graph a trace becomes.

Each trace task becomes ONE Dask task (keys ``"<category>-<runid8>-<index>"``,
so Dask's per-prefix statistics are per category) with the trace's
dependencies and daskflow annotations built by
:func:`daskflow.contracts.task_annotation` (``kind="replay"``, category,
declared input bytes, number of inputs, run id and — for the oracle — the
true scaled costs): :func:`build_specs`. The task body
(:func:`replay_task`) sleeps its scaled runtime while holding its scaled
peak memory (allocated and touched page by page), then returns its scaled
output (at most :data:`OUTPUT_CAP_BYTES`).
"""

from __future__ import annotations

import time
from typing import Any

from daskflow.contracts import task_annotation
from daskflow.replay.trace import Trace, sanitize_category

__all__ = ["OUTPUT_CAP_BYTES", "build_specs", "replay_task", "warm_worker"]

#: A replayed task returns at most this many bytes (outputs are
#: ``output_bytes × bytes_scale``; WfCommons outputs reach 4 GB per task).
OUTPUT_CAP_BYTES = 64 * 2**20

_PAGE_BYTES = 4096


def replay_task(duration_s: float, memory_bytes: int, output_bytes: int, *upstream: Any) -> bytes:
    """What a replayed task does (runs on a worker).

    Allocates ``memory_bytes`` and writes one byte per page so the memory is
    really resident (the peak shows in VmHWM), holds it until ``duration_s``
    has passed since the start (allocation time included), frees it and
    returns ``output_bytes`` zero bytes. ``upstream`` values are ignored.
    """
    start = time.perf_counter()
    buffer = None
    if memory_bytes > 0:
        import numpy as np

        buffer = np.empty(int(memory_bytes), dtype=np.uint8)
        buffer[::_PAGE_BYTES] = 1  # touch every page: resident, not just reserved
    remaining = duration_s - (time.perf_counter() - start)
    if remaining > 0:
        time.sleep(remaining)
    del buffer
    return bytes(int(output_bytes))


def warm_worker() -> int:
    """Import what tasks need before the clock starts."""
    import numpy as np

    return int(np.ones(1024, dtype=np.uint8).sum())


def build_specs(trace: Trace, run_id: str, memory_scale: float, bytes_scale: float):
    """The task specs of one run of ``trace``, their keys and their (sanitized) categories."""
    from daskflow.daskgraph import TaskSpec
    from daskflow.learning.features import graph_positions

    run8 = run_id[:8]
    categories = [sanitize_category(task.category) for task in trace.tasks]
    keys = [f"{category}-{run8}-{i}" for i, category in enumerate(categories)]
    key_of = {task.id: key for task, key in zip(trace.tasks, keys)}
    positions = graph_positions({key_of[task.id]: [key_of[p] for p in task.parents] for task in trace.tasks})
    specs = []
    for task, key, category in zip(trace.tasks, keys, categories):
        memory = int((task.memory_bytes or 0) * memory_scale)
        output = min(int(task.output_bytes * bytes_scale), OUTPUT_CAP_BYTES)
        annotations = task_annotation(
            run_id=run_id,
            kind="replay",
            category=category,
            tags={"trace": trace.name, "trace_category": task.category, "trace_task": task.id},
            input_bytes=int(task.input_bytes * bytes_scale),
            n_inputs=len(task.parents),
            true_duration_s=float(task.runtime_s),
            true_peak_memory_bytes=memory,
            **positions[key],
        )
        specs.append(
            TaskSpec(
                key=key,
                func=replay_task,
                args=(float(task.runtime_s), memory, output),
                dependencies=tuple(key_of[p] for p in task.parents),
                annotations=annotations,
            )
        )
    return specs, keys, categories
