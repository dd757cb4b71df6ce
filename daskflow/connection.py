"""Finding and connecting to a Dask cluster.

Order of precedence: an explicit ``--address``; the cluster file written by
``daskflow cluster up`` (``daskflow.cluster.file``, default
``<home>/cluster.json``); otherwise ``None`` and the caller starts an embedded
``LocalCluster``. The cluster file also carries TLS file paths, so commands
talk to a TLS cluster without repeating them.

Hostile input rule: an address is parsed (:func:`parse_address`) before it is
used, and a connection first *probes* the scheduler's TCP port with a short
timeout (``daskflow.cluster.probe-timeout``), so a typo, a dead scheduler or a
stale cluster file (its scheduler pid gone) is one :class:`ClusterError` line
in about a second — never distributed's 30 s connect timeout and a traceback.
"""

from __future__ import annotations

import json
import pathlib
import re
import socket
from typing import Any

from daskflow import config
from daskflow.errors import ClusterError

__all__ = ["cluster_file", "connect", "parse_address", "read_cluster_file", "resolve_address", "security_for"]

#: schemes distributed's comm layer registers (inproc only reaches the same process)
SCHEMES = ("tcp", "tls", "ws", "wss", "inproc", "ucx")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?)$")
_ADDRESS_HINT = "expected [tcp|tls|ws|wss|ucx]://HOST:PORT, e.g. tcp://127.0.0.1:8786"


