"""Processes of a test bed: spawn into a namespace, stop by process group, find by token.

Design note. Every process a test bed starts runs in its own session (so one
``killpg`` reaches the nanny and the worker it spawned) and carries the test
bed's temp directory in its command line (``--root``, ``--scheduler-file``,
``--local-directory``), which holds the token: :func:`processes_with_token`
finds the leftovers of a dead test bed from the process table alone, and the
processes inside a host's namespace are found by ``ip netns pids``.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence

import psutil

from daskflow.process_control import terminate_then_kill


def spawn(command: Sequence[str], log_path: pathlib.Path, env: Mapping[str, str], netns: str | None = None) -> subprocess.Popen:
    """Start ``command`` (inside ``netns`` when given) in a new session, output appended to ``log_path``."""
    argv = ["ip", "netns", "exec", netns, *command] if netns else list(command)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env), start_new_session=True)  # fmt: skip


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # session leader: its pgid is its pid
    except (ProcessLookupError, PermissionError):
        pass


def stop_popen(processes: Sequence[subprocess.Popen], grace_s: float = 5.0) -> None:
    """SIGTERM each process group, SIGKILL what is left after ``grace_s``, reap them all."""
    for proc in processes:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in processes:
        _signal_group(proc.pid, signal.SIGKILL)  # also the group's children that outlived the leader
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def kill_pids(pids: Iterable[int], grace_s: float = 2.0) -> list[int]:
    """SIGTERM, then after ``grace_s`` SIGKILL, the given pids (never this process); return those alive.

    ``grace_s=0`` sends SIGKILL at once (leftovers of a dead test bed have nothing to save).
    """
    found = []
    for pid in set(pids):
        if pid == os.getpid():
            continue
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    terminate_then_kill(found, grace_s)
    return [p.pid for p in found]


def processes_with_token(token: str) -> list[int]:
    """Pids of live processes whose command line mentions ``token`` (never this process)."""
    pids = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE or process.info["pid"] == os.getpid():
                continue
            if any(token in part for part in process.info["cmdline"] or ()):
                pids.append(process.info["pid"])
        except (psutil.Error, TypeError):
            continue
    return pids


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tail(path: pathlib.Path, n_lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])
    except OSError:
        return ""
