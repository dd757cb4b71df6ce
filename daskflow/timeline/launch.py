"""Launching claimed runs in launcher processes: ``python -m daskflow.timeline.launch SPEC``.

Design note
-----------
The daemon never runs a pipeline in its own process: each claimed launch is a
child process that calls :func:`daskflow.materialize` with the claim's
pre-generated ``run_id`` and tags, on the cluster address (or the embedded
cluster). :class:`LauncherPool` bounds how many run at once and is polled from
the tick loop (``Popen.poll``), so a long run never blocks ticking. A launcher
outlives a SIGKILLed daemon and finishes its run; the restarted daemon finds
the run in the catalog by its run id.

Exit codes of the launcher: 0 the run succeeded, 1 it ran and failed, 3 a run
with this id already exists (launched before; nothing done), 2 it could not
start (load/plan error: one ``error: ...`` line, the last line of its log),
4 it was canceled.

Cancel (``daskflow runs cancel``): SIGTERM to the launcher raises
:class:`RunCanceled` in its main thread, wherever ``materialize`` waits; the
run loop reports the run's end, leaving ``client_for`` releases the run's
futures (the scheduler cancels their tasks; an embedded cluster is closed),
and the launcher marks the catalog run ``canceled``. A launcher canceled
before its run started records the run as ``canceled`` so it never starts.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import signal
import subprocess
import sys
import types
from typing import Any

from daskflow.timeline.store import Launch

__all__ = ["EXIT_ALREADY_STARTED", "EXIT_CANCELED", "EXIT_FAILED_RUN", "EXIT_LAUNCH_ERROR", "LauncherPool",
           "RunCanceled", "launch_spec", "run_launch"]

EXIT_FAILED_RUN = 1
EXIT_LAUNCH_ERROR = 2
EXIT_ALREADY_STARTED = 3
EXIT_CANCELED = 4


class RunCanceled(BaseException):
    """Raised in a launcher's main thread by SIGTERM (``daskflow runs cancel``)."""


def launch_spec(launch: Launch, catalog_path: str, address: str | None) -> dict[str, Any]:
    """The JSON document a launcher process receives."""
    return {"run_id": launch.run_id, "pipeline": launch.pipeline, "selection": launch.selection,
            "partitions": launch.partitions, "tags": dict(launch.tags), "catalog": catalog_path,
            "address": address}


class LauncherPool:
    """At most ``max_processes`` launcher processes; started and reaped without blocking."""

    def __init__(self, max_processes: int, catalog_path: str, address: str | None, log_dir: pathlib.Path):
        self.max_processes = max(1, int(max_processes))
        self.catalog_path, self.address, self.log_dir = str(catalog_path), address, pathlib.Path(log_dir)
        self.in_flight: dict[str, subprocess.Popen] = {}  # run_id -> launcher process

    def has_capacity(self) -> bool:
        return len(self.in_flight) < self.max_processes

    def free_slots(self) -> int:
        return max(0, self.max_processes - len(self.in_flight))

    def log_path(self, run_id: str) -> pathlib.Path:
        return self.log_dir / f"{run_id}.log"

    def start(self, launch: Launch) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        document = json.dumps(launch_spec(launch, self.catalog_path, self.address))
        with open(self.log_path(launch.run_id), "ab") as log:
            # A new session: Ctrl-C in the daemon's terminal does not kill runs mid-write.
            self.in_flight[launch.run_id] = subprocess.Popen(
                [sys.executable, "-m", "daskflow.timeline.launch", document],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def reap(self) -> list[tuple[str, int, str]]:
        """Finished launchers: ``(run_id, exit code, last log line)``."""
        done = []
        for run_id, process in list(self.in_flight.items()):
            code = process.poll()
            if code is not None:
                del self.in_flight[run_id]
                done.append((run_id, code, self.last_line(run_id)))
        return done

    def last_line(self, run_id: str) -> str:
        try:
            lines = self.log_path(run_id).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""


def _materialize(spec: dict[str, Any]):
    from daskflow import execution

    kwargs = dict(selection=spec["selection"], partitions=spec["partitions"], address=spec["address"],
                  catalog=spec["catalog"], tags=spec["tags"], progress=False)
    if "run_id" in inspect.signature(execution.materialize).parameters:
        return execution.materialize(spec["pipeline"], run_id=spec["run_id"], **kwargs)
    # Compatibility until materialize(run_id=...) exists: pin the one uuid4() it draws
    # in this single-run process. Checked below, so a refactor cannot make it silent.
    fixed = types.SimpleNamespace(hex=spec["run_id"])
    original = execution.uuid
    execution.uuid = types.SimpleNamespace(uuid4=lambda: fixed)
    try:
        return execution.materialize(spec["pipeline"], **kwargs)
    finally:
        execution.uuid = original


def run_launch(spec: dict[str, Any]) -> int:
    """Run one claimed launch; returns the launcher's exit code (see the module note)."""
    from daskflow.catalog import Catalog
    from daskflow.errors import DaskflowError

    catalog = Catalog(spec["catalog"])
    if catalog.get_run(spec["run_id"]) is not None:
        print(f"run {spec['run_id']} already started; nothing to do")
        return EXIT_ALREADY_STARTED
    try:
        result = _materialize(spec)
    except RunCanceled:
        _record_canceled(catalog, spec)
        print(f"run {spec['run_id']}: canceled", flush=True)
        return EXIT_CANCELED
    except DaskflowError as exc:
        if catalog.get_run(spec["run_id"]) is not None and "already exists" in str(exc):
            print(f"run {spec['run_id']} was started by another launcher; nothing to do")
            return EXIT_ALREADY_STARTED
        print("error: " + " ".join(str(exc).split()), flush=True)
        return EXIT_LAUNCH_ERROR
    if result.run_id != spec["run_id"]:
        print(f"error: materialize ran as run {result.run_id}, not the claimed {spec['run_id']}; "
              "materialize(run_id=...) is needed for exactly-once launches", flush=True)
        return EXIT_LAUNCH_ERROR
    print(f"run {result.run_id}: {result.status}", flush=True)
    return 0 if result.ok else EXIT_FAILED_RUN


def _record_canceled(catalog, spec: dict[str, Any]) -> None:
    from daskflow.errors import CatalogError

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second cancel must not interrupt the bookkeeping
    if catalog.get_run(spec["run_id"]) is None:
        try:  # never started: record it canceled, so no later launcher starts it
            catalog.start_run(spec["run_id"], pipeline=spec["pipeline"], selection=spec["selection"],
                              tags=spec["tags"], status="canceled")
        except CatalogError:
            pass  # it started meanwhile
    catalog.finish_run(spec["run_id"], "canceled")


def _raise_canceled(signum, frame) -> None:
    raise RunCanceled()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m daskflow.timeline.launch SPEC_JSON", file=sys.stderr)
        return EXIT_LAUNCH_ERROR
    signal.signal(signal.SIGTERM, _raise_canceled)
    try:
        return run_launch(json.loads(argv[0]))
    except RunCanceled:
        return EXIT_CANCELED
    except Exception as exc:  # one line, never a traceback: the daemon records the last line
        print(f"error: launcher failed with {type(exc).__name__}: {' '.join(str(exc).split())}", flush=True)
        return EXIT_LAUNCH_ERROR


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
