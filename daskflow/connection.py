"""Finding and connecting to a Dask cluster.

Order of precedence: an explicit ``--address``; the cluster file written by
``daskflow cluster up`` (``daskflow.cluster.file``, default
``<home>/cluster.json``); otherwise ``None`` and the caller starts an embedded
``LocalCluster``. The cluster file also carries TLS file paths, so commands
talk to a TLS cluster without repeating them.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from daskflow import config


def cluster_file() -> pathlib.Path:
    """Path of the cluster file (may not exist)."""
    configured = config.get("cluster.file")
    return pathlib.Path(configured) if configured else config.home() / "cluster.json"


def read_cluster_file() -> dict[str, Any] | None:
    """The cluster file's content, or ``None`` when there is none or it is unreadable."""
    path = cluster_file()
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def resolve_address(address: str | None) -> str | None:
    """``address`` if given, else the address in the cluster file, else ``None``."""
    if address:
        return address
    info = read_cluster_file()
    return info.get("scheduler_address") if info else None


def security_for(address: str | None):
    """A ``distributed.Security`` for TLS addresses recorded in the cluster file, else ``None``."""
    if not address or not address.startswith("tls://"):
        return None
    info = read_cluster_file() or {}
    tls = info.get("tls") or {}
    if not tls:
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

    Raises :class:`daskflow.errors.ClusterError` when there is no address at all.
    """
    from distributed import Client

    from daskflow.errors import ClusterError

    resolved = resolve_address(address)
    if resolved is None:
        raise ClusterError(
            "no cluster address: pass --address tcp://HOST:PORT or start one with `daskflow cluster up`"
        )
    security = security_for(resolved)
    if security is not None:
        client_kwargs.setdefault("security", security)
    return Client(resolved, **client_kwargs)
