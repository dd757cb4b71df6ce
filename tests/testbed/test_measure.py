"""Bytes between hosts from transfer logs and file-server access logs (pure), and the file server."""

import asyncio
import json
import time
from typing import ClassVar

from daskflow.testbed import measure

HOSTS = {"198.18.0.10": "h0", "198.18.0.11": "h1"}


def test_bytes_between_hosts_leaves_out_local_transfers():
    rows = [
        {"source": "tcp://198.18.0.10:1", "destination": "tcp://198.18.0.11:2", "bytes": 5},
        {"source": "tcp://198.18.0.10:1", "destination": "tcp://198.18.0.11:2", "bytes": 6},
        {"source": "tcp://198.18.0.11:9", "destination": "tcp://198.18.0.11:2", "bytes": 100},
        {"source": "tcp://198.18.0.11:9", "destination": "tcp://198.18.0.10:1", "bytes": 3},
    ]
    moved = measure.bytes_between_hosts(rows, HOSTS)
    assert moved == {("h0", "h1"): 11, ("h1", "h0"): 3}
    assert measure.total_bytes(moved) == 14


def test_incoming_transfers_reads_a_worker_log():
    class FakeWorker:
        address = "tcp://198.18.0.11:2"
        transfer_incoming_log: ClassVar[list] = [{"who": "tcp://198.18.0.10:1", "total": 42, "duration": 0.1}]

    rows = measure.incoming_transfers(FakeWorker())
    assert rows == [{"source": "tcp://198.18.0.10:1", "destination": "tcp://198.18.0.11:2", "bytes": 42}]
    assert measure.flatten_worker_rows({"w": rows}) == rows


def test_storage_reads_from_access_logs(tmp_path):
    log = tmp_path / "access.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"client": "198.18.0.10", "bytes": 10}, {"client": "198.18.0.10", "bytes": 5},
        {"client": "198.18.0.11", "bytes": 7}, {"client": "198.18.0.1", "bytes": 2},
    ]) + "\n{torn")  # fmt: skip
    rows = measure.read_access_log(log)
    assert len(rows) == 4
    assert measure.storage_reads({"h1": rows}, HOSTS) == {("h1", "h0"): 15, ("h1", "198.18.0.1"): 2}
    assert measure.storage_reads({"h1": rows}, HOSTS, include_local=True)[("h1", "h1")] == 7
    assert measure.read_access_log(tmp_path / "missing") == []


def test_address_ip():
    assert measure.address_ip("tls://198.18.0.10:8786") == "198.18.0.10"
    assert measure.address_ip("tcp://[::1]:8786") == "::1"


def test_file_server_serves_ranges_delays_and_logs(tmp_path):
    """The per-host file server in-process on loopback: HEAD, ranged GET, delay, access log."""
    import tornado.httpclient
    import tornado.netutil

    from daskflow.testbed.fileserver import make_app

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(bytes(range(100)))
    log_path = tmp_path / "access.jsonl"

    async def scenario():
        with open(log_path, "a") as log:  # noqa: ASYNC230 - a test fixture file
            [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
            port = sock.getsockname()[1]
            server = tornado.httpserver.HTTPServer(make_app(str(tmp_path), delay_s=0.01, hub_address="127.0.0.1",
                                                            access_log=log))  # fmt: skip
            server.add_sockets([sock])
            client = tornado.httpclient.AsyncHTTPClient()
            base = f"http://127.0.0.1:{port}/d/f.bin"
            head = await client.fetch(base, method="HEAD")
            start = time.perf_counter()
            part = await client.fetch(base, headers={"Range": "bytes=10-19"})
            elapsed = time.perf_counter() - start
            missing = await client.fetch(base + "x", raise_error=False)
            put = await client.fetch(base, method="PUT", body=b"x", raise_error=False)
            server.stop()
            return head, part, elapsed, missing, put

    import tornado.httpserver

    head, part, elapsed, missing, put = asyncio.run(scenario())
    assert int(head.headers["Content-Length"]) == 100
    assert part.code == 206 and part.body == bytes(range(10, 20))
    assert elapsed >= 0.02 * 0.5  # hub client: one link each way (lower bound only)
    assert missing.code == 404
    assert put.code == 405  # writes stay local
    rows = measure.read_access_log(log_path)
    assert [r["bytes"] for r in rows if r["method"] == "GET" and r["status"] == 206] == [10]
