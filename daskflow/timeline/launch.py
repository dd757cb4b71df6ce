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

Warm launchers (``daskflow.timeline.launcher-reuse``, the default): a
launcher process serves one run after another (``--serve``: one JSON request
per line on its stdin, one result line per run on a pipe of its own), so the
Python start-up and the imports are paid once per slot, not once per run.
Exactly-once does not change: it rests on the catalog's ``runs`` primary key
and on the queue row holding the launcher's pid while the run runs. A warm
launcher whose stdin closes (its daemon exited or was SIGKILLed) finishes the
run it has and exits, so "launcher alive" still means "its run may be
running" to a restarted daemon. Each run still writes its own log file.

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

import contextlib
import inspect
import json
import os
import pathlib
import signal
import subprocess
import sys
import types
from typing import Any, BinaryIO

from daskflow.timeline.store import Launch

__all__ = ["EXIT_ALREADY_STARTED", "EXIT_CANCELED", "EXIT_FAILED_RUN", "EXIT_LAUNCH_ERROR", "LauncherPool",
           "RunCanceled", "WarmLauncher", "launch_spec", "run_launch", "serve"]

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


class WarmLauncher:
    """One ``--serve`` launcher process: a request per stdin line, a result per line on its result pipe."""

    def __init__(self, stderr_path: pathlib.Path):
        read_fd, write_fd = os.pipe()
        try:
            with open(stderr_path, "ab") as stderr:  # output between runs (start-up failures)
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "daskflow.timeline.launch", "--serve", str(write_fd)],
                    stdin=subprocess.PIPE, stdout=stderr, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                    start_new_session=True)
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._results: BinaryIO = os.fdopen(read_fd, "rb", buffering=0)
        self._buffer = b""
        self.run_id: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def submit(self, spec: dict[str, Any], log_path: pathlib.Path) -> bool:
        """Hand one run to this launcher; False when it is gone (the caller starts another)."""
        try:
            self.process.stdin.write((json.dumps({"spec": spec, "log": str(log_path)}) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        self.run_id = spec["run_id"]
        return True

    def result(self) -> int | None:
        """The exit code of its current run, once the launcher reported it (never blocks)."""
        with contextlib.suppress(BlockingIOError, OSError):
            chunk = self._results.read()
            if chunk:
                self._buffer += chunk
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.run_id = None
        return int(json.loads(line)["code"])

    def close(self) -> None:
        """No more runs: it exits after the run it has (if any)."""
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        with contextlib.suppress(OSError):
            self._results.close()


class LauncherPool:
    """At most ``max_processes`` launcher processes; started and reaped without blocking.

    ``reuse`` (default ``daskflow.timeline.launcher-reuse``): keep launchers warm
    between runs (see the module note); otherwise a new process per run.
    """

    def __init__(self, max_processes: int, catalog_path: str, address: str | None, log_dir: pathlib.Path,
                 reuse: bool | None = None):
        from daskflow import config

        self.max_processes = max(1, int(max_processes))
        self.catalog_path, self.address, self.log_dir = str(catalog_path), address, pathlib.Path(log_dir)
        self.reuse = bool(config.get("timeline.launcher-reuse")) if reuse is None else bool(reuse)
        self.in_flight: dict[str, Any] = {}  # run_id -> launcher process (Popen or WarmLauncher)
        self.idle: list[WarmLauncher] = []   # warm launchers waiting for a run

    def has_capacity(self) -> bool:
        return len(self.in_flight) < self.max_processes

    def free_slots(self) -> int:
        return max(0, self.max_processes - len(self.in_flight))

    def log_path(self, run_id: str) -> pathlib.Path:
        return self.log_dir / f"{run_id}.log"

    def start(self, launch: Launch) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        spec = launch_spec(launch, self.catalog_path, self.address)
        if self.reuse:
            self.in_flight[launch.run_id] = self._warm_launcher(spec)
            return
        with open(self.log_path(launch.run_id), "ab") as log:
            # A new session: Ctrl-C in the daemon's terminal does not kill runs mid-write.
            self.in_flight[launch.run_id] = subprocess.Popen(
                [sys.executable, "-m", "daskflow.timeline.launch", json.dumps(spec)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _warm_launcher(self, spec: dict[str, Any]) -> WarmLauncher:
        while self.idle:
            launcher = self.idle.pop()
            if launcher.poll() is None and launcher.submit(spec, self.log_path(spec["run_id"])):
                return launcher
            launcher.close()
        launcher = WarmLauncher(self.log_dir / "launchers.log")
        if not launcher.submit(spec, self.log_path(spec["run_id"])):  # died at once: reap() reports it
            launcher.run_id = spec["run_id"]
        return launcher

    def reap(self) -> list[tuple[str, int, str]]:
        """Finished launches: ``(run_id, exit code, last log line)``."""
        done = []
        for run_id, process in list(self.in_flight.items()):
            code = process.result() if isinstance(process, WarmLauncher) else None
            if code is not None:
                self.idle.append(process)
            else:
                code = process.poll()  # a one-run launcher ended, or a warm one died mid-run
                if code is not None and isinstance(process, WarmLauncher):
                    late = process.result()  # it reported before exiting
                    code = code if late is None else late
                    process.close()
            if code is not None:
                del self.in_flight[run_id]
                done.append((run_id, code, self.last_line(run_id)))
        return done

    def close(self) -> None:
        """Let warm launchers exit once their runs end (runs in flight are not interrupted)."""
        for launcher in [*self.idle, *(p for p in self.in_flight.values() if isinstance(p, WarmLauncher))]:
            launcher.close()
        self.idle = []

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


def _launch_guarded(spec: dict[str, Any]) -> int:
    try:
        return run_launch(spec)
    except RunCanceled:
        return EXIT_CANCELED
    except Exception as exc:  # one line, never a traceback: the daemon records the last line
        print(f"error: launcher failed with {type(exc).__name__}: {' '.join(str(exc).split())}", flush=True)
        return EXIT_LAUNCH_ERROR


def serve(result_fd: int) -> int:
    """A warm launcher: run each request read from stdin, report its exit code on ``result_fd``.

    Each run's output goes to its own log file (stdout and stderr redirected
    at the file-descriptor level for the run). Returns at EOF on stdin (the
    pool is gone), or on a cancel that arrives between runs.
    """
    import daskflow.execution  # noqa: F401 - the imports are what a warm launcher saves

    results = os.fdopen(result_fd, "w", buffering=1)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            with open(request["log"], "ab") as log:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
            signal.signal(signal.SIGTERM, _raise_canceled)  # a canceled run's bookkeeping ignores SIGTERM
            code = _launch_guarded(request["spec"])
            sys.stdout.flush()
            sys.stderr.flush()
            if code == EXIT_CANCELED:  # reported by the exit code, as a one-run launcher does: a canceled
                return code            # run may leave a half-closed client, so the next run starts afresh
            try:
                results.write(json.dumps({"run_id": request["spec"]["run_id"], "code": code}) + "\n")
            except OSError:  # the pool is gone: nobody to report to
                return 0
    except RunCanceled:  # a cancel that missed its run (it had just ended): stop serving
        return EXIT_CANCELED
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _raise_canceled)
    if len(argv) == 2 and argv[0] == "--serve":
        return serve(int(argv[1]))
    if len(argv) != 1:
        print("usage: python -m daskflow.timeline.launch SPEC_JSON | --serve RESULT_FD", file=sys.stderr)
        return EXIT_LAUNCH_ERROR
    return _launch_guarded(json.loads(argv[0]))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
