"""Canceling a run of the timeline: ``daskflow runs cancel RUN_ID``.

Design note
-----------
A run that is still **queued** is canceled in the queue (one transaction, so
it cannot be admitted meanwhile) and recorded in the catalog as a
``canceled`` run: the ``runs`` primary key then stops any launcher from ever
starting it. A **running** run is canceled by its launcher process: SIGTERM
makes the launcher cancel the run's futures and mark the run ``canceled``
(:mod:`daskflow.timeline.launch`); this module only sends the signal and
waits (bounded) for the catalog to say so. A run whose launcher is already
gone is marked ``canceled`` directly. Runs started by ``daskflow run`` have no
launcher to signal and are refused with a line saying how to stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from daskflow.catalog import Catalog
from daskflow.errors import DaskflowError
from daskflow.timeline.queue import RunQueue
from daskflow.timeline.store import TimelineStore, _alive

__all__ = ["CancelError", "cancel_run"]


class CancelError(DaskflowError):
    """A run that cannot be canceled (one line naming it and what to do)."""


def cancel_run(run_id: str, catalog: Catalog | str | None = None, wait_s: float = 30.0) -> str:
    """Cancel a queued or running timeline run; returns one line saying what happened."""
    catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    store = TimelineStore(catalog.path)
    queue = RunQueue(store)
    run_id = _resolve(run_id, catalog, store)
    entry = queue.get(run_id)
    if entry is not None and entry.status == "queued" and queue.cancel_queued([run_id]):
        spec = entry.spec
        if catalog.get_run(run_id) is None:
            catalog.start_run(run_id, pipeline=spec.get("pipeline"), selection=spec.get("selection"),
                              tags=spec.get("tags"), status="canceled")
        catalog.finish_run(run_id, "canceled")
        return f"run {run_id}: canceled while queued (it will never start)"
    run = catalog.get_run(run_id)
    if run is not None and run.status != "running":
        raise CancelError(f"run {run_id} already ended ({run.status}); nothing to cancel")
    if entry is None:
        raise CancelError(f"run {run_id} was not launched by the daemon or a backfill, so no launcher can stop it; "
                          "stop its `daskflow run` process (Ctrl-C)")
    if entry.status == "canceled":
        return f"run {run_id}: already canceled"
    if entry.host not in (None, socket.gethostname()):
        raise CancelError(f"run {run_id} runs in launcher pid {entry.launcher_pid} on host {entry.host}; "
                          "run `daskflow runs cancel` there")
    pid = entry.launcher_pid
    if pid is None or not _alive(pid):
        if run is not None:
            catalog.finish_run(run_id, "canceled")
        return f"run {run_id}: its launcher is gone; marked canceled"
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        run = catalog.get_run(run_id)
        if run is not None and run.status != "running":
            return f"run {run_id}: {run.status} (launcher pid {pid} stopped it)"
        if not _alive(pid):
            break
        time.sleep(0.1)
    run = catalog.get_run(run_id)
    status = run.status if run is not None else "not started"
    return f"run {run_id}: cancel sent to launcher pid {pid}; status now {status}"


def _resolve(run_id: str, catalog: Catalog, store: TimelineStore) -> str:
    """A full run id from a unique prefix (of catalog runs or queue rows)."""
    rows = store._query("SELECT run_id FROM runs WHERE run_id LIKE ? UNION SELECT run_id FROM timeline_queue "
                        "WHERE run_id LIKE ? LIMIT 3", (run_id + "%", run_id + "%"))
    matches = sorted({r["run_id"] for r in rows})
    if run_id in matches:
        return run_id
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CancelError(f"no run {run_id!r} in {str(catalog.path)!r} or its run queue; see `daskflow runs`")
    raise CancelError(f"run id prefix {run_id!r} is ambiguous ({', '.join(m[:12] for m in matches)}, ...); "
                      "give more characters")
