"""The multi-host test bed: N emulated hosts on one Linux machine.

Design note. :class:`TestBed` builds, in this order, and records as it goes
(so a failure at any step tears down exactly what exists):

1. a bridge in the root namespace and, per host, a network namespace joined
   to it by a veth pair, both ends shaped to ``link_mbit``
   (:mod:`daskflow.testbed.netns`; names and the /24 from
   :mod:`daskflow.testbed.naming`);
2. a temp directory ``<tmp>/<token>-*/`` with one storage directory per host,
   the clock file and the logs;
3. per host, a read-only file server on ``http://<host ip>:<port>/`` inside
   its namespace (:mod:`daskflow.testbed.fileserver`);
4. the scheduler in the root namespace on the bridge address
   (``--preload scheduler_plugins.preload`` unless ``preload=None``; none at
   all with ``scheduler=False``: network and storage only);
5. per host, ``dask worker --nworkers K --host <host ip>`` inside its
   namespace, with the host declared in its environment
   (:mod:`daskflow.testbed.hostconfig`), never in the scheduler's.

``close()`` undoes it all (idempotent), and runs on leaving the ``with``
block, on a failure during startup, on SIGINT/SIGTERM (the handler closes
and then re-raises the signal to the previous handler) and at interpreter
exit. What is running is plain data in :class:`BedState`.

Integration: the replay harness can use ``bed.scheduler_address`` where it
uses a LocalCluster today, pass its mode config through ``config=`` (it
reaches the scheduler and the workers alike) and ``preload=None`` for stock,
and call ``bed.restart_clock()`` when it submits the graph.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from daskflow.testbed import netns, processes
from daskflow.testbed.errors import TestBedError, TestBedUnavailable
from daskflow.testbed.hostconfig import (
    ENV_NAMES,
    HostConfig,
    Slowdown,
    parse_slowdown,
    write_clock,
)
from daskflow.testbed.naming import MAX_HOSTS, BedNames, choose_subnet, make_token

logger = logging.getLogger(__name__)

PRELOAD = "scheduler_plugins.preload"
FILE_SERVER_PORT = 8000
LOCK_PATH = pathlib.Path(tempfile.gettempdir()) / "daskflow-testbed.lock"
_COUNTER = itertools.count()


@dataclasses.dataclass(frozen=True)
class TestBedHost:
    """One emulated host: its namespace, address, storage and file-server URL."""

    __test__ = False

    index: int
    name: str
    netns: str
    address: str
    storage_dir: str
    url: str
    speed: float
    config: HostConfig


@dataclasses.dataclass
class BedState:
    """What this test bed has created so far: exactly what ``close()`` removes."""

    links: list[str] = dataclasses.field(default_factory=list)  # root-namespace interfaces
    netns: list[str] = dataclasses.field(default_factory=list)
    processes: list[subprocess.Popen] = dataclasses.field(default_factory=list)  # workers, scheduler, servers
    clients: list[Any] = dataclasses.field(default_factory=list)
    temp_dir: pathlib.Path | None = None
    previous_handlers: dict[int, Any] = dataclasses.field(default_factory=dict)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}`` (dask config keys)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


class TestBed:
    """N emulated hosts with shaped links, per-host storage and workers; a scheduler on the hub.

    >>> with TestBed(hosts=2, workers_per_host=1, link_mbit=200) as bed:  # doctest: +SKIP
    ...     client = bed.client()
    ...     bed.hosts[1].address, bed.hosts[1].url
    ('198.18.81.11', 'http://198.18.81.11:8000/')
    """

    __test__ = False

    def __init__(
        self,
        hosts: int = 2,
        workers_per_host: int = 1,
        *,
        threads_per_worker: int = 1,
        link_mbit: float | None = None,
        link_latency_ms: float = 0.0,
        host_speeds: Sequence[float] | None = None,
        slowdown: Slowdown | str | None = None,
        memory_limit: str | int = "auto",
        preload: str | None = PRELOAD,
        scheduler: bool = True,
        config: Mapping[str, Any] | None = None,
        file_server_port: int = FILE_SERVER_PORT,
        start_timeout_s: float = 60.0,
        keep_storage: bool = False,
    ) -> None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"TestBed(hosts={hosts}): expected 1..{MAX_HOSTS} hosts")
        if workers_per_host < 0 or threads_per_worker < 1:
            raise ValueError(f"TestBed: workers_per_host={workers_per_host} must be >= 0 and threads_per_worker={threads_per_worker} >= 1")
        if link_mbit is not None and not link_mbit > 0:
            raise ValueError(f"TestBed(link_mbit={link_mbit}): expected a positive rate or None (unlimited)")
        if workers_per_host and not scheduler:
            raise ValueError(f"TestBed(scheduler=False, workers_per_host={workers_per_host}): workers need a scheduler")
        speeds = [1.0] * hosts if host_speeds is None else [float(s) for s in host_speeds]
        if len(speeds) != hosts or any(not s > 0 for s in speeds):
            raise ValueError(f"TestBed(host_speeds={list(speeds)}): expected {hosts} positive factors, one per host")
        self.slowdown = parse_slowdown(slowdown) if isinstance(slowdown, str) else slowdown
        if self.slowdown is not None and self.slowdown.host >= hosts:
            raise ValueError(f"TestBed(slowdown={self.slowdown.as_text()}): host {self.slowdown.host} does not exist (0..{hosts - 1})")
        self.n_hosts = hosts
        self.workers_per_host = workers_per_host
        self.threads_per_worker = threads_per_worker
        self.link_mbit = link_mbit
        self.link_latency_ms = float(link_latency_ms)
        self.host_speeds = speeds
        self.memory_limit = memory_limit
        self.preload = preload
        self.with_scheduler = scheduler
        self.config = dict(config or {})
        self.file_server_port = file_server_port
        self.start_timeout_s = float(start_timeout_s)
        self.keep_storage = keep_storage
        self.token = make_token(os.getpid(), next(_COUNTER))
        self.names: BedNames | None = None
        self.hosts: list[TestBedHost] = []
        self.scheduler_address: str | None = None
        self.clock_path: pathlib.Path | None = None
        self.state = BedState()
        self._closed = False
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> TestBed:  # noqa: PYI034 - start() returns the started bed
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> TestBed:
        """Build everything (see the module note); on any failure tear it down and re-raise."""
        reason = netns.unavailable_reason()
        if reason:
            raise TestBedUnavailable(reason)
        if self._closed or self.names is not None:
            raise TestBedError(f"test bed {self.token} was already started; create a new TestBed")
        self._install_signal_handlers()
        atexit.register(_close_at_exit, weakref.ref(self))
        try:
            self._build_network()
            self._make_directories()
            self._start_file_servers()
            if self.with_scheduler:
                self._start_scheduler()
                self._start_workers()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process, remove namespaces, links and the temp dir; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._restore_signal_handlers()
            with _signals_held():
                self._teardown()

    def _teardown(self) -> None:
        """Each step runs even when an earlier one failed; failures are logged, never raised."""
        state = self.state
        steps = [(f"close client {i}", lambda c=c: c.close(timeout=5)) for i, c in enumerate(state.clients)]
        steps.append(("stop processes", lambda: processes.stop_popen(list(reversed(state.processes)))))
        steps += [(f"kill what runs in {ns}", lambda ns=ns: processes.kill_pids(netns.netns_pids(ns))) for ns in state.netns]
        steps.append(("kill stray processes", lambda: processes.kill_pids(processes.processes_with_token(self.token))))
        steps += [(f"delete netns {ns}", lambda ns=ns: netns.delete_netns(ns)) for ns in reversed(state.netns)]
        steps += [(f"delete link {link}", lambda link=link: netns.delete_link(link)) for link in reversed(state.links)]
        if state.temp_dir is not None and not self.keep_storage:
            steps.append(("remove the temp dir", lambda: shutil.rmtree(state.temp_dir, ignore_errors=True)))
        for what, step in steps:
            try:
                step()
            except Exception:  # a client of a dead scheduler may fail to close, an `ip` may time out: go on
                logger.warning("test bed %s: could not %s", self.token, what, exc_info=True)
        if state.temp_dir is not None and self.keep_storage:
            logger.info("test bed %s: storage kept in %s", self.token, state.temp_dir)

    # ----------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; atexit and close() remain
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.state.previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self.state.previous_handlers.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def _on_signal(self, signum: int, frame) -> None:
        previous = self.state.previous_handlers.get(signum, signal.SIG_DFL)
        self.close()
        if callable(previous):
            previous(signum, frame)  # e.g. default_int_handler: raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    # ----------------------------------------------------------------- building

    def _build_network(self) -> None:
        LOCK_PATH.touch(exist_ok=True)
        with open(LOCK_PATH) as lock:  # the /24 is free once our bridge holds an address in it
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = choose_subnet(netns.used_subnets(), os.getpid(), int(self.token[-2:], 36))
            self.names = names = BedNames(self.token, subnet)
            self.state.links.append(names.bridge)
            netns.add_bridge(names.bridge, names.hub_address, names.prefix_length)
        for index in range(self.n_hosts):
            ns, bridge_side, host_side = names.netns(index), names.veth_bridge_side(index), names.veth_host_side(index)
            self.state.netns.append(ns)
            self.state.links.append(bridge_side)
            netns.add_host(ns, names.bridge, bridge_side, host_side, names.host_address(index), names.prefix_length)
            netns.limit_link(bridge_side, self.link_mbit, self.link_latency_ms)  # what the host receives
            netns.limit_link(host_side, self.link_mbit, self.link_latency_ms, netns=ns)  # what it sends

    def _make_directories(self) -> None:
        assert self.names is not None
        self.state.temp_dir = temp = pathlib.Path(tempfile.mkdtemp(prefix=f"{self.token}-"))
        (temp / "logs").mkdir()
        self.clock_path = temp / "clock"
        start_epoch = time.time()
        write_clock(self.clock_path, start_epoch)
        urls = {f"h{i}": f"http://{self.names.host_address(i)}:{self.file_server_port}/" for i in range(self.n_hosts)}
        for index in range(self.n_hosts):
            name = f"h{index}"
            storage = temp / name / "storage"
            storage.mkdir(parents=True)
            slowdown = self.slowdown if self.slowdown is not None and self.slowdown.host == index else None
            config = HostConfig(
                name=name, index=index, address=self.names.host_address(index), storage_dir=str(storage),
                url=urls[name], speed=self.host_speeds[index],
                slowdown_at_s=slowdown.at_s if slowdown else None, slowdown_factor=slowdown.factor if slowdown else 1.0,
                clock_path=str(self.clock_path), start_epoch=start_epoch, host_urls=urls,
            )  # fmt: skip
            self.hosts.append(TestBedHost(index, name, self.names.netns(index), config.address, config.storage_dir,
                                          config.url, config.speed, config))  # fmt: skip

    def _log(self, name: str) -> pathlib.Path:
        assert self.state.temp_dir is not None
        return self.state.temp_dir / "logs" / f"{name}.log"

    def _spawn(self, command: list[str], name: str, env: Mapping[str, str], ns: str | None = None) -> subprocess.Popen:
        proc = processes.spawn(command, self._log(name), env, netns=ns)
        self.state.processes.append(proc)
        return proc

    def _failure(self, what: str, name: str) -> TestBedError:
        last = processes.tail(self._log(name), 1)
        return TestBedError(f"test bed {self.token}: {what}; see {self._log(name)} (last line: {last.strip() or 'empty'})")

    def _deadline_passed(self, deadline: float, proc: subprocess.Popen, what: str, name: str) -> bool:
        if proc.poll() is not None:
            raise self._failure(f"{what} exited with code {proc.returncode} while starting", name)
        if time.monotonic() > deadline:
            raise self._failure(f"{what} did not start within {self.start_timeout_s:.0f} s (start_timeout_s)", name)
        return False

    def base_environment(self) -> dict[str, str]:
        """Environment of every process: this one's, no test-bed host variables, the daskflow and given config."""
        import dask.config

        env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
        inherited: dict[str, Any] = {}
        try:
            from daskflow import config as daskflow_config

            inherited = {"daskflow": {**daskflow_config.effective_config(), "home": str(daskflow_config.home())}}
            env["DASKFLOW_HOME"] = str(daskflow_config.home())
        except Exception:  # config module being refactored or absent: the given config still travels
            logger.debug("test bed: daskflow config not inherited", exc_info=True)
        merged = dask.config.update(inherited, _nest(self.config))
        if merged.get("daskflow", {}).get("home"):
            env["DASKFLOW_HOME"] = str(merged["daskflow"]["home"])  # a given daskflow.home wins, in env too
        env["DASK_INTERNAL_INHERIT_CONFIG"] = dask.config.serialize(merged)
        return env

    def _start_file_servers(self) -> None:
        assert self.names is not None and self.state.temp_dir is not None
        env = self.base_environment()
        started = []
        for host in self.hosts:
            command = [sys.executable, "-m", "daskflow.testbed.fileserver", "--root", host.storage_dir,
                       "--host", host.address, "--port", str(self.file_server_port),
                       "--delay-ms", repr(self.link_latency_ms), "--hub-address", self.names.hub_address,
                       "--access-log", str(self.state.temp_dir / host.name / "access.jsonl")]  # fmt: skip
            started.append((host, self._spawn(command, f"fileserver-{host.name}", env, ns=host.netns)))
        deadline = time.monotonic() + self.start_timeout_s
        for host, proc in started:
            while not _accepts(host.address, self.file_server_port):
                self._deadline_passed(deadline, proc, f"file server of {host.name}", f"fileserver-{host.name}")
                time.sleep(0.05)

    def _start_scheduler(self) -> None:
        assert self.names is not None and self.state.temp_dir is not None
        scheduler_file = self.state.temp_dir / "scheduler.json"
        command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", self.names.hub_address,
                   "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)]  # fmt: skip
        if self.preload:
            command += ["--preload", self.preload]
        proc = self._spawn(command, "scheduler", self.base_environment())
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                self.scheduler_address = json.loads(scheduler_file.read_text())["address"]
                return
            except (OSError, ValueError, KeyError):
                self._deadline_passed(deadline, proc, "the scheduler", "scheduler")
                time.sleep(0.05)

    def _start_workers(self) -> None:
        if not self.workers_per_host:
            return
        assert self.scheduler_address is not None and self.state.temp_dir is not None
        base = self.base_environment()
        started = []
        for host in self.hosts:
            command = [sys.executable, "-m", "distributed.cli.dask_worker", self.scheduler_address,
                       "--nworkers", str(self.workers_per_host), "--nthreads", str(self.threads_per_worker),
                       "--host", host.address, "--name", host.name, "--memory-limit", str(self.memory_limit),
                       "--no-dashboard", "--local-directory", str(self.state.temp_dir / host.name / "dask")]  # fmt: skip
            env = {**base, **host.config.environment()}
            started.append((host, self._spawn(command, f"workers-{host.name}", env, ns=host.netns)))
        deadline = time.monotonic() + self.start_timeout_s
        expected = self.n_workers
        client = self.client(timeout=self.start_timeout_s)
        while len(client.scheduler_info(n_workers=-1)["workers"]) < expected:
            for host, proc in started:
                self._deadline_passed(deadline, proc, f"the workers of {host.name}", f"workers-{host.name}")
            time.sleep(0.1)

    # ----------------------------------------------------------------- using it

    @property
    def n_workers(self) -> int:
        return self.n_hosts * self.workers_per_host

    def client(self, **kwargs: Any):
        """A ``distributed.Client`` of this test bed's scheduler, closed with the test bed."""
        from distributed import Client

        if self.scheduler_address is None:
            raise TestBedError(f"test bed {self.token} has no scheduler yet; use it inside `with TestBed(...)`")
        kwargs.setdefault("set_as_default", False)
        client = Client(self.scheduler_address, **kwargs)
        self.state.clients.append(client)
        return client

    def host_of_address(self, address: str) -> str | None:
        """The host name (``"h1"``) a worker address like ``tcp://198.18.S.11:4321`` belongs to."""
        from daskflow.testbed.measure import host_of_address

        return host_of_address(address, {h.address: h.name for h in self.hosts})

    def restart_clock(self, epoch: float | None = None) -> float:
        """Reset the slowdown clock to ``epoch`` (default now), seen by every host's tasks; return it."""
        if self.clock_path is None:
            raise TestBedError(f"test bed {self.token} is not started; nothing to restart")
        epoch = time.time() if epoch is None else float(epoch)
        write_clock(self.clock_path, epoch)
        return epoch

    def slowdown_in_run(self) -> Slowdown | None:
        """The slowdown as a run sees it: seconds after :meth:`restart_clock` (the harness restarts it at submit)."""
        return self.slowdown

    def access_logs(self) -> dict[str, pathlib.Path]:
        """Per host name, its file server's access log (JSON lines)."""
        assert self.state.temp_dir is not None
        return {h.name: self.state.temp_dir / h.name / "access.jsonl" for h in self.hosts}

    def describe(self) -> dict[str, Any]:
        """The test bed as plain data (for a replay result's JSON)."""
        return {
            "token": self.token,
            "scheduler_address": self.scheduler_address,
            "link_mbit": self.link_mbit,
            "link_latency_ms": self.link_latency_ms,
            "latency_on_wire": netns.netem_available() if self.link_latency_ms else False,
            "workers_per_host": self.workers_per_host,
            "threads_per_worker": self.threads_per_worker,
            "slowdown": self.slowdown.as_text() if self.slowdown else None,
            "hosts": [{"name": h.name, "address": h.address, "url": h.url, "speed": h.speed} for h in self.hosts],
        }


@contextlib.contextmanager
def _signals_held():
    """Defer SIGINT/SIGTERM until the block ends: a Ctrl-C never cuts a teardown in half.

    A signal that arrives meanwhile is re-raised when the block ends, to the
    handler that was current when it began, so it still interrupts the
    program. (Not a signal mask: with several threads a process-directed
    signal may land on another thread, and Python runs the handler anyway.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def defer(signum, frame) -> None:
        pending.append(signum)

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in saved:
        signal.signal(signum, defer)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if signal.getsignal(signum) is defer:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _close_at_exit(ref: weakref.ref) -> None:
    bed = ref()
    if bed is not None:
        bed.close()
