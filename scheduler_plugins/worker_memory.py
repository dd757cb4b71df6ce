"""Per-task peak memory, measured on the worker and shipped in the task's finish metadata.

Design note
-----------
Linux keeps a per-process resident-set high-water mark (``VmHWM`` in
``/proc/self/status``) that can be reset by writing ``5`` to
``/proc/self/clear_refs``. :class:`PeakMemoryPlugin` resets it when a task
starts executing and reads it when the task finishes, so it sees the true peak
of a task even when the memory lives only for milliseconds (a periodic RSS
sampler misses those). Per task it costs one ``/proc/self/statm`` read (the
start RSS), one ``clear_refs`` write when no other task runs, and one
``/proc/self/status`` read (the mark), each a single ``pread``/``write`` on a
descriptor kept open since ``setup`` (~10 us in all; opening the files per
task, as before, cost ~4 x that on a busy worker, see BENCHMARKS.md).

Definition (what ``peak_memory_bytes`` means)::

    peak_memory_bytes = VmHWM at finish - VmRSS at start      (>= 0)

i.e. the extra resident memory the task needed at its peak above what the
worker process already held when the task began. It includes memory of the
task's result (still referenced when the task finishes) and anything else the
process allocated meanwhile: it is exact per task only with one thread per
worker. With several threads, ``concurrent_tasks`` in the metadata says how
many tasks shared the process while this one ran; when that is more than one
the value is not the task's own (a light task beside a 1.3 GB one reads
~1.3 GB, a heavy one started while the mark was still up from an earlier one
reads ~0), so it is sent as ``shared_peak_memory_bytes`` and
``peak_memory_bytes`` is ``None``: no consumer learns a peak from it (the
steering plugin's in-run memory correction and its p90 admission did, and
held every light task as if it were heavy; the history's cleaning already
excluded such rows as ``shared-process-peak``).

The value reaches the scheduler without extra messages: the worker's
``TaskFinishedMsg`` carries the *same dict object* as the worker-side
``TaskState.metadata``, and the plugin's ``transition`` hook runs after the
message is built but before it is sent, so filling that dict in place is
enough. On the scheduler the ``processing -> memory`` transition receives it as
``metadata`` (see ``scheduler_plugins/recorder.py``). Erred tasks send no
metadata, so their peak memory is unknown.

Freed-but-resident memory: after a task frees a large buffer, glibc often
keeps those pages (heap, raised mmap threshold) and the next task reuses them
without the RSS growing, so its delta would read ~0. The plugin therefore calls
``malloc_trim(0)`` (glibc) before taking the start baseline, so the baseline is
the memory really in use. It trims again when such a task finishes and no
other runs, so the heartbeats of an idle worker show the memory the process
really keeps (the steering plugin learns a per-worker baseline from them:
:class:`~scheduler_plugins.policy.memory.MemoryBaseline`). Policy ``daskflow.recorder.malloc-trim``: ``auto``
(trim only after tasks that peaked above 1 MiB since the last trim: ~0.1-0.7 ms
per trim, and tiny tasks - where throughput matters - never pay it), ``always``
or ``never``. Unless ``never``, the plugin also fixes glibc's trim threshold
in workers started without a nanny, as the nanny does through
``MALLOC_TRIM_THRESHOLD_`` (see :func:`_fix_malloc_thresholds`). Inside an
arbitrary process (an in-process test cluster) pages cached by glibc before
the plugin started can still be reused unseen; worker processes start clean.

Tiny tasks: a key prefix of sub-millisecond tasks is measured 1 in
``daskflow.recorder.tiny-tasks.sample-every`` after the first ``after``
(:class:`~scheduler_plugins.sampling.TinyTaskSampler`, decided when the task
starts, so a skipped one costs no ``/proc`` reading); a measured task's
metadata says its ``sample_weight``, a skipped one has only the flat
``SAMPLE_WEIGHT_METADATA_KEY`` = 0 (no row, no learning sample; a flat float
keeps the scheduler's metadata dict out of the cyclic garbage collector).

Fallback: where ``/proc/self/clear_refs`` is absent or not writable (macOS,
Windows, locked-down containers) the plugin records ``RSS at finish - RSS at
start`` from psutil and flags it with ``peak_memory_method = "rss-end"``; this
misses memory freed before the task returned, so it is a lower bound.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from dask.utils import key_split
from distributed.diagnostics.plugin import WorkerPlugin

from daskflow.contracts import METADATA_KEY, PEAK_MEMORY_PLUGIN, SAMPLE_WEIGHT_METADATA_KEY
from scheduler_plugins import compat
from scheduler_plugins.sampling import TinyTaskSampler, sampler_from_settings

logger = logging.getLogger(__name__)

WORKER_PLUGIN_NAME = PEAK_MEMORY_PLUGIN
# METADATA_KEY: the task's metadata["daskflow"] = {"peak_memory_bytes": ..., ...}

_CLEAR_REFS = "/proc/self/clear_refs"
TRIM_AFTER_PEAK_BYTES = 2**20
_STATUS = "/proc/self/status"
_STATM = "/proc/self/statm"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_status_bytes(data: bytes, *fields: str) -> dict[str, int]:
    """Values of ``/proc/<pid>/status`` fields such as ``VmHWM`` in bytes (missing fields omitted).

    >>> parse_status_bytes(b"Name:\\tx\\nVmHWM:\\t  2048 kB\\nVmRSS:\\t  1024 kB\\n", "VmRSS", "VmHWM", "VmSwap")
    {'VmRSS': 1048576, 'VmHWM': 2097152}
    """
    found: dict[str, int] = {}
    for field in fields:
        tag = b"\n" + field.encode("ascii") + b":"
        at = data.find(tag)
        if at < 0:
            continue
        end = data.find(b"\n", at + len(tag))
        parts = data[at + len(tag): end if end >= 0 else None].split()
        if parts:
            found[field] = int(parts[0]) * 1024  # reported in kB
    return found


class ProcMemory:
    """This process's RSS and resident high-water mark through descriptors opened once.

    One ``pread`` per reading instead of open/read/close: the per-task hot path
    of the worker's event loop. ``reset_mark`` returns ``False`` where
    ``clear_refs`` is not writable (then :attr:`has_mark` is ``False``).

    ``VmHWM`` costs ~30 us of CPU per reading on a busy worker (~7 us idle);
    ``getrusage``'s ``ru_maxrss`` was tried and measured no cheaper there (it
    also sums every thread's CPU time) and cannot always be reset (Linux folds
    marks into it at ``exec``), so it is not used.

    >>> proc = ProcMemory()                    # doctest: +SKIP
    >>> proc.rss_bytes() <= proc.mark_bytes()  # doctest: +SKIP
    True
    """

    def __init__(self) -> None:
        self._status = self._open(_STATUS, os.O_RDONLY)
        self._statm = self._open(_STATM, os.O_RDONLY)
        self._clear_refs = self._open(_CLEAR_REFS, os.O_WRONLY)
        self.has_mark = self._status is not None and self._clear_refs is not None and self.reset_mark() and self.mark_bytes() is not None

    @staticmethod
    def _open(path: str, flags: int) -> int | None:
        try:
            return os.open(path, flags)
        except OSError:
            return None

    def rss_bytes(self) -> int:
        if self._statm is not None:
            return int(os.pread(self._statm, 256, 0).split()[1]) * _PAGE_BYTES
        return _rss_bytes()

    def mark_bytes(self) -> int | None:
        """The resident high-water mark in bytes; ``None`` where the kernel does not report it."""
        if self._status is None:
            return None
        return parse_status_bytes(os.pread(self._status, 16384, 0), "VmHWM").get("VmHWM")

    def reset_mark(self) -> bool:
        """Reset the mark to the current RSS."""
        if self._clear_refs is None:
            return False
        try:
            os.write(self._clear_refs, b"5")
            return True
        except OSError:
            return False

    def close(self) -> None:
        for fd in (self._status, self._statm, self._clear_refs):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._status = self._statm = self._clear_refs = None
        self.has_mark = False


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def _load_malloc_trim() -> Any:
    """glibc's ``malloc_trim`` or ``None`` (musl, macOS, Windows)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _fix_malloc_thresholds() -> None:
    """Turn off glibc's dynamic mmap threshold, as Dask's nanny does for its workers.

    Nanny-started workers get ``MALLOC_TRIM_THRESHOLD_=65536`` in their
    environment (``distributed.nanny.pre-spawn-environ``); a fixed threshold
    disables glibc's dynamic mmap threshold, so large buffers are mmapped and
    returned on free, and a later task cannot silently reuse them. Workers
    started without a nanny (in-process clusters) get the same setting here.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-1, 65536)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def high_water_mark_supported() -> bool:
    """Whether this process can reset and read VmHWM (Linux with a writable clear_refs)."""
    proc = ProcMemory()
    try:
        return proc.has_mark
    finally:
        proc.close()


class PeakMemoryPlugin(WorkerPlugin):
    """Worker plugin putting ``peak_memory_bytes`` into each finished task's metadata.

    Registered on every worker by the recorder (``scheduler_plugins.recorder``);
    it can also be registered by hand::

        client.register_plugin(PeakMemoryPlugin(), name=PEAK_MEMORY_PLUGIN)  # daskflow.contracts
    """

    name = WORKER_PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.worker: Any = None
        self.method = "vmhwm"
        # key -> RSS (bytes) when the task started executing
        self._start_rss: dict[Any, int] = {}
        self._max_concurrent: dict[Any, int] = {}
        self.error_count = 0
        self.trim_mode = "auto"
        self.trim_count = 0
        self._malloc_trim: Any = None
        self._peak_since_trim = 0
        self._proc: ProcMemory | None = None
        self._sampler = TinyTaskSampler()
        self._weights: dict[Any, tuple[str, float, float]] = {}  # key -> (prefix, sample weight, monotonic start)
        self._unmeasured: set[Any] = set()  # running tasks the sampler skipped (they still share the process)

    def __getstate__(self) -> dict:
        return {}  # stateless on the wire; setup() decides the method on the worker

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self._proc = ProcMemory()
        try:
            self._sampler = sampler_from_settings()
        except Exception:  # noqa: BLE001 - daskflow config unavailable on this worker: the defaults
            self._sampler = TinyTaskSampler()
        self.method = "vmhwm" if self._proc.has_mark else "rss-end"
        try:
            from daskflow import config

            self.trim_mode = str(config.get("recorder.malloc-trim"))
        except Exception:  # noqa: BLE001 - daskflow config unavailable on this worker
            self.trim_mode = "auto"
        self._malloc_trim = _load_malloc_trim() if self.trim_mode != "never" else None
        if self._malloc_trim is not None and "MALLOC_TRIM_THRESHOLD_" not in os.environ:
            _fix_malloc_thresholds()
        if self.method != "vmhwm":
            logger.warning(
                "daskflow: /proc/self/clear_refs is not usable on worker %s; per-task peak memory "
                "falls back to RSS at finish minus RSS at start (a lower bound, flagged 'rss-end')",
                getattr(worker, "address", "?"),
            )

    def teardown(self, worker: Any) -> None:
        self._start_rss.clear()
        self._max_concurrent.clear()
        self._weights.clear()
        self._unmeasured.clear()
        if self._proc is not None:
            self._proc.close()
            self._proc = None

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        try:
            if finish == "executing":
                self._task_started(key)
            elif start in ("executing", "long-running") and finish != "long-running":  # seceded tasks keep running
                self._task_stopped(key, finish)
        except Exception:
            self.error_count += 1
            if self.error_count == 1:
                logger.warning("daskflow: peak-memory measurement failed for %r", key, exc_info=True)

    def _maybe_trim(self) -> None:
        """Give freed heap pages back to the OS so the start baseline counts only live memory."""
        if self._malloc_trim is None:
            return
        if self.trim_mode == "always" or self._peak_since_trim >= TRIM_AFTER_PEAK_BYTES:
            self._malloc_trim(0)
            self.trim_count += 1
            self._peak_since_trim = 0

    def _task_started(self, key: Any) -> None:
        proc = self._proc
        if proc is None:
            return
        prefix = key_split(key)
        weight = self._sampler.decide(prefix)
        self._weights[key] = (prefix, weight, time.monotonic())
        idle = not self._start_rss and not self._unmeasured
        if weight == 0.0:  # a tiny task the sampler skips: no /proc reading (it still shares the process)
            self._unmeasured.add(key)
        else:
            if idle:
                self._maybe_trim()
            rss = proc.rss_bytes()
            # Reset only when no other task runs: a reset would hide their peaks so far.
            if self.method == "vmhwm" and idle:
                proc.reset_mark()
            self._start_rss[key] = rss
        running = len(self._start_rss) + len(self._unmeasured)
        if running > 1:
            for other in self._start_rss:
                self._max_concurrent[other] = max(self._max_concurrent.get(other, 1), running)

    def _task_stopped(self, key: Any, finish: str) -> None:
        start_rss = self._start_rss.pop(key, None)
        concurrent = self._max_concurrent.pop(key, 1)
        prefix, weight, started_at = self._weights.pop(key, ("", 1.0, None))
        if started_at is not None:
            elapsed_s = time.monotonic() - started_at  # >= the compute time: only a long one needs the startstops
            if elapsed_s >= self._sampler.tiny_s and finish == "memory":  # the compute time, not the loop's delays
                computed_s = compat.task_compute_s(self.worker, key)
                elapsed_s = computed_s if computed_s is not None else elapsed_s
            self._sampler.finished(prefix, elapsed_s)
        if key in self._unmeasured:
            self._unmeasured.discard(key)
            if finish == "memory":
                compat.set_task_metadata(self.worker, key, SAMPLE_WEIGHT_METADATA_KEY, 0.0)
            return
        if start_rss is None or finish != "memory":
            return
        proc = self._proc
        if proc is None:
            return
        mark = proc.mark_bytes() if self.method == "vmhwm" else None
        peak = mark if mark is not None else proc.rss_bytes()
        peak_memory_bytes = max(0, int(peak) - int(start_rss))
        self._peak_since_trim = max(self._peak_since_trim, peak_memory_bytes)
        if not self._start_rss and not self._unmeasured:  # idle now: give freed pages back (heartbeats show what it keeps)
            self._maybe_trim()
        shared = concurrent > 1  # the process's mark then holds the other tasks' memory too: not this task's peak
        compat.set_task_metadata(self.worker, key, METADATA_KEY, {
            "peak_memory_bytes": None if shared else peak_memory_bytes,
            "shared_peak_memory_bytes": peak_memory_bytes if shared else None,
            "peak_memory_method": self.method,
            "start_rss_bytes": int(start_rss),
            "concurrent_tasks": int(concurrent),
            "sample_weight": weight,
        })  # fmt: skip
