"""A minimal Chrome DevTools Protocol driver for headless Chromium (tests only).

Starts ``chromium --headless --remote-debugging-port=0`` with a fresh profile,
reads the port from ``DevToolsActivePort``, and talks to the page target over
a websocket with tornado's client (already a dependency of distributed), so no
browser-automation package is needed. Only what the tests use: navigate,
evaluate JavaScript, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1100",
)  # fmt: skip


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process with a fresh ``--user-data-dir``; use as a context manager."""

    def __init__(self, executable: str, start_timeout_s: float = 30.0) -> None:
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.profile = pathlib.Path(tempfile.mkdtemp(prefix="daskflow-chromium-"))
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def __enter__(self) -> Browser:
        command = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"]
        self.log = open(self.profile.with_suffix(".log"), "wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout_s
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"Chromium did not start; log: {self.profile.with_suffix('.log')}")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def page_websocket_url(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as response:
            targets = json.loads(response.read())
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise RuntimeError("Chromium has no page target")
        return pages[0]["webSocketDebuggerUrl"]


class Page:
    """CDP session on one page target (async)."""

    def __init__(self, websocket) -> None:
        self.websocket = websocket
        self.next_id = 0

    @classmethod
    async def connect(cls, url: str) -> Page:
        from tornado.websocket import websocket_connect

        return cls(await websocket_connect(url, max_message_size=256 * 1024 * 1024))

    async def call(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict:
        self.next_id += 1
        call_id = self.next_id
        await self.websocket.write_message(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = await asyncio.wait_for(self.websocket.read_message(), max(0.1, deadline - time.monotonic()))
            if message is None:
                raise RuntimeError("Chromium closed the DevTools connection")
            data = json.loads(message)
            if data.get("id") == call_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)

    async def wait_for(self, expression: str, timeout_s: float = 30.0, poll_s: float = 0.2) -> Any:
        """Evaluate ``expression`` until it returns something truthy (or raise with the last value)."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(poll_s)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {expression[:80]!r}; last value {value!r}")

    async def screenshot(self, path: pathlib.Path) -> pathlib.Path:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def close(self) -> None:
        self.websocket.close()
