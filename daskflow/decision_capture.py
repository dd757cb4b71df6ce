"""Capturing a run's steering decisions on the client, for the durable audit.

Design note
-----------
The steering plugin logs every decision on
:data:`~daskflow.contracts.STEERING_TOPIC` and keeps the newest ones in a
bounded deque; both live in the scheduler and die with it (an embedded
cluster stops before ``run_finished``). So while a run is open the client
subscribes to the topic (one subscription per client, shared by the runs
open on it) and buffers the events of each open run, under a lock, because
the handler runs on the client's event-loop thread. When the run closes —
still inside ``client_for`` — the plugin's deque is merged in
(:func:`daskflow.explain.fetch_decisions`), covering what was logged before
the subscription reached the scheduler; duplicates are dropped. Graph-wide
events without a run id (a ``fallback``) go to every run open when they
arrive; from the deque only the run's own events are taken.

State (plain data): per open run id, its events in arrival order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from daskflow.contracts import STEERING_TOPIC, DecisionEvent

__all__ = ["DecisionCapture", "capture_for"]

logger = logging.getLogger(__name__)


def _identity(event: Mapping[str, Any]) -> tuple:
    return (event.get("key"), event.get("action"), event.get("time"), event.get("worker"), event.get("reason"))


class DecisionCapture:
    """Buffers one client's steering events per open run (see the module note)."""

    def __init__(self, client: Any):
        self.client = client
        self.lock = threading.Lock()
        self.runs: dict[str, list[DecisionEvent]] = {}

    def handle(self, event: tuple[float, Any]) -> None:
        message = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if not isinstance(message, Mapping):
            return
        with self.lock:
            run_id = message.get("run_id")
            targets = [run_id] if run_id in self.runs else (list(self.runs) if run_id is None else [])
            for target in targets:
                self.runs[target].append(dict(message))  # type: ignore[arg-type]

    def open(self, run_id: str) -> None:
        with self.lock:
            self.runs.setdefault(run_id, [])

    def close(self, run_id: str, fetch: bool = True) -> list[DecisionEvent]:
        """The run's events, the plugin's deque merged in (``fetch``), oldest first; forgets the run."""
        from daskflow.explain import fetch_decisions

        stored: list[DecisionEvent] = []
        if fetch:
            try:
                stored = [d for d in fetch_decisions(self.client, run_id=run_id) if d.get("run_id") == run_id]
            except Exception:  # noqa: BLE001 - scheduler gone: the subscribed events are what there is
                stored = []
        with self.lock:
            events = self.runs.pop(run_id, [])
            last = not self.runs
        seen, merged = set(), []
        for event in [*stored, *events]:
            identity = _identity(event)
            if identity not in seen:
                seen.add(identity)
                merged.append(event)
        merged.sort(key=lambda e: float(e.get("time") or 0.0))
        if last:
            _release(self)
        return merged


_CAPTURES: dict[str, DecisionCapture] = {}
_CAPTURES_LOCK = threading.Lock()


def capture_for(client: Any, run_id: str) -> DecisionCapture:
    """The client's capture with ``run_id`` open, subscribed to the steering topic (once per client)."""
    with _CAPTURES_LOCK:
        capture = _CAPTURES.get(client.id)
        if capture is None:
            capture = _CAPTURES[client.id] = DecisionCapture(client)
            client.subscribe_topic(STEERING_TOPIC, capture.handle)
        capture.open(run_id)
        return capture


def _release(capture: DecisionCapture) -> None:
    with _CAPTURES_LOCK:
        with capture.lock:
            idle = not capture.runs
        if _CAPTURES.get(capture.client.id) is capture and idle:
            _CAPTURES.pop(capture.client.id, None)
            try:
                capture.client.unsubscribe_topic(STEERING_TOPIC)
            except Exception:
                logger.debug("daskflow: unsubscribing %s failed", STEERING_TOPIC, exc_info=True)
