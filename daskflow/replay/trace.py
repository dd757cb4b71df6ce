"""Workload traces: load, validate, scale, and generate.

A *trace* is a recorded DAG of tasks (the normalized WfCommons format of
``../shared/workloads/README.md``): per task its category, measured runtime,
peak memory (``None`` when the trace has none), declared input/output bytes and
parents. The replay harness turns each trace task into one Dask task.

Design:

* :class:`Trace` and :class:`TraceTask` are frozen plain data; everything else
  is a pure function over them (``load_trace``, ``scale_to_target``, the bag
  generators), so the simulator and the harness share one representation.
* Validation happens once, at load: ids unique, parents known, tasks listed in
  topological order (every parent before its child, which also rules out
  cycles). A :class:`~daskflow.errors.TraceFormatError` names the file, the
  task and the field, and says how to fix it.
* Time scaling keeps the shape of the DAG: every runtime is multiplied by one
  factor so that the makespan lower bound ``max(critical path, total work /
  slots)`` equals a target (a few seconds), which keeps replays short while
  preserving which tasks are long and which path is critical.
"""

from __future__ import annotations

import json
import math
import pathlib
import random
import re
from dataclasses import dataclass, field, replace
from typing import Any

from daskflow.errors import TraceFormatError

__all__ = [
    "Trace",
    "TraceTask",
    "load_trace",
    "memory_pressure_bag",
    "parse_generated_spec",
    "sanitize_category",
    "scale_time",
    "scale_to_target",
    "skewed_bag",
    "trace_from_dict",
]

_FIX_HINT = "fix the file, or regenerate it with tools/wf_to_graph.py (see shared/workloads/README.md)"


@dataclass(frozen=True)
class TraceTask:
    """One recorded task. ``parents`` are task ids; ``memory_bytes`` is peak RSS or ``None``."""

    id: str
    category: str
    runtime_s: float
    memory_bytes: int | None
    input_bytes: int
    output_bytes: int
    parents: tuple[str, ...] = ()
    cores: int = 1


@dataclass(frozen=True)
class Trace:
    """A validated task DAG, tasks in topological order.

    ``time_scale`` is the factor already applied to the recorded runtimes
    (1.0 for a trace as loaded).

    >>> t = trace_from_dict({"name": "tiny", "tasks": [
    ...     {"id": "a", "category": "load", "runtime_s": 2.0, "parents": []},
    ...     {"id": "b", "category": "fit", "runtime_s": 1.0, "parents": ["a"]}]})
    >>> t.parent_indices()
    [[], [0]]
    """

    name: str
    tasks: tuple[TraceTask, ...]
    application: str = ""
    source: str = ""
    time_scale: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.tasks)

    def durations_s(self) -> list[float]:
        return [task.runtime_s for task in self.tasks]

    def parent_indices(self) -> list[list[int]]:
        """Parents of each task as indices into ``tasks``."""
        index = {task.id: i for i, task in enumerate(self.tasks)}
        return [[index[p] for p in task.parents] for task in self.tasks]

    def total_work_s(self) -> float:
        return float(sum(task.runtime_s for task in self.tasks))

    def categories(self) -> list[str]:
        """Distinct categories in first-seen order."""
        return list(dict.fromkeys(task.category for task in self.tasks))

    def has_memory(self) -> bool:
        return any(task.memory_bytes is not None for task in self.tasks)


