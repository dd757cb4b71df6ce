"""Building annotated Dask graphs.

daskflow sends ONE graph per run in which every task carries its own
annotations (``{"daskflow": {...}}``: category, asset, partition, declared
input sizes, ...). The scheduler plugins read them as features. Per-key
annotations survive the trip to the scheduler when each task sits in its own
``MaterializedLayer`` of a ``HighLevelGraph``; the scheduler then exposes them
as ``TaskState.annotations``.

The annotation schema (key :data:`daskflow.contracts.ANNOTATION_KEY`) is
:class:`daskflow.contracts.TaskAnnotation`, built by
:func:`daskflow.contracts.task_annotation` in execution and the replay harness
and read by the plugins through :func:`annotations_of`. Tasks are built with
dask's task spec through :func:`daskflow.compat.make_task` (a private dask
module, kept behind the compat layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from daskflow.compat import make_task
from daskflow.contracts import ANNOTATION_KEY, TaskAnnotation


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
    annotations: TaskAnnotation | dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    retries: int | None = None
    #: Dask task restrictions (``resources`` / ``workers`` / ``allow_other_workers``: the
    #: ``dask.annotate`` keywords), e.g. :func:`daskflow.placement_rules.task_constraints`
    constraints: Mapping[str, Any] = field(default_factory=dict)


#: the task-restriction annotations the scheduler honours (``Scheduler._apply_annotations``)
_CONSTRAINT_KEYS = frozenset({"resources", "workers", "allow_other_workers"})


def build_graph(tasks: Iterable[TaskSpec]) -> HighLevelGraph:
    """A ``HighLevelGraph`` with one layer per task, carrying that task's annotations."""
    layers: dict[str, MaterializedLayer] = {}
    layer_deps: dict[str, set[str]] = {}
    for spec in tasks:
        task = make_task(spec.key, spec.func, spec.args, spec.dependencies, spec.kwargs)
        annotations: dict[str, Any] = {}
        if spec.annotations:
            annotations[ANNOTATION_KEY] = dict(spec.annotations)
        if spec.priority is not None:
            annotations["priority"] = spec.priority
        if spec.retries:
            annotations["retries"] = spec.retries
        for name, value in spec.constraints.items():  # read by the scheduler as task restrictions
            if name not in _CONSTRAINT_KEYS:
                raise ValueError(f"TaskSpec {spec.key!r}: unknown constraint {name!r}; use {sorted(_CONSTRAINT_KEYS)}")
            if value is not None and value != {} and value != []:
                annotations[name] = dict(value) if isinstance(value, Mapping) else (
                    list(value) if isinstance(value, (list, tuple, set)) else value)
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


def annotations_of(task_annotations: Mapping[str, Any] | None) -> TaskAnnotation:
    """The daskflow part of a ``TaskState.annotations`` dict (empty when absent).

    Read only: it is the task's own mapping, not a copy (per-task hot path of the
    recorder and the steering plugin); copy it before changing it.
    """
    if not task_annotations:
        return {}
    value = task_annotations.get(ANNOTATION_KEY)
    return value if isinstance(value, Mapping) else {}  # type: ignore[return-value]
