"""Launching a daskflow-enabled Dask cluster as real background processes.

Design note. This is a thin wrapper over distributed's own command lines, not
a cluster manager: ``start_cluster`` runs ``dask scheduler --preload
scheduler_plugins.preload`` and N ``dask worker ADDRESS`` processes (through
``python -m distributed.cli.dask_*`` so the same interpreter is used), each in
its own session so they outlive the CLI call, with their logs under
``<home>/cluster/``. It waits until the scheduler wrote its scheduler file and
every worker joined (with a deadline; a process that exits early or a missed
deadline raises :class:`~daskflow.errors.ClusterError` with the log tail), then
writes the cluster file (``daskflow.connection.cluster_file()``) atomically.

State is plain data: the cluster file is the only record of what was started
(address, dashboard link, pids, TLS paths). ``stop_cluster`` signals exactly
those pids (and the worker processes their nannies spawned): SIGTERM, then
SIGKILL after a grace period. TLS goes through distributed's ``Security`` and
the ``--tls-*`` options of its CLIs; the client side reads the TLS paths from
the cluster file (``daskflow.connection.security_for``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

import dask.config
import dask.utils

from daskflow import compat, config, connection
from daskflow.contracts import (
    DASHBOARD_EXTENSION,
    RECORDER_PLUGIN,
    SCHEDULER_PRELOAD,
    STEERING_PLUGIN,
)
from daskflow.errors import ClusterError, DaskflowError

DEFAULT_PRELOAD = SCHEDULER_PRELOAD
#: 1 PiB per worker: anything larger is a typo
MAX_MEMORY_BYTES = 2**50


def parse_memory_limit(value: object) -> str:
    """Normalize a memory limit to the string Dask's CLIs take; raise :class:`DaskflowError` if absurd.

    >>> parse_memory_limit("4GB"), parse_memory_limit("auto"), parse_memory_limit("0.5")
    ('4GB', 'auto', '0.5')
    """
    text = str(value).strip()
    if text.lower() == "auto":
        return "auto"
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if math.isnan(number) or number < 0 or math.isinf(number):
            raise DaskflowError(f"memory limit {text!r} must be 'auto', 0 (no limit), a fraction in (0, 1], or a size like '4GB'")
        if 0 <= number <= 1:  # 0: no limit; (0, 1]: a fraction of the machine's memory
            return text
        nbytes = int(number)
    else:
        try:
            nbytes = int(dask.utils.parse_bytes(text))
        except (ValueError, TypeError, OverflowError):
            raise DaskflowError(
                f"memory limit {text[:40]!r} is not a size; expected 'auto', a fraction such as 0.5, or e.g. '4GB'"
            ) from None
    if nbytes < 1 or nbytes > MAX_MEMORY_BYTES:
        raise DaskflowError(
            f"memory limit {text[:40]!r} = {nbytes} bytes is outside 1 byte .. 1 PiB; pass e.g. '4GB' or 'auto'"
        )
    return text


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """PEM files for TLS between scheduler, workers and clients."""

    ca_file: str
    cert: str
    key: str

    @classmethod
    def from_options(cls, ca_file: str | None, cert: str | None, key: str | None) -> TLSFiles | None:
        """``None`` when no option is given; all three or a ClusterError otherwise."""
        given = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
        if not any(given.values()):
            return None
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ClusterError(f"TLS needs all of --tls-ca-file, --tls-cert and --tls-key; missing {', '.join(missing)}")
        for name, value in given.items():
            if not pathlib.Path(value).is_file():
                raise ClusterError(f"TLS file for {name} not found: {value!r}; pass an existing PEM file")
        return cls(*(str(pathlib.Path(v).absolute()) for v in (ca_file, cert, key)))

    def cli_args(self) -> list[str]:
        return ["--tls-ca-file", self.ca_file, "--tls-cert", self.cert, "--tls-key", self.key]

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def security(self):
        """A client-side ``distributed.Security`` requiring encryption."""
        from distributed.security import Security

        return Security(
            tls_ca_file=self.ca_file, tls_client_cert=self.cert, tls_client_key=self.key, require_encryption=True
        )


@dataclasses.dataclass
class ClusterSpec:
    """What ``daskflow cluster up`` starts; ``None`` fields come from ``daskflow.cluster.*`` config."""

    workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    host: str | None = None
    scheduler_port: int | None = None
    dashboard_port: int | None = None
    tls: TLSFiles | None = None
    preload: str | None = None
    start_timeout_s: float | None = None

    def __post_init__(self) -> None:
        settings = {
            "workers": "cluster.workers",
            "threads_per_worker": "cluster.threads-per-worker",
            "memory_limit": "cluster.memory-limit",
            "host": "cluster.host",
            "scheduler_port": "cluster.scheduler-port",
            "dashboard_port": "cluster.dashboard-port",
            "preload": "cluster.preload",
        }
        for field, setting in settings.items():
            if getattr(self, field) is None:
                setattr(self, field, config.get(setting))
        if self.start_timeout_s is None:
            self.start_timeout_s = dask.utils.parse_timedelta(config.get("cluster.start-timeout"))
        if int(self.workers) < 1:
            raise ClusterError(f"--workers must be at least 1, got {self.workers}")
        if int(self.threads_per_worker) < 1:
            raise ClusterError(f"--threads must be at least 1, got {self.threads_per_worker}")
        try:
            self.memory_limit = parse_memory_limit(self.memory_limit)
        except DaskflowError as exc:
            raise ClusterError(f"--memory-limit: {exc}") from None
        for field, value in (("scheduler_port", self.scheduler_port), ("dashboard_port", self.dashboard_port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise ClusterError(f"{field.replace('_', '-')} must be an integer port in 0..65535 (0: any free port), got {value!r}")

    @property
    def protocol(self) -> str:
        return "tls" if self.tls else "tcp"


def python_cli(module: str) -> list[str]:
    """``python -m distributed.cli.<module>`` with this interpreter."""
    return [sys.executable, "-m", f"distributed.cli.{module}"]


def scheduler_command(spec: ClusterSpec, scheduler_file: str | os.PathLike) -> list[str]:
    """The ``dask scheduler`` command line for ``spec``."""
    command = python_cli("dask_scheduler") + [
        "--host", str(spec.host),
        "--port", str(spec.scheduler_port),
        "--protocol", spec.protocol,
        "--dashboard-address", f"{spec.host}:{spec.dashboard_port}",
        "--scheduler-file", str(scheduler_file),
        "--preload", str(spec.preload),
    ]  # fmt: skip
    if spec.tls:
        command += spec.tls.cli_args()
    return command


def worker_command(address: str, spec: ClusterSpec, name: str) -> list[str]:
    """The ``dask worker ADDRESS`` command line for one worker of ``spec``."""
    command = python_cli("dask_worker") + [
        address,
        "--name", name,
        "--host", str(spec.host),
        "--nthreads", str(spec.threads_per_worker),
        "--memory-limit", str(spec.memory_limit),
        "--no-dashboard",
    ]  # fmt: skip
    if spec.tls:
        command += spec.tls.cli_args()
    return command


def child_environment() -> dict[str, str]:
    """Environment for scheduler/worker processes: same daskflow home and ``daskflow.*`` config."""
    env = dict(os.environ)
    env["DASKFLOW_HOME"] = str(config.home())
    inherited = {"daskflow": {**config.effective_config(), "home": str(config.home())}}
    env["DASK_INTERNAL_INHERIT_CONFIG"] = dask.config.serialize(inherited)
    return env


def log_dir() -> pathlib.Path:
    """Where process logs and the scheduler file of ``cluster up`` go: ``<home>/cluster/``."""
    path = config.home() / "cluster"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tail(path: pathlib.Path, n_lines: int = 20) -> str:
    """The last ``n_lines`` of a log file (empty if missing)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n_lines:])


