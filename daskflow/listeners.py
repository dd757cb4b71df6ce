"""Run listeners: the hooks through which everything observes a run.

Design note
-----------
The run loop knows nothing about the catalog, the progress bar, lineage
export or a daemon's bookkeeping: it emits a handful of events, with plain
data, to :class:`RunListener` objects (like dask's ``callbacks.py``). The
catalog writer (:mod:`daskflow.catalog_writer`) and the progress bar
(:mod:`daskflow.progress`) are listeners; so is anything a user adds with
``materialize(..., listeners=[...])`` or with config
``daskflow.execution.listeners`` (a list of import strings,
``"package.module:Name"``; a class is instantiated once per run).

Events, in the order a run emits them:

* ``run_started(run)`` — once, before anything runs (:class:`RunInfo`).
* ``asset_skipped(run, record)`` — for each asset-partition that is up to
  date (``record.status == "stale-skipped"``), right after ``run_started``;
  later, for each one not attempted because an upstream asset or blocking
  check failed (``"skipped"``).
* ``asset_started(run, start)`` — when every in-graph input of an
  asset-partition is available, so Dask may run it now (roots: when the
  graph is submitted). It is the client's earliest knowledge, not the
  worker's start time (Dask sends no per-task start message). At most once,
  before that asset-partition's ``asset_materialized`` / ``asset_failed``;
  never for skipped ones.
* ``asset_materialized(run, record, stored)`` — the data is durable (the
  worker wrote it atomically and announced it); ``stored`` is the worker's
  :class:`~daskflow.contracts.MaterializedEvent`. The catalog writer runs
  first and fills ``record.materialization_id``.
* ``asset_attempt_replaced(run, record, stored, previous_path)`` — Dask
  executed an already materialized asset-partition again (a worker holding
  its result died while downstream still needed it); ``record`` now
  describes the new attempt, whose file is ``stored["path"]``, and
  ``previous_path`` is the superseded file (see :mod:`daskflow.run_loop`).
* ``asset_failed(run, record)`` — the function raised (after retries), the
  schema did not match, or the task was lost; ``record.error``/``traceback``.
* ``check_evaluated(run, record)`` — a check passed, failed or was skipped.
* ``batch_finished(run)`` — the loop handled one batch of completed tasks;
  listeners that buffer (the catalog writer batches run events into one
  transaction) write now.
* ``run_finished(run, result)`` — once, last: the :class:`RunResult`. Also
  sent, with status "failure" and the records so far, when the run is
  interrupted (Ctrl-C, a catalog error); the exception then propagates.

Within one batch, events follow the plan's topological order. A listener
that raises is reported with one warning and the run continues; only the
*required* listeners (the catalog writer) fail the run, as a catalog error
always has.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from daskflow import config
from daskflow.contracts import MaterializedEvent
from daskflow.errors import ListenerError  # re-exported (it was defined here)
from daskflow.run_result import AssetRecord, CheckRecord, RunResult

__all__ = ["AssetStart", "ListenerError", "RunInfo", "RunListener", "RunListeners", "listeners_from_config"]

AssetPartition = tuple[str, "str | None"]


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a run is about to do, as plain data (``run_started`` and every later event)."""

    run_id: str
    pipeline: str
    selection: str | None
    partitions: list[str] | None
    tags: dict[str, str]
    only_stale: bool
    #: asset-partitions per asset, up-to-date ones included
    totals: dict[str, int]
    #: the asset-partitions that will be attempted, in topological order
    planned: tuple[AssetPartition, ...]
    #: per planned asset-partition: the asset-partitions it reads (its lineage inputs)
    inputs: dict[AssetPartition, tuple[AssetPartition, ...]]
    #: per asset of the run: its code version (None: undeclared)
    code_versions: dict[str, str | None]
    #: per asset of the run with blocking checks: their names (its data is usable once all passed)
    blocking_checks: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: the run this one resumes (``daskflow run --resume``), else None
    resumed_from: str | None = None


@dataclasses.dataclass(frozen=True)
class AssetStart:
    """An asset-partition whose inputs are all available (see ``asset_started``)."""

    asset: str
    partition: str | None
    task_key: str
    data_version: str | None


