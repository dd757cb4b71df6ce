"""A bounded, off-the-critical-path sender: the run loop never waits on an endpoint.

Design note
-----------
The run loop calls :meth:`BackgroundEmitter.submit` with a *thunk* (a
zero-argument callable that builds the event, or a list of events); it goes into a bounded queue
and returns at once. One daemon thread takes thunks in order, builds each
event and hands it to ``send``. A failing ``send`` is retried a bounded number
of times with a growing pause; an event that still fails is dropped. The first
drop (failed endpoint, full queue, or an error building an event) raises ONE
:class:`LineageExportWarning` for the emitter's lifetime; after a drop the
endpoint is assumed down and later events get a single attempt, so a dead
endpoint costs one try per event, off the run's path. :meth:`close` flushes
what is queued within a timeout and abandons the rest.

State: ``queue`` (thunks, bounded), ``dropped`` (count), ``sent`` (count),
``_warned`` (whether the one warning was raised), ``_degraded`` (after a drop).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_STOP = object()


class LineageExportWarning(RuntimeWarning):
    """Lineage events could not be delivered (the run itself is unaffected)."""


class BackgroundEmitter:
    """Send events built by thunks on a daemon thread; bounded queue, bounded retries, one warning.

    >>> sent = []
    >>> emitter = BackgroundEmitter(sent.append, name="doc")
    >>> emitter.submit(lambda: {"eventType": "START"})
    >>> emitter.close(timeout_s=5.0)
    True
    >>> sent
    [{'eventType': 'START'}]
    """

    def __init__(
        self,
        send: Callable[[Any], Any],
        *,
        name: str = "lineage",
        queue_size: int = 10_000,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        describe: str = "the lineage endpoint",
    ):
        self.send = send
        self.name = name
        self.describe = describe
        self.max_attempts = max(1, int(max_attempts))
        self.retry_backoff_s = max(0.0, float(retry_backoff_s))
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self.dropped = 0
        self.sent = 0
        self._warned = False
        self._degraded = False
        self._closed = threading.Event()  # set by close(): stop sleeping between retries
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name=f"daskflow-{name}-emitter", daemon=True)
        self._thread.start()

    # -- run-loop side ---------------------------------------------------------
    def submit(self, thunk: Callable[[], Any]) -> None:
        """Queue one event; never blocks, never raises (a full queue drops the event)."""
        if self._closed.is_set():
            self._drop(f"{self.name} exporter already closed")
            return
        try:
            self.queue.put_nowait(thunk)
        except queue.Full:
            self._drop(f"the queue of {self.queue.maxsize} events is full ({self.describe} is slower than the run)")

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush queued events for at most ``timeout_s``; True when everything queued was handled."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            self.queue.put(_STOP, timeout=max(0.0, timeout_s))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._closed.set()
        flushed = not self._thread.is_alive()
        if not flushed:
            left = self.queue.qsize()
            self._drop(f"close() timed out after {timeout_s:g}s with {left} event(s) unsent", count=left)
        if self.dropped:
            logger.info("daskflow %s export: %d event(s) sent, %d dropped", self.name, self.sent, self.dropped)
        return flushed

    # -- background side -------------------------------------------------------
    def _drain(self) -> None:
        while True:
            thunk = self.queue.get()
            if thunk is _STOP or self._closed.is_set():  # closed: close() timed out and counted the rest
                return
            try:
                event = thunk()
            except Exception as exc:
                logger.debug("daskflow %s export: building an event failed", self.name, exc_info=True)
                self._drop(f"building an event failed: {type(exc).__name__}: {exc}")
                continue
            for item in event if isinstance(event, list) else [event]:  # a thunk may build several events
                if item is not None:
                    self._deliver(item)

    def _deliver(self, event: Any) -> None:
        attempts = 1 if self._degraded else self.max_attempts
        for attempt in range(attempts):
            try:
                self.send(event)
            except Exception as exc:  # noqa: BLE001 - any transport error: retry, then drop
                if attempt + 1 < attempts and not self._closed.wait(self.retry_backoff_s * (2 ** attempt)):
                    continue
                self._degraded = True
                self._drop(f"sending to {self.describe} failed after {attempt + 1} attempt(s): "
                           f"{type(exc).__name__}: {exc}")
                return
            else:
                self._degraded = False
                with self._lock:
                    self.sent += 1
                return

    def _drop(self, why: str, count: int = 1) -> None:
        with self._lock:
            self.dropped += count
            first = not self._warned
            self._warned = True
        if first:
            warnings.warn(
                f"daskflow {self.name} export: {why}; dropping events (the run is unaffected). "
                f"Fix: check the endpoint, or its settings in daskflow.openlineage.* / the OpenLineage "
                f"client's configuration (OPENLINEAGE_URL, openlineage.yml)",
                LineageExportWarning, stacklevel=2)
        else:
            logger.debug("daskflow %s export: dropped an event: %s", self.name, why)
