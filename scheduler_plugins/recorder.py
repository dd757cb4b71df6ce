"""The task recorder: one history row per task that finishes or errs, flushed to Parquet.

Design note
-----------
:class:`RecorderPlugin` is a scheduler plugin (name
:data:`daskflow.contracts.RECORDER_PLUGIN`).
Its ``transition`` hook sees ``processing -> memory`` (with ``worker``,
``nbytes``, ``startstops`` and the worker's ``metadata``) and ``processing ->
erred``. Per task it only *captures* what can change later into one tuple
(:meth:`RecorderPlugin.capture`: the worker's pressure, the dependencies'
sizes, the steering plugin's prediction); rows with the shape of
:data:`daskflow.learning.history.HISTORY_SCHEMA` (the same record shape the
feature module reads) are built from those tuples in batches
(:meth:`RecorderPlugin.make_row`): every ``CAPTURE_BATCH_ROWS`` tasks, at a
flush, or when ``recent_rows`` is read. Built in a batch, the same code runs
on warm caches (measured ~7 x cheaper per row than interleaved with the
scheduler's work, see BENCHMARKS.md "Plugin overhead"). Rows go to a bounded
in-memory buffer.

Tiny-task sampling (``daskflow.recorder.tiny-tasks``, the rule in
:mod:`scheduler_plugins.sampling`): once a key prefix has finished ``after``
tasks (256) of which at most 1 % ran ``seconds`` (1 ms, the trainer's
timer-noise floor) or longer, only every ``sample-every``-th (16th) further
task of it is measured (by the worker plugin, which decides) and gets a row,
with ``sample_weight`` = that interval; erred tasks always get a row. Uniform
within a prefix, so its weighted statistics stay unbiased; it keeps a stream
of trivial tasks (where a row and a measurement cost ~60 us each, ~8 % of a
task) from paying for rows that teach nothing. ``sample-every: 1`` records
every task; ``rows_sampled_out`` in :meth:`RecorderPlugin.stats` counts the others.

Writing happens off the event loop: a periodic callback (every
``daskflow.history.flush-interval``, or early once ``flush-rows`` rows wait)
swaps the buffer out and hands it to a one-thread executor that appends one new
Parquet file per date to the dataset at ``daskflow.history.url`` (any fsspec
URL). ``close`` flushes what is left. A crash loses at most the unflushed
buffer; past ``max-buffer-rows`` the oldest rows are dropped (counted in
``dropped_rows``) so a dead storage backend cannot grow memory without bound.

The recorder does not feed the steering predictor's per-category running
means: the steering plugin observes its own finished tasks (one ``observe``
per task). It only copies the steering plugin's prediction for the task into
the row.

Peak memory comes from :class:`scheduler_plugins.worker_memory.PeakMemoryPlugin`,
which the recorder registers on all current and future workers itself, so a
scheduler preload is enough.

Hygiene columns (for :mod:`daskflow.learning.cleaning`): ``attempt`` (1 +
the key's earlier attempts this recorder saw end in ``erred`` or lost with
their worker), ``worker_paused`` (paused at the task's start or finish, as of
the worker's heartbeats), ``spilled_bytes`` (the worker's bytes on disk at
finish minus at start) and ``worker_memory_at_start_bytes`` (the worker's RSS
when the task started, from the peak-memory plugin). Per-key start facts
live in a bounded dict until the task finishes.

An unwritable or unreachable history URL is found at start (a probe write,
off the event loop) or at the first failed flush: ONE warning in the
scheduler log (for an embedded cluster, the scheduler runs in the client's
process, so it is the client's output), then only counters
(``history_write_failures``, ``history_error`` in :meth:`RecorderPlugin.stats`,
for the model page).

The recorder never raises into the scheduler: every hook is wrapped, the first
failure is logged once with its traceback, later ones are counted in
``error_count``. Scheduler internals are read through
:mod:`scheduler_plugins.compat`; settings come from ``daskflow.history.*`` and
``daskflow.recorder.*`` (defaults in ``daskflow.yaml``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from daskflow import config
from daskflow.contracts import (
    METADATA_KEY,
    PEAK_MEMORY_PLUGIN,
    RECORDER_PLUGIN,
    STEERING_PLUGIN,
)
from daskflow.daskgraph import annotations_of
from daskflow.learning.features import record_from_annotations
from daskflow.learning.history import append_history, probe_history
from scheduler_plugins import compat
from scheduler_plugins.sampling import sample_weight_of, sampler_from_settings
from scheduler_plugins.worker_memory import PeakMemoryPlugin

logger = logging.getLogger(__name__)

PLUGIN_NAME = RECORDER_PLUGIN
#: rows are built from captured tuples once this many wait (bounds the list; flushes and readers build too)
CAPTURE_BATCH_ROWS = 256


class RecorderPlugin(SchedulerPlugin):
    """Records duration, peak memory and output size of every task into the history dataset.

    >>> from distributed import Scheduler
    >>> plugin = RecorderPlugin(history_url="memory://history")   # doctest: +SKIP
    >>> await scheduler.register_scheduler_plugin(plugin, name=RECORDER_PLUGIN)  # doctest: +SKIP
    """

    name = PLUGIN_NAME

    def __init__(
        self,
        history_url: str | None = None,
        *,
        flush_interval_s: float | None = None,
        flush_rows: int | None = None,
        max_buffer_rows: int | None = None,
        recent_rows: int | None = None,
        storage_options: dict | None = None,
        register_worker_plugin: bool = True,
    ) -> None:
        from dask.utils import parse_timedelta

        self.history_url = config.history_url(history_url)
        self.storage_options = storage_options if storage_options is not None else (config.get("storage.storage-options") or None)
        self.flush_interval_s = float(
            flush_interval_s if flush_interval_s is not None else parse_timedelta(config.get("history.flush-interval"))
        )
        self.flush_rows = int(flush_rows if flush_rows is not None else config.get("history.flush-rows"))
        self.max_buffer_rows = int(max_buffer_rows if max_buffer_rows is not None else config.get("history.max-buffer-rows"))
        self.register_worker_plugin = register_worker_plugin
        self._recent: deque[dict[str, Any]] = deque(
            maxlen=int(recent_rows if recent_rows is not None else config.get("recorder.recent-rows"))
        )
        self._captured: list[tuple] = []  # capture() tuples not yet built into rows (see make_row)
        self._sampler = sampler_from_settings()  # tiny-task sampling where no worker plugin decided it
        self.rows_sampled_out = 0
        self.scheduler: Any = None
        self.rows_recorded = 0
        self.rows_flushed = 0
        self.dropped_rows = 0
        self.error_count = 0
        self.flush_error_count = 0
        self.files_written: deque[str] = deque(maxlen=1000)
        self._buffer: deque[dict[str, Any]] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self._lock = threading.Lock()  # guards _pending and the re-queue (writer thread vs loop)
        self._periodic: Any = None  # the flush callback (scheduler.periodic_callbacks[PLUGIN_NAME])
        self._started = False
        self._warned: set[str] = set()
        self.history_write_failures = 0  # failed probes + failed flushes (the model page shows it)
        self.history_error: str | None = None  # the last write error, None once a write succeeded
        self.max_tracked_keys = 100_000
        self._start_facts: dict[Any, tuple[bool | None, int | None]] = {}  # key -> (paused, spilled bytes) at start
        self._attempts: dict[Any, int] = {}  # key -> attempts that ended without a result

    # ------------------------------------------------------------------ lifecycle
    async def start(self, scheduler: Any) -> None:
        if self._started:
            return
        self._started = True
        self.scheduler = scheduler
        try:
            self._periodic = compat.add_periodic_callback(scheduler, PLUGIN_NAME, self._safe_flush, self.flush_interval_s * 1000)
            self._submit(probe_history, self.history_url, self.storage_options).add_done_callback(self._probed)
            if self.register_worker_plugin:
                await compat.register_worker_plugin(scheduler, PeakMemoryPlugin(), PEAK_MEMORY_PLUGIN)
        except Exception:  # noqa: BLE001
            self._hook_failed("start")

    async def close(self) -> None:
        """Stop the periodic flush, write what is buffered and wait for all writes."""
        try:
            if self._periodic is not None:
                compat.remove_periodic_callback(self.scheduler, PLUGIN_NAME, self._periodic)
                self._periodic = None
            self.flush()
            await self._wait_pending()
        except Exception:  # noqa: BLE001
            self._hook_failed("close")
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    # ------------------------------------------------------------------ recording
    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str | None = None, **kwargs: Any) -> None:
        if finish == "processing" or start != "processing":
            if finish == "processing":
                self._task_started(key)
            return
        if finish not in ("memory", "erred"):  # lost with its worker (or cancelled): an attempt without a row
            self._start_facts.pop(key, None)
            self._count_attempt(key)
            return
        try:
            weight = self._sample_weight(key, kwargs) if finish == "memory" else 1.0
            if weight == 0.0:  # a tiny task of a sampled prefix, not the one in sample_every that is kept
                self._start_facts.pop(key, None)
                if self._attempts:
                    self._attempts.pop(key, None)
                self.rows_sampled_out += 1
                return
            self._captured.append(self.capture(key, finish, kwargs, weight))
            self.rows_recorded += 1
            if len(self._captured) >= CAPTURE_BATCH_ROWS or len(self._captured) + len(self._buffer) >= self.flush_rows:
                self._build_rows()
                if len(self._buffer) >= self.flush_rows:
                    self.flush()
        except Exception:  # noqa: BLE001 - never break scheduling
            self._hook_failed("transition")

    def _sample_weight(self, key: Any, info: dict[str, Any]) -> float:
        """How many tasks this finished task's row stands for: 1, the sampling interval, or 0 (no row).

        The worker's peak-memory plugin decided it when the task started
        (``sample_weight`` in the task's metadata: a skipped task was not
        measured); without that plugin the recorder applies the same
        :class:`~scheduler_plugins.sampling.TinyTaskSampler` itself, per key prefix.
        """
        weight = sample_weight_of(info.get("metadata"))
        if weight is not None:
            return weight
        scheduler = self.scheduler
        task = compat.task_state(scheduler, key) if scheduler is not None else None
        if task is None:
            return 1.0
        prefix = compat.prefix_name(task)
        weight = self._sampler.decide(prefix)
        self._sampler.finished(prefix, compat.startstops_compute_s(info.get("startstops")))
        return weight

    def capture(self, key: Any, finish: str, info: dict[str, Any], sample_weight: float = 1.0) -> tuple:
        """What must be read at the moment a task finishes, as one tuple (the per-task event-loop cost).

        Everything that can change later is read now (the worker's pressure,
        the dependencies' sizes, the steering plugin's prediction, which goes
        when the task is forgotten); the row itself is built later, many at a
        time (:meth:`make_row`): the same Python then runs on warm caches,
        ~7 x cheaper per row than interleaved with the scheduler's own work.
        """
        scheduler = self.scheduler
        worker = info.get("worker")
        task = annotations = prefix = n_dependencies = dependency_bytes = None
        threads = memory_limit = steering = prediction = None
        pressure_at_end = _UNKNOWN_PRESSURE
        if scheduler is not None:
            task = compat.task_state(scheduler, key)
            threads, memory_limit = compat.worker_threads_and_memory_limit(scheduler, worker)
            pressure_at_end = compat.worker_pressure(scheduler, worker)
            steering = compat.plugin(scheduler, STEERING_PLUGIN)
            predictions = getattr(steering, "predictions", None)
            prediction = predictions.get(key) if predictions else None
        if task is not None:
            annotations = annotations_of(compat.annotations(task))
            nbytes = compat.dependency_nbytes(task)
            n_dependencies, dependency_bytes = len(nbytes), sum(nbytes)
            prefix = compat.prefix_name(task)
        attempts = self._attempts
        earlier = attempts.get(key, 0) if attempts else 0
        if finish == "erred":
            self._count_attempt(key)
        elif earlier:
            del attempts[key]
        return (key, finish, info, time.time(), annotations, prefix, n_dependencies, dependency_bytes, threads,
                memory_limit, self._start_facts.pop(key, _UNKNOWN_PRESSURE), pressure_at_end, 1 + earlier,
                prediction, getattr(steering, "model_version", None) if prediction is not None else None,
                sample_weight)  # fmt: skip

    def _build_rows(self) -> None:
        """Turn the captured tuples into history rows (buffer + ``recent_rows``), within the buffer bound."""
        captured, self._captured = self._captured, []
        buffer, recent = self._buffer, self._recent
        for facts in captured:
            try:
                row = self.make_row(facts)
            except Exception:  # noqa: BLE001 - a row that cannot be built is lost, the run goes on
                self._hook_failed("transition")
                continue
            if row is None:
                continue
            with self._lock:
                if len(buffer) >= self.max_buffer_rows:
                    buffer.popleft()
                    self.dropped_rows += 1
                buffer.append(row)
            recent.append(row)

    @property
    def recent_rows(self) -> deque[dict[str, Any]]:
        """The last ``daskflow.recorder.recent-rows`` history rows (oldest first), for the dashboard and explain."""
        if self._captured:
            self._build_rows()
        return self._recent

    def make_row(self, facts: tuple) -> dict[str, Any] | None:
        """The history row of one finished (``memory``) or failed (``erred``) task, from :meth:`capture`'s tuple."""
        (key, finish, info, recorded_at, annotations, prefix, n_dependencies, dependency_bytes, threads, memory_limit,
         (paused_at_start, spilled_at_start), (paused_at_end, spilled_at_end), attempt, prediction, model_version,
         sample_weight) = facts  # fmt: skip
        record = record_from_annotations(
            key, annotations,
            n_dependencies=n_dependencies, dependency_bytes=dependency_bytes,
            worker_threads=threads, worker_memory_limit_bytes=memory_limit, key_prefix=prefix,
        )  # fmt: skip
        start_s, stop_s, duration_s = compat.startstops_compute(info.get("startstops"))
        metadata = info.get("metadata")
        measured = (metadata.get(METADATA_KEY) if metadata else None) or _NOTHING
        get = annotations.get if annotations else _NOTHING.get
        record.update(
            recorded_at=recorded_at,
            key_prefix=prefix,
            tags=get("tags"),
            input_locations=get("input_locations"),
            worker=info.get("worker"),
            start_s=start_s,
            stop_s=stop_s,
            duration_s=duration_s,
            output_nbytes=info.get("nbytes") if finish == "memory" else None,
            peak_memory_bytes=measured.get("peak_memory_bytes"),
            peak_memory_method=measured.get("peak_memory_method"),
            concurrent_tasks=measured.get("concurrent_tasks"),
            outcome="success" if finish == "memory" else "error",
            attempt=attempt,
            worker_paused=None if paused_at_start is None and paused_at_end is None else bool(paused_at_start or paused_at_end),
            spilled_bytes=(max(0, spilled_at_end - spilled_at_start)
                           if spilled_at_start is not None and spilled_at_end is not None else None),
            worker_memory_at_start_bytes=measured.get("start_rss_bytes"),
            sample_weight=sample_weight,
        )  # fmt: skip
        if prediction is not None:
            record.update(
                predicted_duration_s=_field(prediction, "duration_s", "predicted_duration_s"),
                predicted_peak_memory_bytes=_field(prediction, "peak_memory_bytes", "predicted_peak_memory_bytes"),
                model_version=_field(prediction, "model_version") or model_version,
                quality=_field(prediction, "quality"),
            )  # fmt: skip
        return record

    # ------------------------------------------------------------------ hygiene facts
    def _task_started(self, key: Any) -> None:
        try:
            task = compat.task_state(self.scheduler, key) if self.scheduler is not None else None
            worker = compat.processing_on(task) if task is not None else None
            if len(self._start_facts) >= self.max_tracked_keys:
                self._start_facts.clear()  # bounded: tasks lost without a transition must not leak
            self._start_facts[key] = compat.worker_pressure(self.scheduler, worker)
        except Exception:  # noqa: BLE001
            self._hook_failed("transition")

    def _count_attempt(self, key: Any) -> None:
        if len(self._attempts) >= self.max_tracked_keys:
            self._attempts.clear()
        self._attempts[key] = self._attempts.get(key, 0) + 1

    # ------------------------------------------------------------------ flushing
    def flush(self) -> Future | None:
        """Hand the buffered rows to the writer thread; returns its future (``None`` if empty)."""
        if self._captured:
            self._build_rows()
        if not self._buffer:
            return None
        with self._lock:
            rows = list(self._buffer)
            self._buffer.clear()
        future = self._submit(append_history, rows, self.history_url, self.storage_options)
        future.add_done_callback(lambda f, rows=rows: self._flushed(f, rows))
        return future

    def _submit(self, function: Any, *args: Any) -> Future:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="daskflow-recorder")
        future = self._executor.submit(function, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._discard)
        return future

    def _discard(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _probed(self, future: Future) -> None:
        # Runs in the writer thread.
        error = future.exception()
        if error is not None:
            self._history_unwritable(error, "the start-up probe")

    def _history_unwritable(self, error: BaseException, what: str) -> None:
        self.history_write_failures += 1
        self.history_error = f"{type(error).__name__}: {error}"
        if "history-write" not in self._warned:
            self._warned.add("history-write")
            logger.warning(
                "daskflow recorder: the task history at %s is not writable (%s failed: %s); rows are kept in memory "
                "(bounded by daskflow.history.max-buffer-rows) and retried, the run goes on without training data. "
                "Fix daskflow.history.url or its permissions.", self.history_url, what, self.history_error,
            )

    def _safe_flush(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            self._hook_failed("flush")

    def _flushed(self, future: Future, rows: list[dict[str, Any]]) -> None:
        # Runs in the writer thread; only counters and a thread-safe deque are touched.
        error = future.exception()
        if error is None:
            self.rows_flushed += len(rows)
            self.files_written.extend(future.result())
            self.history_error = None
            return
        self._history_unwritable(error, f"writing {len(rows)} rows")
        # Re-queue the rows at the front, within the bound; older rows are dropped first.
        with self._lock:
            room = self.max_buffer_rows - len(self._buffer)
            keep = rows[-room:] if room > 0 else []
            self.dropped_rows += len(rows) - len(keep)
            self._buffer.extendleft(reversed(keep))
        self.flush_error_count += 1  # last: a waiter on this counter sees the rows re-queued

    async def flush_and_wait(self) -> None:
        """Flush now and wait until every pending write is done (tests, shutdown)."""
        self.flush()
        await self._wait_pending()

    async def _wait_pending(self) -> None:
        with self._lock:
            pending = [asyncio.wrap_future(f) for f in self._pending]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _hook_failed(self, hook: str) -> None:
        self.error_count += 1
        if hook not in self._warned:
            self._warned.add(hook)
            logger.warning("daskflow recorder: %s hook failed; the run continues without recording", hook, exc_info=True)  # noqa: LOG014 - always called from an except block

    def stats(self) -> dict[str, Any]:
        """Counters for the dashboard and tests."""
        if self._captured:
            self._build_rows()  # so that the buffer bound and the dropped count are current
        return {
            "history_url": self.history_url,
            "rows_recorded": self.rows_recorded,
            "rows_sampled_out": self.rows_sampled_out,
            "rows_flushed": self.rows_flushed,
            "buffered_rows": len(self._buffer),
            "dropped_rows": self.dropped_rows,
            "error_count": self.error_count,
            "flush_error_count": self.flush_error_count,
            "files_written": len(self.files_written),
            "history_write_failures": self.history_write_failures,
            "history_error": self.history_error,
        }


_NOTHING: dict[str, Any] = {}
_UNKNOWN_PRESSURE = (None, None)


def _field(prediction: Any, *names: str) -> Any:
    for name in names:
        if isinstance(prediction, dict):
            if name in prediction:
                return prediction[name]
        elif hasattr(prediction, name):
            return getattr(prediction, name)
    return None


def install(scheduler: Any) -> None:
    """Preload entry point: add the recorder (config ``daskflow.recorder.enabled``); idempotent."""
    if not config.get("recorder.enabled"):
        return
    if compat.plugin(scheduler, PLUGIN_NAME) is not None:
        return
    compat.add_plugin(scheduler, RecorderPlugin(), PLUGIN_NAME)


def dask_setup(scheduler: Any) -> None:
    """``dask scheduler --preload scheduler_plugins.recorder``: the recorder alone."""
    install(scheduler)
