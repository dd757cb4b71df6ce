"""Worker-side task bodies: what one asset or check task does on a Dask worker.

Design note
-----------
An asset task loads its external inputs (from the paths planning found in the
catalog), takes its in-graph inputs from Dask, calls the function, validates
the schema and writes through :class:`~daskflow.storage.AssetStore`
(atomically), then publishes a :class:`~daskflow.contracts.MaterializedEvent`
(path, rows, bytes, schema, host, worker, duration_s) on
:data:`~daskflow.contracts.MATERIALIZED_TOPIC` and returns the *value*, which
Dask hands to downstream tasks (the client never fetches it). So the event
means "the data is durable". A check task calls the check function on the
asset's value; a failed *blocking* check raises :class:`BlockingCheckFailed`
so Dask errs everything downstream without running it.

Attempts: every execution of an asset task writes its own file (a fresh
attempt token in the name, :func:`daskflow.storage.new_attempt_token`) and
names it in its event, so a re-execution by Dask never overwrites a file the
catalog already recorded (see :mod:`daskflow.run_loop` for which attempt is
recorded). With a :class:`~daskflow.asset_specs.RetryPolicy` a failed attempt
is retried inside the same task after the policy's delay; while waiting the
task *secedes* from the worker's thread pool (``distributed.secede``, the
mechanism Dask documents for tasks that wait), so the worker runs other tasks
in that slot, and *rejoins* before the next attempt. (Resubmitting from the
client instead would mean resubmitting every downstream task, since Dask errs
dependents of an erred key at once.) A schema mismatch is not retried: the
same code gives the same schema.

User functions travel by value (:class:`ByValue`): pipeline files are loaded
under module names the workers cannot import.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
import threading
import time
import traceback
from typing import Any

from daskflow.contracts import MATERIALIZED_TOPIC, MaterializedEvent
from daskflow.definitions import (
    AssetCheckSpec,
    AssetContext,
    AssetSpec,
    io_for_value,
    to_check_result,
)
from daskflow.errors import SchemaMismatchError
from daskflow.storage import AssetStore, new_attempt_token

__all__ = ["PIPELINE_LOCK", "AssetTask", "BlockingCheckFailed", "ByValue", "run_asset_task", "run_check_task",
           "wait_off_thread"]

#: serialises loading pipeline files and pickling their functions between runs in one process
PIPELINE_LOCK = threading.RLock()


class BlockingCheckFailed(Exception):
    """Raised by a blocking check task that failed, so Dask skips everything downstream."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message, result)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


class ByValue:
    """Pickles its object with cloudpickle even inside a plain ``pickle.dumps``.

    Dask pickles tasks with the standard pickle first, which ships functions by
    module name; pipeline files are loaded under names the workers cannot
    import, so user functions must travel by value. The bytes are made eagerly,
    under :data:`PIPELINE_LOCK`: while another thread of this process loads
    the same pipeline file its module name is briefly in ``sys.modules``, and
    cloudpickle would then ship module references the workers cannot import.
    """

    def __init__(self, obj: Any = None, payload: bytes | None = None):
        from daskflow.loading import dumps_by_value  # keeps co_filename: worker tracebacks name the pipeline file

        self._obj = obj
        self.payload = payload if payload is not None else dumps_by_value(obj)

    @property
    def obj(self) -> Any:
        """The object, unpickled lazily inside the task: a failure is the asset's error, not a dead worker."""
        if self._obj is None:
            import cloudpickle

            self._obj = cloudpickle.loads(self.payload)
        return self._obj

    def __reduce__(self):
        return (_unpickle, (self.payload,))


def _unpickle(payload: bytes) -> Any:
    return ByValue(payload=payload)


@dataclasses.dataclass
class AssetTask:
    """Everything an asset task needs on the worker (pickled once per task)."""

    spec: AssetSpec
    partition: str | None
    run_id: str
    key: str
    store: AssetStore
    # per parameter: (mapping, [(partition, ("dep", index) | ("path", (path, format)))])
    inputs: list[tuple[str, str, list[tuple[str | None, tuple[str, Any]]]]]


