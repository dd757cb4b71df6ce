"""One emulated host's file server: its storage directory, read-only over HTTP.

Design note. ``python -m daskflow.testbed.fileserver --root DIR --host IP
--port PORT`` runs inside the host's network namespace, so what it sends
crosses the host's shaped link. It is tornado's ``StaticFileHandler``
(``GET`` with ``Range``, ``HEAD`` with ``Content-Length``: what fsspec's
``HTTPFileSystem`` needs) plus two things:

* latency: each response waits ``--delay-ms`` per link crossed, twice (a round
  trip): 2 links to another host, 1 to the hub (scheduler/client side). This
  stands in for ``netem``, absent from this kernel (see
  :mod:`daskflow.testbed.netns`).
* an access log: one JSON line per response (``{"client": IP, "path": ...,
  "bytes": N, "status": S}``) appended to ``--access-log``, from which
  :mod:`daskflow.testbed.measure` counts bytes read from another host's storage.

Writes stay local: there is no PUT/POST; a host writes its own directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

import tornado.web

READY_LINE = "daskflow-testbed-fileserver ready"


class StorageHandler(tornado.web.StaticFileHandler):
    """Static files with an emulated round-trip delay and an access log."""

    def initialize(self, path: str, delay_s: float, hub_address: str, access_log) -> None:  # type: ignore[override]
        super().initialize(path=path)
        self.delay_s = delay_s
        self.hub_address = hub_address
        self.access_log_file = access_log

    async def prepare(self) -> None:
        if self.delay_s > 0:
            links = 1 if self.request.remote_ip == self.hub_address else 2
            await asyncio.sleep(2 * links * self.delay_s)

    def on_finish(self) -> None:
        if self.access_log_file is None:
            return
        sent = 0
        if self.request.method == "GET" and self.get_status() in (200, 206):
            sent = int(self._headers.get("Content-Length", 0) or 0)
        record = {"client": self.request.remote_ip, "path": self.request.path, "bytes": sent,
                  "status": self.get_status(), "method": self.request.method}  # fmt: skip
        self.access_log_file.write(json.dumps(record) + "\n")
        self.access_log_file.flush()


def make_app(root: str, delay_s: float = 0.0, hub_address: str = "", access_log=None) -> tornado.web.Application:
    settings = {"path": root, "delay_s": delay_s, "hub_address": hub_address, "access_log": access_log}
    return tornado.web.Application([(r"/(.*)", StorageHandler, settings)], log_function=lambda handler: None)


async def serve(root: str, host: str, port: int, delay_s: float, hub_address: str, access_log_path: str | None) -> None:
    with contextlib.ExitStack() as stack:
        # opened once, before serving: blocking is fine here
        log_file = stack.enter_context(open(access_log_path, "a", buffering=1)) if access_log_path else None  # noqa: ASYNC230
        app = make_app(root, delay_s, hub_address, log_file)
        server = app.listen(port, address=host)
        print(READY_LINE, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve one test-bed host's storage directory read-only")
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--hub-address", default="")
    parser.add_argument("--access-log", default=None)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.root, args.host, args.port, args.delay_ms / 1000.0, args.hub_address, args.access_log))


if __name__ == "__main__":
    main()
