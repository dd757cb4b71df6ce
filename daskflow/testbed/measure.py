"""Bytes moved between emulated hosts: pure helpers over recorded transfers and access logs.

Design note. Two kinds of traffic cross the test bed's links:

* worker-to-worker transfers of task results. Each worker keeps a log of the
  data it fetched (``Worker.transfer_incoming_log``: ``who`` = the sending
  worker's address, ``total`` = bytes); :func:`incoming_transfers` (run on
  every worker with ``client.run``) returns it as plain rows, and
  :func:`bytes_between_hosts` maps both ends to hosts by IP address.
* reads of another host's storage through its file server, whose access log
  has one JSON line per response; :func:`storage_reads` sums them per
  (serving host, reading host). A row is written just after its response
  is sent: read the logs once the run is over, not the instant a read returns.

Both are pure over plain data: worker address → host comes from the test
bed's address table (``{"198.18.S.10": "h0", ...}``), so they also work on
recorded data after the test bed is gone.

TODO(issue 11): the distributed log is a bounded deque
(``distributed.admin.low-level-log-length``): a very long run can lose old
rows; the scheduler-side recorder does not record transfers yet, so a replay
should collect right after each run (or raise that config).
"""

from __future__ import annotations

import json
import pathlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict


class TransferRow(TypedDict):
    """One fetch: ``destination`` worker got ``bytes`` from ``source`` worker."""

    source: str
    destination: str
    bytes: int


def address_ip(address: str) -> str:
    """The IP (or host name) of a Dask address: ``tcp://198.18.0.10:4000`` → ``198.18.0.10``.

    >>> address_ip("tcp://198.18.0.10:4000"), address_ip("198.18.0.11")
    ('198.18.0.10', '198.18.0.11')
    """
    text = address.split("://", 1)[-1]
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def host_of_address(address: str, host_by_ip: Mapping[str, str]) -> str | None:
    """The host name of a worker address, ``None`` when it is on no test-bed host."""
    return host_by_ip.get(address_ip(address))


def incoming_transfers(dask_worker=None) -> list[TransferRow]:
    """This worker's fetched data as rows (run it with ``client.run(incoming_transfers)``)."""
    rows: list[TransferRow] = []
    for entry in list(getattr(dask_worker, "transfer_incoming_log", ())):
        rows.append({"source": str(entry.get("who")), "destination": str(dask_worker.address),
                     "bytes": int(entry.get("total") or 0)})  # fmt: skip
    return rows


def flatten_worker_rows(per_worker: Mapping[str, Iterable[TransferRow]]) -> list[TransferRow]:
    """``client.run``'s ``{worker: rows}`` as one list."""
    return [row for rows in per_worker.values() for row in rows]


def bytes_between_hosts(transfers: Iterable[TransferRow], host_by_ip: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """Bytes per (source host, destination host), transfers inside one host left out.

    >>> hosts = {"198.18.0.10": "h0", "198.18.0.11": "h1"}
    >>> rows = [{"source": "tcp://198.18.0.10:1", "destination": "tcp://198.18.0.11:2", "bytes": 5},
    ...         {"source": "tcp://198.18.0.10:1", "destination": "tcp://198.18.0.10:3", "bytes": 7}]
    >>> bytes_between_hosts(rows, hosts)
    {('h0', 'h1'): 5}
    """
    moved: dict[tuple[str, str], int] = defaultdict(int)
    for row in transfers:
        source = host_of_address(row["source"], host_by_ip) or address_ip(row["source"])
        destination = host_of_address(row["destination"], host_by_ip) or address_ip(row["destination"])
        if source != destination:
            moved[(source, destination)] += int(row["bytes"])
    return dict(moved)


def total_bytes(moved: Mapping[Any, int]) -> int:
    return int(sum(moved.values()))


def read_access_log(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """The rows of one file server's access log (missing file: none; a torn last line is skipped)."""
    try:
        lines = pathlib.Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def storage_reads(access_rows: Mapping[str, Iterable[Mapping[str, Any]]], host_by_ip: Mapping[str, str],
                  include_local: bool = False) -> dict[tuple[str, str], int]:  # fmt: skip
    """Bytes per (serving host, reading host) from each host's access-log rows.

    Reads by a non-host client (the scheduler/client side) count under its IP.
    A host reading its own storage over HTTP is left out unless ``include_local``.
    """
    reads: dict[tuple[str, str], int] = defaultdict(int)
    for server, rows in access_rows.items():
        for row in rows:
            reader = host_by_ip.get(str(row.get("client")), str(row.get("client")))
            if reader == server and not include_local:
                continue
            reads[(server, reader)] += int(row.get("bytes") or 0)
    return {key: value for key, value in reads.items() if value}
