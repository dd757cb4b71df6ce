"""Per-host speed factors kept across runs: ``<model dir>/worker-speeds.json``.

Design note
-----------
The steering plugin learns a speed factor per host within a run
(:class:`~scheduler_plugins.policy.SpeedEstimates`); this small JSON carries
each host's log slowness to the next run as a prior, keyed by the host
identity the scheduler uses (the worker address's host part). Reads and
writes go through fsspec, writes atomically (a temp file, then a move), and
the plugin calls :func:`save_host_speeds` off the event loop. A missing or
unreadable file is an empty prior, never an error.

    {"version": 1, "hosts": {"198.18.0.12": {"log_slowness": 0.69, "n": 40}},
     "transfers": {"198.18.0.12->198.18.0.13": {"log_rate": 17.0, "n": 16}}}

The ``transfers`` section holds the per-host-pair read rates the tasks
observed (:class:`~scheduler_plugins.policy.transfer.TransferRates`), kept
the same way.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["HOSTS_SECTION", "TRANSFER_SECTION", "address_host", "load_host_speeds", "save_host_speeds", "save_in_background", "speeds_url"]

FILE_NAME = "worker-speeds.json"
HOSTS_SECTION = "hosts"  # per host: learned log slowness
TRANSFER_SECTION = "transfers"  # per "SRC->DST" host pair: learned log read rate (policy.transfer)
_WRITE_LOCK = threading.Lock()


def speeds_url(model_url: str) -> str:
    """Where the per-host factors of a model directory live.

    >>> speeds_url("/tmp/models/")
    '/tmp/models/worker-speeds.json'
    """
    return f"{str(model_url).rstrip('/')}/{FILE_NAME}"


def _load_all(url: str) -> dict[str, Any]:
    import fsspec

    with fsspec.open(url, "r") as f:
        data = json.load(f)
    return data if isinstance(data, dict) else {}


def load_host_speeds(url: str, section: str = "hosts") -> dict[str, dict[str, float]]:
    """The persisted ``{host: {"log_slowness", "n"}}`` (empty when missing or unreadable).

    ``section="transfers"`` (:data:`TRANSFER_SECTION`): the learned read rates
    ``{"SRC->DST": {"log_rate", "n"}}`` kept in the same file.
    """
    try:
        entries = _load_all(url).get(section, {})
        return {str(h): dict(v) for h, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("daskflow steering: ignoring unreadable speed file %s (%s); delete it to start fresh", url, exc)
        return {}


def save_host_speeds(url: str, hosts: Mapping[str, Mapping[str, float]], section: str = "hosts") -> None:
    """Merge ``hosts`` into ``section`` of the file at ``url`` and write it atomically (call it off the event loop).

    The other sections are kept; writers in this process take turns (one lock).
    """
    import fsspec

    with _WRITE_LOCK:
        try:
            data = _load_all(url)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, TypeError):
            data = {}
        sections = {name: dict(value) for name, value in data.items() if name in (HOSTS_SECTION, TRANSFER_SECTION)
                    and isinstance(value, dict)}  # fmt: skip
        merged = sections.setdefault(section, {})
        merged.update({str(h): dict(v) for h, v in hosts.items()})
        fs, path = fsspec.core.url_to_fs(url)
        directory = path.rsplit("/", 1)[0]
        temp = f"{directory}/.{FILE_NAME}.tmp-{uuid.uuid4().hex[:8]}"
        fs.makedirs(directory, exist_ok=True)
        with fs.open(temp, "w") as f:
            json.dump({"version": 1, **sections}, f, sort_keys=True)
        fs.mv(temp, path)


def save_in_background(url: str, hosts: Mapping[str, Mapping[str, float]], section: str = "hosts") -> Any:
    """Run :func:`save_host_speeds` in the loop's executor (never on the event loop); the future, or None."""
    if not hosts:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    future = loop.run_in_executor(None, save_host_speeds, url, dict(hosts), section)
    future.add_done_callback(_log_save_failure)
    return future


def _log_save_failure(future: Any) -> None:
    exc = future.exception() if not future.cancelled() else None
    if exc is not None:
        logger.warning("daskflow steering: could not write the worker speed file %s; speeds are still learned in this run", exc)


@functools.lru_cache(maxsize=4096)  # called per finished task with the few worker addresses of the cluster
def address_host(address: str) -> str:
    """``tcp://198.18.0.10:4000`` → ``198.18.0.10`` (what the scheduler's ``WorkerState.host`` is).

    >>> address_host("tcp://198.18.0.10:4000"), address_host("tcp://[::1]:4000")
    ('198.18.0.10', '::1')
    """
    text = address.split("://", 1)[-1]
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0]