def parse_address(address: object) -> str:
    """``address`` normalized to ``scheme://host:port``; :class:`ClusterError` if it cannot be one.

    >>> parse_address("127.0.0.1:8786"), parse_address("tls://[::1]:9000")
    ('tcp://127.0.0.1:8786', 'tls://[::1]:9000')
    """
    if not isinstance(address, str) or not address.strip():
        raise ClusterError(f"scheduler address {address!r} is empty; {_ADDRESS_HINT}")
    text = address.strip()
    shown = text if len(text) <= 60 else text[:60] + "..."
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ClusterError(f"scheduler address {shown!r} has unknown scheme {scheme[:20]!r}; {_ADDRESS_HINT}")
    if scheme == "inproc":
        if not rest or any(ch.isspace() for ch in rest):
            raise ClusterError(f"scheduler address {shown!r}: inproc needs an id, e.g. inproc://192.168.1.2/1234/1; {_ADDRESS_HINT}")
        return f"inproc://{rest}"
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise ClusterError(f"scheduler address {shown!r} has no HOST:PORT; {_ADDRESS_HINT}")
    if not _HOST.match(host):
        raise ClusterError(f"scheduler address {shown!r} has an invalid host {host[:40]!r}; {_ADDRESS_HINT}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ClusterError(f"scheduler address {shown!r}: port {port_text[:20]!r} is not in 1..65535; {_ADDRESS_HINT}")
    return f"{scheme}://{host}:{int(port_text)}"


def cluster_file() -> pathlib.Path:
    """Path of the cluster file (may not exist)."""
    configured = config.get("cluster.file")
    return pathlib.Path(configured) if configured else config.home() / "cluster.json"


def read_cluster_file() -> dict[str, Any] | None:
    """The cluster file's content, or ``None`` when there is none or it is unreadable."""
    path = cluster_file()
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _pid_alive(pid: object) -> bool:
    import psutil

    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE  # type: ignore[arg-type]
    except (psutil.Error, TypeError, ValueError, OverflowError):
        return False


def _stale(reason: str) -> ClusterError:
    return ClusterError(
        f"the cluster file {cluster_file()} is stale: {reason}. Fix: remove it with `daskflow cluster down` "
        f"(then runs use an embedded cluster), or start a cluster with `daskflow cluster up`"
    )


def resolve_address(address: str | None) -> str | None:
    """``address`` (parsed) if given, else the cluster file's, else ``None``.

    Raises :class:`ClusterError` for a malformed address or a stale cluster file
    (its scheduler process is gone, or its address is malformed).
    """
    if address is not None:
        return parse_address(address)
    info = read_cluster_file()
    if not info:
        if cluster_file().exists():
            raise _stale("it is not a JSON object (a partial write, or edited by hand)")
        return None
    recorded = info.get("scheduler_address")
    try:
        resolved = parse_address(recorded)
    except ClusterError:
        raise _stale(f"its scheduler_address {recorded!r} is not an address") from None
    pid = (info.get("pids") or {}).get("scheduler") if isinstance(info.get("pids"), dict) else None
    if pid is not None and not _pid_alive(pid):
        raise _stale(f"its scheduler (pid {pid}, {resolved}) is not running")
    return resolved


def probe(address: str, timeout_s: float | None = None) -> None:
    """Open and close one TCP connection to ``address``'s host and port; :class:`ClusterError` if none answers."""
    import dask.utils

    if address.startswith(("inproc://", "ucx://")):
        return
    if timeout_s is None:
        timeout_s = dask.utils.parse_timedelta(config.get("cluster.probe-timeout"))
    host, _, port = address.split("://", 1)[1].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else (exc.strerror or str(exc) or type(exc).__name__)
        raise ClusterError(
            f"no scheduler answers at {address} ({reason} within {timeout_s:g} s); "
            f"check --address, or start one with `daskflow cluster up`"
        ) from None


def _handshake(address: str, security, timeout_s: float) -> None:
    """Complete distributed's comm handshake within ``timeout_s``, or raise :class:`ClusterError`.

    distributed's ``Client`` waits forever for the handshake of a peer that
    accepts TCP but never speaks (another service, a hung scheduler), whatever
    its ``timeout``; this bounded rehearsal on a thread of its own turns that
    into one line.
    """
    import asyncio
    import concurrent.futures

    from distributed.comm import connect as comm_connect

    if address.startswith("inproc://"):
        return
    connection_args = security.get_connection_args("client") if security is not None else {}

    async def rehearse() -> None:
        comm = await asyncio.wait_for(comm_connect(address, timeout=timeout_s, **connection_args), timeout_s)
        await comm.close()

    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="daskflow-handshake")
    try:
        executor.submit(asyncio.run, rehearse()).result(timeout=timeout_s + 1.0)
    except Exception as exc:  # noqa: BLE001 - a timeout, a TLS mismatch, garbage bytes: all one line
        reason = "timed out" if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)) else (
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
        raise ClusterError(
            f"could not connect to the scheduler at {address}: the Dask handshake failed ({reason} within "
            f"{timeout_s:g} s); is it a Dask scheduler (and TLS files right for tls://)?"
        ) from None
    finally:
        executor.shutdown(wait=False)


def security_for(address: str | None):
    """A ``distributed.Security`` for TLS addresses recorded in the cluster file, else ``None``."""
    if not address or not address.startswith("tls://"):
        return None
    info = read_cluster_file() or {}
    tls = info.get("tls") or {}
    if not isinstance(tls, dict) or not tls:
        return None
    from distributed.security import Security

    return Security(
        tls_ca_file=tls.get("ca_file"),
        tls_client_cert=tls.get("cert"),
        tls_client_key=tls.get("key"),
        require_encryption=True,
    )


def connect(address: str | None, **client_kwargs):
    """A ``distributed.Client`` for ``address`` (resolved through the cluster file).

    Raises :class:`ClusterError` (one line) when there is no address at all,
    the address is malformed, the cluster file is stale, nothing answers the
    probe, or the handshake fails within ``timeout`` (default
    ``daskflow.cluster.connect-timeout``).
    """
    import dask.utils
    from distributed import Client

    resolved = resolve_address(address)
    if resolved is None:
        raise ClusterError(
            "no cluster address: pass --address tcp://HOST:PORT or start one with `daskflow cluster up`"
        )
    probe(resolved)
    security = security_for(resolved)
    if security is not None:
        client_kwargs.setdefault("security", security)
    client_kwargs.setdefault("timeout", dask.utils.parse_timedelta(config.get("cluster.connect-timeout")))
    _handshake(resolved, client_kwargs.get("security"), float(dask.utils.parse_timedelta(client_kwargs["timeout"])))
    try:
        return Client(resolved, **client_kwargs)
    except Exception as exc:  # whatever answers (a proxy, another service): one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ClusterError(
            f"could not connect to the scheduler at {resolved}: {type(exc).__name__}: {first}; "
            f"is it a Dask scheduler (and TLS files right for tls://)?"
        ) from exc