def load_trace(path: str | pathlib.Path) -> Trace:
    """Read and validate a normalized trace JSON file.

    Raises :class:`TraceFormatError` naming the file, task and field on any
    problem (unreadable JSON, missing/mistyped field, duplicate id, unknown
    parent, parent listed after its child).
    """
    path = pathlib.Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise TraceFormatError(
            f"trace file {str(path)!r} does not exist; pass a path to a JSON trace "
            f"(e.g. one of ../shared/workloads/*.json)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceFormatError(f"trace file {str(path)!r} is not readable JSON ({exc}); {_FIX_HINT}") from exc
    except RecursionError:  # json nests recursively: [[[[...]]]] thousands deep
        raise TraceFormatError(
            f"trace file {str(path)!r} nests JSON arrays/objects too deeply to parse; a trace is an object "
            f"with a flat 'tasks' list; {_FIX_HINT}"
        ) from None
    return trace_from_dict(data, source=str(path))


def trace_from_dict(data: Any, source: str = "<dict>") -> Trace:
    """Validate an already parsed trace (same format as the JSON file)."""
    if not isinstance(data, dict):
        raise TraceFormatError(f"trace {source!r}: expected a JSON object at top level, got {type(data).__name__}; {_FIX_HINT}")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise TraceFormatError(f"trace {source!r}: field 'tasks' must be a non-empty list of task objects; {_FIX_HINT}")
    tasks: list[TraceTask] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(raw_tasks):
        task = _parse_task(raw, position, source)
        if task.id in seen:
            raise TraceFormatError(
                f"trace {source!r}: task {task.id!r} (#{position}): field 'id' duplicates task #{seen[task.id]}; "
                f"task ids must be unique; {_FIX_HINT}"
            )
        for parent in task.parents:
            if parent not in seen:
                if any(isinstance(r, dict) and r.get("id") == parent for r in raw_tasks[position + 1 :]):
                    problem = f"names parent {parent!r}, which is listed after it; tasks must be in topological order (parents first)"
                else:
                    problem = f"names parent {parent!r}, which is not a task of this trace"
                raise TraceFormatError(f"trace {source!r}: task {task.id!r} (#{position}): field 'parents' {problem}; {_FIX_HINT}")
        seen[task.id] = position
        tasks.append(task)
    for text_field in ("name", "application"):
        if data.get(text_field) is not None and not isinstance(data.get(text_field), str):
            raise TraceFormatError(
                f"trace {source!r}: field {text_field!r} must be a string, got {type(data[text_field]).__name__}; {_FIX_HINT}"
            )
    name = data.get("name") or pathlib.Path(source).stem
    meta = {k: v for k, v in data.items() if k not in {"tasks", "name", "application"}}
    return Trace(
        name=str(name),
        tasks=tuple(tasks),
        application=str(data.get("application") or ""),
        source=source,
        time_scale=1.0,
        meta=meta,
    )


def _parse_task(raw: Any, position: int, source: str) -> TraceTask:
    if not isinstance(raw, dict):
        raise TraceFormatError(f"trace {source!r}: task #{position}: expected an object, got {type(raw).__name__}; {_FIX_HINT}")
    task_id = raw.get("id")
    label = f"task {task_id!r} (#{position})" if isinstance(task_id, str) and task_id else f"task #{position}"

    def fail(field_name: str, expected: str) -> TraceFormatError:
        return TraceFormatError(
            f"trace {source!r}: {label}: field {field_name!r} must be {expected}, got {raw.get(field_name, '<missing>')!r}; {_FIX_HINT}"
        )

    if not isinstance(task_id, str) or not task_id:
        raise fail("id", "a non-empty string")
    category = raw.get("category")
    if not isinstance(category, str) or not category:
        raise fail("category", "a non-empty string")
    runtime = raw.get("runtime_s")
    if isinstance(runtime, bool) or not isinstance(runtime, (int, float)) or not math.isfinite(runtime) or runtime < 0:
        raise fail("runtime_s", "a finite number >= 0 (seconds)")
    memory = raw.get("memory_bytes")
    if memory is not None and not _is_count(memory):
        raise fail("memory_bytes", "an integer >= 0 or null")
    sizes = {}
    for name in ("input_bytes", "output_bytes"):
        value = raw.get(name, 0)
        if not _is_count(value):
            raise fail(name, "an integer >= 0 (bytes)")
        sizes[name] = int(value)
    cores = raw.get("cores", 1)
    if not _is_count(cores) or cores < 1:
        raise fail("cores", "an integer >= 1")
    parents = raw.get("parents", [])
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise fail("parents", "a list of task id strings")
    if len(set(parents)) != len(parents):
        raise fail("parents", "a list without repeated ids")
    return TraceTask(
        id=task_id,
        category=category,
        runtime_s=float(runtime),
        memory_bytes=None if memory is None else int(memory),
        input_bytes=sizes["input_bytes"],
        output_bytes=sizes["output_bytes"],
        parents=tuple(parents),
        cores=int(cores),
    )


def _is_count(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and math.isfinite(value) and value >= 0 and value == int(value)


# --------------------------------------------------------------------------- scaling


def scale_time(trace: Trace, factor: float) -> Trace:
    """Multiply every runtime by ``factor`` (> 0); ``time_scale`` accumulates it."""
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"time scale factor for trace {trace.name!r} must be a finite number > 0, got {factor!r}")
    tasks = tuple(replace(task, runtime_s=task.runtime_s * factor) for task in trace.tasks)
    return replace(trace, tasks=tasks, time_scale=trace.time_scale * factor)


def scale_to_target(trace: Trace, target_seconds: float, slots: int) -> Trace:
    """Scale runtimes so that ``lower_bound_s(result, slots) == target_seconds``.

    >>> t = trace_from_dict({"tasks": [{"id": "a", "category": "x", "runtime_s": 4.0},
    ...                                {"id": "b", "category": "x", "runtime_s": 4.0}]})
    >>> from daskflow.replay.simulate import lower_bound_s
    >>> round(lower_bound_s(scale_to_target(t, 2.0, slots=1), 1), 6)
    2.0
    """
    from daskflow.replay.simulate import lower_bound_s

    if not (target_seconds > 0 and math.isfinite(target_seconds)):
        raise ValueError(f"target_seconds must be a finite number > 0, got {target_seconds!r}")
    bound = lower_bound_s(trace, slots)
    if bound <= 0:
        raise TraceFormatError(
            f"trace {trace.name!r} ({trace.source}): every runtime_s is 0, so it cannot be scaled to "
            f"{target_seconds} s; give the tasks positive runtimes"
        )
    return scale_time(trace, target_seconds / bound)


# --------------------------------------------------------------------------- categories

_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def sanitize_category(category: str) -> str:
    """A category usable as a Dask key prefix: ``key_split(f"{c}-{runid8}-{i}") == c``.

    Dask splits keys on ``-`` and keeps following words only while they are
    alphabetic, so ``-`` (and other punctuation) become ``_`` and a category
    must start with a letter.

    >>> sanitize_category("fasterq-dump")
    'fasterq_dump'
    >>> sanitize_category("NFCORE_RNASEQ.RNASEQ.STAR_ALIGN")
    'NFCORE_RNASEQ.RNASEQ.STAR_ALIGN'
    >>> sanitize_category("2pass")
    't_2pass'
    """
    cleaned = _UNSAFE.sub("_", category).strip("_.") or "task"
    if not cleaned[0].isalpha():
        cleaned = "t_" + cleaned
    return cleaned


# --------------------------------------------------------------------------- generators

#: generated traces by name (``NAME[:SEED[:N]]`` on the command line)
GENERATED_TRACES = ("skewed-bag", "memory-pressure")
#: a generated bag larger than this is a typo, not a benchmark
MAX_GENERATED_TASKS = 1_000_000


def parse_generated_spec(spec: str) -> tuple[str, dict[str, int]] | None:
    """``("skewed-bag", {"seed": 3, "n": 100})`` for ``"skewed-bag:3:100"``; ``None`` if ``spec`` names no generator.

    Raises :class:`TraceFormatError` (one line) for a malformed spec such as
    ``"skewed-bag:x"`` or ``"memory-pressure:1:-5"``.

    >>> parse_generated_spec("skewed-bag:3:100"), parse_generated_spec("trace.json")
    (('skewed-bag', {'seed': 3, 'n': 100}), None)
    """
    for name in GENERATED_TRACES:
        if spec == name or spec.startswith(name + ":"):
            parts = spec.split(":")[1:]
            usage = f"expected {name}[:SEED[:N]] with an integer SEED >= 0 and 1 <= N <= {MAX_GENERATED_TASKS}"
            if len(parts) > 2 or not all(p.isdigit() for p in parts):
                raise TraceFormatError(f"generated trace {spec[:60]!r}: {usage}")
            numbers = [int(p) for p in parts]
            kwargs: dict[str, int] = {}
            if numbers:
                kwargs["seed"] = numbers[0]
            if len(numbers) > 1:
                if not 1 <= numbers[1] <= MAX_GENERATED_TASKS:
                    raise TraceFormatError(f"generated trace {spec[:60]!r}: {usage}")
                kwargs["n"] = numbers[1]
            return name, kwargs
    return None


_MB = 1_000_000


def skewed_bag(
    n: int = 240,
    seed: int = 0,
    median_input_bytes: int = 50 * _MB,
    seconds_per_median_input: float = 1.0,
    sigma: float = 1.0,
    noise_sigma: float = 0.1,
) -> Trace:
    """Independent tasks whose durations are lognormal and grow with declared input size.

    Input sizes are lognormal (``sigma`` on the log scale); a task's runtime is
    ``seconds_per_median_input × factor(category) × (input / median_input)``
    times a small lognormal noise, so a per-category mean predicts poorly
    while a model using ``input_bytes`` predicts well. Memory peaks at about
    twice the input; outputs are 1 % of the input. Deterministic per ``seed``.
    """
    rng = random.Random(seed)
    categories = (("bag_load", 1.0), ("bag_transform", 2.0), ("bag_fit", 0.5))
    tasks = []
    for i in range(n):
        category, factor = categories[i % len(categories)]
        input_bytes = int(median_input_bytes * math.exp(rng.gauss(0.0, sigma)))
        runtime_s = seconds_per_median_input * factor * (input_bytes / median_input_bytes) * math.exp(rng.gauss(0.0, noise_sigma))
        memory_bytes = int(2 * input_bytes * math.exp(rng.gauss(0.0, noise_sigma)))
        tasks.append(
            TraceTask(
                id=f"bag{i:05d}",
                category=category,
                runtime_s=runtime_s,
                memory_bytes=memory_bytes,
                input_bytes=input_bytes,
                output_bytes=input_bytes // 100,
            )
        )
    return Trace(name=f"skewed-bag-{n}-seed{seed}", tasks=tuple(tasks), application="skewed-bag", source="generated:skewed_bag")


def memory_pressure_bag(
    n: int = 64,
    seed: int = 0,
    heavy_share: float = 0.25,
    heavy_memory_bytes: tuple[int, int] = (1_000 * _MB, 1_400 * _MB),
    light_memory_bytes: tuple[int, int] = (20 * _MB, 80 * _MB),
    runtime_s: tuple[float, float] = (0.5, 1.5),
) -> Trace:
    """Independent tasks of which ``heavy_share`` (a quarter) peak at 1–1.4 GB.

    Heavy tasks (category ``mem_heavy``) declare a large input proportional to
    their peak, light ones (``mem_light``) a small one, so memory is
    predictable from the category and the declared input. Replay with
    ``memory_scale=1`` on workers with a 2 GB limit to create real pressure.
    """
    rng = random.Random(seed)
    n_heavy = round(n * heavy_share)
    heavy_positions = set(rng.sample(range(n), n_heavy))
    tasks = []
    for i in range(n):
        heavy = i in heavy_positions
        low, high = heavy_memory_bytes if heavy else light_memory_bytes
        memory_bytes = int(rng.uniform(low, high))
        tasks.append(
            TraceTask(
                id=f"mem{i:05d}",
                category="mem_heavy" if heavy else "mem_light",
                runtime_s=rng.uniform(*runtime_s),
                memory_bytes=memory_bytes,
                input_bytes=memory_bytes // 2,
                output_bytes=_MB,
            )
        )
    return Trace(name=f"memory-pressure-{n}-seed{seed}", tasks=tuple(tasks), application="memory-pressure", source="generated:memory_pressure_bag")
