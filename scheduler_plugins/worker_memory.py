"""Per-task peak memory, measured on the worker and shipped in the task's finish metadata.

Design note
-----------
Linux keeps a per-process resident-set high-water mark (``VmHWM`` in
``/proc/self/status``) that can be reset by writing ``5`` to
``/proc/self/clear_refs``. :class:`PeakMemoryPlugin` resets it when a task
starts executing and reads it when the task finishes, so it sees the true peak
of a task even when the memory lives only for milliseconds (a periodic RSS
sampler misses those). It costs two small ``/proc`` reads/writes per task.

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

Fallback: where ``/proc/self/clear_refs`` is absent or not writable (macOS,
Windows, locked-down containers) the plugin records ``RSS at finish - RSS at
start`` from psutil and flags it with ``peak_memory_method = "rss-end"``; this
misses memory freed before the task returned, so it is a lower bound.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from daskflow.contracts import METADATA_KEY, PEAK_MEMORY_PLUGIN
from scheduler_plugins import compat

logger = logging.getLogger(__name__)

WORKER_PLUGIN_NAME = PEAK_MEMORY_PLUGIN
# METADATA_KEY: the task's metadata["daskflow"] = {"peak_memory_bytes": ..., ...}

_CLEAR_REFS = "/proc/self/clear_refs"
#: a high-water mark this close to the current RSS is not reset before a task (a peak error below the noise floor)
HWM_RESET_SLACK_BYTES = 64 * 1024
TRIM_AFTER_PEAK_BYTES = 2**20
_STATUS = "/proc/self/status"


def read_proc_status_bytes(*fields: str) -> dict[str, int]:
    """Values of ``/proc/self/status`` fields such as ``VmHWM`` in bytes (missing fields omitted).

    Called twice per task on the worker: one ``os.read`` and a byte search (~8 us)
    instead of a line-by-line file object (~30 us).
    """
    fd = os.open(_STATUS, os.O_RDONLY)
    try:
        data = os.read(fd, 16384)
    finally:
        os.close(fd)
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


def reset_high_water_mark() -> bool:
    """Reset the process's VmHWM; ``False`` where this is impossible."""
    try:
        fd = os.open(_CLEAR_REFS, os.O_WRONLY)
        try:
            os.write(fd, b"5")
        finally:
            os.close(fd)
        return True
    except OSError:
        return False


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
    try:
        return reset_high_water_mark() and "VmHWM" in read_proc_status_bytes("VmHWM")
    except OSError:
        return False


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

    def __getstate__(self) -> dict:
        return {}  # stateless on the wire; setup() decides the method on the worker

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self.method = "vmhwm" if high_water_mark_supported() else "rss-end"
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
        if not self._start_rss:
            self._maybe_trim()
        if self.method == "vmhwm":
            status = read_proc_status_bytes("VmRSS", "VmHWM")
            rss = status["VmRSS"]
            # Only reset when no other task runs: a reset would hide their peaks so far. A mark
            # already within the noise floor of the current RSS needs no reset (tiny tasks skip it).
            if not self._start_rss and status.get("VmHWM", rss + HWM_RESET_SLACK_BYTES + 1) - rss > HWM_RESET_SLACK_BYTES:
                reset_high_water_mark()
        else:
            rss = _rss_bytes()
        self._start_rss[key] = rss
        running = len(self._start_rss)
        for other in self._start_rss:
            self._max_concurrent[other] = max(self._max_concurrent.get(other, 1), running)

    def _task_stopped(self, key: Any, finish: str) -> None:
        start_rss = self._start_rss.pop(key, None)
        concurrent = self._max_concurrent.pop(key, 1)
        if start_rss is None or finish != "memory":
            return
        if self.method == "vmhwm":
            peak = read_proc_status_bytes("VmHWM")["VmHWM"]
        else:
            peak = _rss_bytes()
        peak_memory_bytes = max(0, int(peak) - int(start_rss))
        self._peak_since_trim = max(self._peak_since_trim, peak_memory_bytes)
        if not self._start_rss:  # idle now: give freed pages back, so heartbeats show what the process really keeps
            self._maybe_trim()
        shared = concurrent > 1  # the process's mark then holds the other tasks' memory too: not this task's peak
        compat.set_task_metadata(self.worker, key, METADATA_KEY, {
            "peak_memory_bytes": None if shared else peak_memory_bytes,
            "shared_peak_memory_bytes": peak_memory_bytes if shared else None,
            "peak_memory_method": self.method,
            "start_rss_bytes": int(start_rss),
            "concurrent_tasks": int(concurrent),
        })  # fmt: skip