def _coerce(value: Any, annotation: Any, from_storage: bool) -> Any:
    """Give a parameter the table type it asks for (pandas vs pyarrow)."""
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    module = type(value).__module__.split(".")[0]
    if module == "pyarrow" and type(value).__name__ == "Table":
        schema_meta = value.schema.metadata or {}
        if name == "DataFrame" or name.endswith(".DataFrame") or (
            from_storage and annotation is inspect.Parameter.empty and b"pandas" in schema_meta
        ):
            return value.to_pandas()
    elif module == "pandas" and type(value).__name__ == "DataFrame" and (name == "Table" or name.endswith(".Table")):
        import pyarrow as pa

        return pa.Table.from_pandas(value, preserve_index=False)
    return value


def run_asset_task(wrapped: ByValue, *upstream_values: Any) -> Any:
    """Compute, store and announce one asset-partition; return its value for downstream tasks."""
    started = time.perf_counter()
    task: AssetTask = wrapped.obj
    spec = task.spec
    signature = inspect.signature(spec.fn).parameters
    kwargs: dict[str, Any] = {}
    for param, mapping, sources in task.inputs:
        loaded = {}
        for partition, (kind, ref) in sources:
            value = upstream_values[ref] if kind == "dep" else task.store.read(ref[0], ref[1])
            loaded[partition] = _coerce(value, signature[param].annotation, kind != "dep")
        kwargs[param] = loaded if mapping == "all" else next(iter(loaded.values()))
    attempt_number = 1
    while True:
        if spec.context_parameter:
            kwargs[spec.context_parameter] = AssetContext(spec.key, task.partition, task.run_id, attempt_number)
        try:
            value = spec.fn(**kwargs)
            io = io_for_value(spec, value)
            stored = task.store.write(spec.key, value, io=io, partition=task.partition, run_id=task.run_id,
                                      schema=spec.schema, attempt=new_attempt_token())
            break
        except SchemaMismatchError:
            raise
        except Exception:
            policy = spec.retry_policy
            if policy is None or attempt_number > policy.max_retries:
                raise
            wait_off_thread(policy.delay_before(attempt_number, random.random()))
            attempt_number += 1
    event: MaterializedEvent = {**stored.to_dict(), "key": task.key, "run_id": task.run_id,  # type: ignore[typeddict-item]
                                "duration_s": time.perf_counter() - started, "attempt_number": attempt_number}
    from distributed import get_worker

    get_worker().log_event(MATERIALIZED_TOPIC, event)
    return value


def wait_off_thread(delay_s: float) -> None:
    """Sleep ``delay_s`` without holding a worker slot: secede from the thread pool, then rejoin.

    Outside a Dask worker (tests calling a task body directly) it just sleeps.
    """
    if delay_s <= 0:
        return
    try:
        from distributed import get_worker, rejoin, secede

        get_worker()
    except (ImportError, ValueError):
        time.sleep(delay_s)
        return
    secede()
    try:
        time.sleep(delay_s)
    finally:
        rejoin()


def run_check_task(wrapped: ByValue, partition: str | None, run_id: str, value: Any) -> dict[str, Any]:
    """Evaluate one check on the asset's value: ``{"passed", "message", "metadata"}``.

    A check that raises is a failed check (with its traceback in the metadata);
    a failed blocking check raises :class:`BlockingCheckFailed`.
    """
    check: AssetCheckSpec = wrapped.obj
    kwargs: dict[str, Any] = {check.value_parameter: value}
    if check.context_parameter:
        kwargs[check.context_parameter] = AssetContext(check.asset, partition, run_id, 1)
    try:
        result = to_check_result(check.fn(**kwargs), check)
        outcome = {"passed": bool(result.passed), "message": result.message, "metadata": dict(result.metadata)}
    except Exception as exc:  # a crashing check is a failed check, with its traceback
        outcome = {"passed": False, "message": f"check raised {type(exc).__name__}: {exc}",
                   "metadata": {"traceback": traceback.format_exc()}}
    if not outcome["passed"] and check.blocking:
        where = check.asset if partition is None else f"{check.asset}[{partition}]"
        raise BlockingCheckFailed(f"blocking check {check.name!r} of {where} failed: {outcome['message']}", outcome)
    return outcome
