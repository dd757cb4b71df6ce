"""A multi-host test bed on one Linux machine: network namespaces, shaped links, per-host storage.

Example (needs root)::

    from daskflow.testbed import TestBed

    with TestBed(hosts=4, workers_per_host=2, link_mbit=200, link_latency_ms=1,
                 host_speeds=[1, 1, 0.5, 0.5], slowdown="3@30:4") as bed:
        client = bed.client()
        bed.hosts[2].address, bed.hosts[2].url, bed.hosts[2].storage_dir

Modules: :mod:`~daskflow.testbed.bed` (the TestBed), :mod:`~.netns` (ip/tc),
:mod:`~.naming` (names and /24s), :mod:`~.hostconfig` (what a worker knows of
its host: speed, slowdown, storage, URLs), :mod:`~.fileserver`,
:mod:`~.processes`, :mod:`~.cleanup`, :mod:`~.measure`. Needs root and
iproute2; otherwise :class:`TestBedUnavailable` says why.
"""

from daskflow.testbed.bed import TestBed, TestBedHost
from daskflow.testbed.cleanup import CleanupReport, cleanup_stale
from daskflow.testbed.errors import TestBedError, TestBedUnavailable
from daskflow.testbed.hostconfig import (
    HostConfig,
    Slowdown,
    current_duration_s,
    current_host,
    current_speed,
    effective_speed,
    emulated_duration_s,
    host_url,
    parse_slowdown,
)
from daskflow.testbed.netns import unavailable_reason

__all__ = [
    "CleanupReport",
    "HostConfig",
    "Slowdown",
    "TestBed",
    "TestBedError",
    "TestBedHost",
    "TestBedUnavailable",
    "cleanup_stale",
    "current_duration_s",
    "current_host",
    "current_speed",
    "effective_speed",
    "emulated_duration_s",
    "host_url",
    "parse_slowdown",
    "unavailable_reason",
]