class RunListener:
    """Receives the events of a run; every method is a no-op here. Override what you need.

    >>> class Printer(RunListener):
    ...     def asset_materialized(self, run, record, stored):
    ...         print(record.asset, record.rows)
    >>> Printer().asset_failed(None, None)  # the others do nothing
    """

    def run_started(self, run: RunInfo) -> None:
        pass

    def asset_started(self, run: RunInfo, start: AssetStart) -> None:
        pass

    def asset_materialized(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent) -> None:
        pass

    def asset_attempt_replaced(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent,
                               previous_path: str | None) -> None:
        pass

    def asset_failed(self, run: RunInfo, record: AssetRecord) -> None:
        pass

    def asset_skipped(self, run: RunInfo, record: AssetRecord) -> None:
        pass

    def check_evaluated(self, run: RunInfo, record: CheckRecord) -> None:
        pass

    def batch_finished(self, run: RunInfo) -> None:
        pass

    def run_finished(self, run: RunInfo, result: RunResult) -> None:
        pass


class RunListeners(RunListener):
    """Fans each event out to ``required`` listeners (errors propagate) then ``optional`` ones (errors warn).

    While ``aborting`` (the run is already failing), errors of required
    listeners are swallowed too, so they cannot hide the original exception.
    """

    def __init__(self, required: Iterable[RunListener] = (), optional: Iterable[RunListener] = ()):
        self.required = list(required)
        self.optional = list(optional)
        self.aborting = False
        self._warned: set[int] = set()

    def _emit(self, event: str, *args: Any) -> None:
        for listener in self.required:
            try:
                getattr(listener, event)(*args)
            except Exception as exc:
                if not self.aborting:
                    raise
                self._warn(listener, event, exc)
        for listener in self.optional:
            try:
                getattr(listener, event)(*args)
            except Exception as exc:  # noqa: BLE001 - a listener never breaks the run
                self._warn(listener, event, exc)

    def _warn(self, listener: RunListener, event: str, exc: Exception) -> None:
        if id(listener) in self._warned:
            return
        self._warned.add(id(listener))
        warnings.warn(
            f"daskflow: run listener {type(listener).__name__} raised {type(exc).__name__}: {exc} in {event}; "
            "the run continues (further errors of this listener are not reported). Fix the listener or "
            "remove it from daskflow.execution.listeners / materialize(listeners=...)",
            RuntimeWarning, stacklevel=3,
        )

    def run_started(self, run: RunInfo) -> None:
        self._emit("run_started", run)

    def asset_started(self, run: RunInfo, start: AssetStart) -> None:
        self._emit("asset_started", run, start)

    def asset_materialized(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent) -> None:
        self._emit("asset_materialized", run, record, stored)

    def asset_attempt_replaced(self, run: RunInfo, record: AssetRecord, stored: MaterializedEvent,
                               previous_path: str | None) -> None:
        self._emit("asset_attempt_replaced", run, record, stored, previous_path)

    def asset_failed(self, run: RunInfo, record: AssetRecord) -> None:
        self._emit("asset_failed", run, record)

    def asset_skipped(self, run: RunInfo, record: AssetRecord) -> None:
        self._emit("asset_skipped", run, record)

    def check_evaluated(self, run: RunInfo, record: CheckRecord) -> None:
        self._emit("check_evaluated", run, record)

    def batch_finished(self, run: RunInfo) -> None:
        self._emit("batch_finished", run)

    def run_finished(self, run: RunInfo, result: RunResult) -> None:
        self._emit("run_finished", run, result)


def load_listener(spec: str) -> RunListener:
    """The listener named by an import string ``"package.module:Name"`` (or ``package.module.Name``).

    A class (or other callable) is called with no arguments; any other object is used as is.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ListenerError(
            f"run listener {spec!r} in daskflow.execution.listeners cannot be imported ({exc}); "
            "use 'package.module:ClassName' with the package installed"
        ) from exc
    try:
        return target() if callable(target) else target
    except Exception as exc:
        raise ListenerError(
            f"run listener {spec!r} could not be built: {type(exc).__name__}: {exc}; it must be "
            "callable with no arguments (a RunListener subclass)"
        ) from exc


def listeners_from_config(specs: Iterable[str] | Mapping[str, Any] | None = None) -> list[RunListener]:
    """The listeners of config ``daskflow.execution.listeners`` (a list of import strings), built for one run."""
    specs = config.get("execution.listeners") if specs is None else specs
    return [load_listener(str(spec)) for spec in (specs or [])]
