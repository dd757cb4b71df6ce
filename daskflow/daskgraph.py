"""Building annotated Dask graphs.

daskflow sends ONE graph per run in which every task carries its own
annotations (``{"daskflow": {...}}``: category, asset, partition, declared
input sizes, ...). The scheduler plugins read them as features. Per-key
annotations survive the trip to the scheduler when each task sits in its own
``MaterializedLayer`` of a ``HighLevelGraph``; the scheduler then exposes them
as ``TaskState.annotations``.

Annotation schema (key ``"daskflow"``), shared by execution, the replay
harness and the plugins::

    run_id: str            category: str          kind: "asset"|"check"|"replay"
    asset: str | None      partition: str | None  code_version: str | None
    input_bytes: int       input_rows: int        n_inputs: int
    input_locations: [{"host": str, "bytes": int}]   tags: {str: str}
    true_duration_s, true_peak_memory_bytes   (replay only: used by the oracle)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dask._task_spec import Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

ANNOTATION_KEY = "daskflow"


@dataclass
class TaskSpec:
    """One task: ``func(*args, **kwargs)`` where upstream results are named by key in ``dependencies``.

    Upstream values are passed positionally after ``args``, in the order of
    ``dependencies``.
    """

    key: str
    func: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    annotations: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    retries: int | None = None


def build_graph(tasks: Iterable[TaskSpec]) -> HighLevelGraph:
    """A ``HighLevelGraph`` with one layer per task, carrying that task's annotations."""
    layers: dict[str, MaterializedLayer] = {}
    layer_deps: dict[str, set[str]] = {}
    for spec in tasks:
        refs = [TaskRef(dep) for dep in spec.dependencies]
        task = Task(spec.key, spec.func, *spec.args, *refs, **spec.kwargs)
        annotations: dict[str, Any] = {}
        if spec.annotations:
            annotations[ANNOTATION_KEY] = dict(spec.annotations)
        if spec.priority is not None:
            annotations["priority"] = spec.priority
        if spec.retries:
            annotations["retries"] = spec.retries
        layers[spec.key] = MaterializedLayer({spec.key: task}, annotations=annotations or None)
        layer_deps[spec.key] = set(spec.dependencies)
    return HighLevelGraph(layers, layer_deps)


def submit_graph(client, tasks: Iterable[TaskSpec], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Send the tasks as one graph; return ``{key: Future}`` for ``keys`` (default: all tasks)."""
    tasks = list(tasks)
    graph = build_graph(tasks)
    wanted = list(keys) if keys is not None else [t.key for t in tasks]
    futures = client.get(graph, wanted, sync=False)
    return dict(zip(wanted, futures))


def annotations_of(task_annotations: Mapping[str, Any] | None) -> dict[str, Any]:
    """The daskflow part of a ``TaskState.annotations`` dict (empty when absent)."""
    if not task_annotations:
        return {}
    value = task_annotations.get(ANNOTATION_KEY)
    return dict(value) if isinstance(value, Mapping) else {}