def _reachable_host(host: str, scheduler_address: str) -> str:
    """A host name for links: the bound host, or the scheduler's contact host for wildcard binds."""
    if host and host not in ("0.0.0.0", "::", "[::]"):
        return host
    from distributed.comm import get_address_host

    return get_address_host(scheduler_address)


def _spawn(command: list[str], log_path: pathlib.Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _failure(message: str, log_path: pathlib.Path) -> ClusterError:
    return ClusterError(f"{message}; see {log_path}. Last lines:\n{tail(log_path)}")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def running_cluster() -> dict[str, Any] | None:
    """The cluster file's content when its scheduler process is still alive, else ``None``."""
    info = connection.read_cluster_file()
    if not info:
        return None
    pid = (info.get("pids") or {}).get("scheduler")
    return info if pid and pid_alive(int(pid)) else None


def write_cluster_file(info: dict[str, Any]) -> pathlib.Path:
    """Write the cluster file atomically (temp file in the same directory + rename)."""
    path = connection.cluster_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".cluster-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _wait_for_scheduler_file(proc: subprocess.Popen, scheduler_file: pathlib.Path, log_path: pathlib.Path, deadline: float) -> dict:
    while True:
        if scheduler_file.exists():
            try:
                return json.loads(scheduler_file.read_text())
            except json.JSONDecodeError:
                pass  # being written
        if proc.poll() is not None:
            raise _failure(f"the scheduler process exited with code {proc.returncode} while starting", log_path)
        if time.monotonic() > deadline:
            raise _failure("the scheduler did not start before the deadline (daskflow.cluster.start-timeout)", log_path)
        time.sleep(0.1)


def _wait_for_workers(client, workers: list[tuple[subprocess.Popen, pathlib.Path]], deadline: float) -> None:
    expected = len(workers)
    while True:
        n_joined = len(client.scheduler_info(n_workers=-1)["workers"])
        if n_joined >= expected:
            return
        for proc, log_path in workers:
            if proc.poll() is not None:
                raise _failure(f"worker process {proc.pid} exited with code {proc.returncode} while starting", log_path)
        if time.monotonic() > deadline:
            raise ClusterError(
                f"only {n_joined} of {expected} workers joined before the deadline "
                f"(daskflow.cluster.start-timeout); see the worker logs in {log_dir()}"
            )
        time.sleep(0.1)


def start_cluster(spec: ClusterSpec | None = None) -> dict[str, Any]:
    """Start a scheduler (with the daskflow preload) and workers; return the cluster file content.

    >>> info = start_cluster(ClusterSpec(workers=2, scheduler_port=0, dashboard_port=0))  # doctest: +SKIP
    >>> info["scheduler_address"]  # doctest: +SKIP
    'tcp://127.0.0.1:40123'
    """
    spec = spec or ClusterSpec()
    existing = running_cluster()
    if existing:
        raise ClusterError(
            f"a daskflow cluster is already running at {existing.get('scheduler_address')} "
            f"(scheduler pid {existing['pids']['scheduler']}, file {connection.cluster_file()}); "
            "stop it with `daskflow cluster down` first"
        )
    directory = log_dir()
    scheduler_file = directory / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    env = child_environment()
    started_at = time.time()
    deadline = time.monotonic() + float(spec.start_timeout_s)
    scheduler_log = directory / "scheduler.log"
    scheduler_proc = _spawn(scheduler_command(spec, scheduler_file), scheduler_log, env)
    started: list[subprocess.Popen] = [scheduler_proc]
    try:
        identity = _wait_for_scheduler_file(scheduler_proc, scheduler_file, scheduler_log, deadline)
        address = identity["address"]
        dashboard_port = (identity.get("services") or {}).get("dashboard")
        dashboard_link = f"http://{_reachable_host(spec.host, address)}:{dashboard_port}/status" if dashboard_port else None
        workers = []
        for index in range(int(spec.workers)):
            log_path = directory / f"worker-{index}.log"
            proc = _spawn(worker_command(address, spec, f"daskflow-worker-{index}"), log_path, env)
            started.append(proc)
            workers.append((proc, log_path))
        from distributed import Client

        security = spec.tls.security() if spec.tls else None
        remaining_s = max(1.0, deadline - time.monotonic())
        with Client(address, security=security, timeout=remaining_s, set_as_default=False) as client:
            _wait_for_workers(client, workers, deadline)
    except BaseException:
        stop_processes([p.pid for p in reversed(started)], grace_s=5.0)
        for proc in started:
            proc.poll()
        raise
    info = {
        "scheduler_address": address,
        "dashboard_link": dashboard_link,
        "pids": {"scheduler": scheduler_proc.pid, "workers": [proc.pid for proc, _ in workers]},
        "tls": spec.tls.as_dict() if spec.tls else None,
        "started_at": started_at,
        "log_dir": str(directory),
    }
    write_cluster_file(info)
    return info


def stop_processes(pids: list[int], grace_s: float = 10.0) -> list[int]:
    """SIGTERM ``pids`` (and their descendants), SIGKILL what is left after ``grace_s``.

    Returns the pids that were alive when asked to stop.
    """
    import psutil

    from daskflow.process_control import terminate_then_kill

    processes: list[psutil.Process] = []
    for pid in pids:
        try:
            process = psutil.Process(int(pid))
            descendants = process.children(recursive=True)
        except psutil.Error:
            continue
        processes.append(process)
        processes.extend(descendants)
    terminate_then_kill(processes, grace_s)
    for process in processes:  # reap our own children, if any
        try:
            os.waitpid(process.pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
    return [p.pid for p in processes]


def stop_cluster(grace_s: float | None = None) -> list[int]:
    """Stop the processes recorded in the cluster file (workers first) and remove the file."""
    info = connection.read_cluster_file()
    if info is None:
        raise ClusterError(
            f"no cluster file at {connection.cluster_file()}: nothing was started with `daskflow cluster up` "
            "from this daskflow home (set DASKFLOW_HOME or daskflow.cluster.file to the one used)"
        )
    if grace_s is None:
        grace_s = dask.utils.parse_timedelta(config.get("cluster.stop-grace"))
    pids = info.get("pids") or {}
    ordered = [int(p) for p in pids.get("workers") or []] + ([int(pids["scheduler"])] if pids.get("scheduler") else [])
    ordered = ([int(pids["daemon"])] if pids.get("daemon") else []) + ordered  # `cluster up --daemon`: stop it first
    stopped = stop_processes(ordered, grace_s=grace_s)
    connection.cluster_file().unlink(missing_ok=True)
    return stopped


def scheduler_summary(dask_scheduler=None) -> dict[str, Any]:
    """Cluster state as plain data; runs *on the scheduler* (``Client.run_on_scheduler``)."""
    scheduler = dask_scheduler
    workers = compat.worker_summaries(scheduler)
    steering = compat.plugin(scheduler, STEERING_PLUGIN)
    recorder = compat.plugin(scheduler, RECORDER_PLUGIN)
    return {
        "scheduler_address": scheduler.address,
        "dashboard_port": compat.dashboard_port(scheduler),
        "workers": workers,
        "n_workers": len(workers),
        "threads": sum(w["threads"] for w in workers),
        "memory_limit_bytes": sum(w["memory_limit_bytes"] or 0 for w in workers),
        "memory_bytes": sum(w["memory_bytes"] for w in workers),
        "tasks": compat.n_tasks(scheduler),
        "steering_mode": getattr(steering, "mode", None) if steering else "absent",
        "model_version": getattr(steering, "model_version", None) if steering else None,
        "fallback_count": getattr(steering, "fallback_count", None) if steering else None,
        "recorder": recorder is not None,
        "dashboard_pages": compat.has_extension(scheduler, DASHBOARD_EXTENSION),
    }


def cluster_status(address: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """Fetch :func:`scheduler_summary` from the cluster at ``address`` (or the cluster file's)."""
    try:
        with connection.connect(address, timeout=timeout_s, set_as_default=False) as client:
            summary = client.run_on_scheduler(scheduler_summary)
    except ClusterError:
        raise
    except (OSError, TimeoutError) as exc:
        resolved = connection.resolve_address(address)
        raise ClusterError(
            f"could not reach the scheduler at {resolved}: {exc}; is the cluster up (`daskflow cluster up`)?"
        ) from exc
    info = connection.read_cluster_file() or {}
    if info.get("scheduler_address") == summary["scheduler_address"]:
        summary["dashboard_link"] = info.get("dashboard_link")
        summary["pids"] = info.get("pids")
    return summary
