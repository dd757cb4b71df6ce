"""What a worker process knows about the emulated host it runs on.

Design note. The test bed declares each host's speed and slowdown to that
host's worker processes only, through environment variables; the scheduler
and its plugins never see them (steering must learn speeds, not be told).
The contract, set on every worker process of host ``h``:

``DASKFLOW_TESTBED_HOST``     the host's name (``"h0"``, ``"h1"``, ...)
``DASKFLOW_TESTBED_STORAGE``  the host's local storage directory (writes go here)
``DASKFLOW_TESTBED_SPEED``    the host's speed factor (1 = nominal, 0.5 = half speed)
``DASKFLOW_TESTBED_CONFIG``   the whole :class:`HostConfig` as JSON (slowdown, clock file,
                              every host's file-server URL)

A slowdown ``HOST@SECONDS:FACTOR`` makes host ``HOST`` ``FACTOR`` times slower
(durations multiplied by ``FACTOR``) from ``SECONDS`` after the test bed's
clock epoch. The epoch is a small file (``clock_path``) holding a Unix time:
the test bed writes it when it starts and again on ``TestBed.restart_clock()``
(the replay harness calls that when it submits the graph), so "at 30 % of the
run" means what it says. :func:`effective_speed` is pure: it takes the
config, the epoch and ``now``; :func:`emulated_duration_s` turns nominal work
into wall seconds across the slowdown; :func:`current_speed` and
:func:`current_duration_s` read env, file and clock (what a replay task calls).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

ENV_HOST = "DASKFLOW_TESTBED_HOST"
ENV_STORAGE = "DASKFLOW_TESTBED_STORAGE"
ENV_SPEED = "DASKFLOW_TESTBED_SPEED"
ENV_CONFIG = "DASKFLOW_TESTBED_CONFIG"
ENV_NAMES = (ENV_HOST, ENV_STORAGE, ENV_SPEED, ENV_CONFIG)


@dataclasses.dataclass(frozen=True)
class Slowdown:
    """Host ``host`` (index) becomes ``factor`` times slower ``at_s`` seconds after the clock epoch."""

    host: int
    at_s: float
    factor: float

    def __post_init__(self) -> None:
        if self.host < 0:
            raise ValueError(f"slowdown host index must be >= 0, got {self.host}")
        if self.at_s < 0:
            raise ValueError(f"slowdown time must be >= 0 s, got {self.at_s}")
        if not self.factor > 0:
            raise ValueError(f"slowdown factor must be > 0 (4 = four times slower), got {self.factor}")

    def as_text(self) -> str:
        return f"{self.host}@{self.at_s:g}:{self.factor:g}"


def parse_slowdown(text: str) -> Slowdown:
    """Parse ``HOST@SECONDS:FACTOR`` (``HOST`` an index or ``hN``).

    >>> parse_slowdown("2@30:4")
    Slowdown(host=2, at_s=30.0, factor=4.0)
    >>> parse_slowdown("h1@0.5:2").host
    1
    """
    try:
        host_text, rest = text.split("@", 1)
        at_text, factor_text = rest.split(":", 1)
        host_text = host_text.strip()
        host = int(host_text.removeprefix("h"))
        return Slowdown(host=host, at_s=float(at_text), factor=float(factor_text))
    except ValueError as exc:
        raise ValueError(f"slowdown {text!r}: expected HOST@SECONDS:FACTOR, e.g. 2@30:4 ({exc})") from None


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """One emulated host as its workers see it (plain data, JSON round-trip)."""

    name: str
    index: int
    address: str
    storage_dir: str
    url: str  # base URL of this host's file server, ending in "/"
    speed: float = 1.0
    slowdown_at_s: float | None = None
    slowdown_factor: float = 1.0
    clock_path: str | None = None
    start_epoch: float | None = None  # the clock epoch when the test bed started (the file may move it)
    host_urls: Mapping[str, str] = dataclasses.field(default_factory=dict)  # every host's base URL

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"host_urls": dict(self.host_urls)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HostConfig:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)

    def environment(self) -> dict[str, str]:
        """The environment variables that declare this host to its worker processes."""
        return {
            ENV_HOST: self.name,
            ENV_STORAGE: self.storage_dir,
            ENV_SPEED: repr(float(self.speed)),
            ENV_CONFIG: self.to_json(),
        }


def _slowdown_time(host_config: HostConfig, epoch: float | None) -> float | None:
    """Unix time from which the slowdown applies (``None``: never)."""
    epoch = host_config.start_epoch if epoch is None else epoch
    if host_config.slowdown_at_s is None or epoch is None:
        return None
    return epoch + host_config.slowdown_at_s


def effective_speed(host_config: HostConfig, now: float, epoch: float | None = None) -> float:
    """The host's speed at Unix time ``now``: its factor, divided by the slowdown once it applies.

    ``epoch`` is the clock epoch (Unix time); by default the test bed's start (``start_epoch``).

    >>> cfg = HostConfig("h0", 0, "198.18.0.10", "/tmp", "http://x/", speed=0.5,
    ...                  slowdown_at_s=10.0, slowdown_factor=4.0, start_epoch=100.0)
    >>> effective_speed(cfg, now=105.0), effective_speed(cfg, now=110.0)
    (0.5, 0.125)
    """
    speed = float(host_config.speed)
    switch = _slowdown_time(host_config, epoch)
    if switch is not None and now >= switch:
        speed /= float(host_config.slowdown_factor)
    return speed


def emulated_duration_s(host_config: HostConfig, start: float, work_s: float, epoch: float | None = None) -> float:
    """Wall seconds that ``work_s`` seconds of nominal (speed 1) work take on this host from ``start``.

    The speed is piecewise constant (one change, at the slowdown), so a task
    that straddles the slowdown runs at the old speed until it and the new one after.

    >>> cfg = HostConfig("h0", 0, "a", "/s", "u", speed=1.0, slowdown_at_s=10.0, slowdown_factor=2.0)
    >>> emulated_duration_s(cfg, start=8.0, work_s=4.0, epoch=0.0)  # 2 s at speed 1, then 2 s of work at 0.5
    6.0
    """
    from daskflow.replay.simulate import piecewise_compute_s

    return piecewise_compute_s(work_s, float(host_config.speed), start, _slowdown_time(host_config, epoch),
                               float(host_config.slowdown_factor))


def read_clock(path: str | os.PathLike | None) -> float | None:
    """The clock epoch in ``path`` (``None`` when there is no file or it is being rewritten)."""
    if not path:
        return None
    try:
        return float(pathlib.Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def write_clock(path: str | os.PathLike, epoch: float) -> None:
    """Atomically write the clock epoch (temp file + rename), so readers never see half a number."""
    target = pathlib.Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(repr(float(epoch)))
    os.replace(tmp, target)


def current_host(environ: Mapping[str, str] | None = None) -> HostConfig | None:
    """The host this process runs on, from the environment; ``None`` outside a test bed."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_CONFIG)
    return HostConfig.from_json(text) if text else None


def current_speed(now: float | None = None, environ: Mapping[str, str] | None = None) -> float:
    """This process's host speed now (1.0 outside a test bed): what a replay task body multiplies by."""
    config = current_host(environ)
    if config is None:
        return 1.0
    return effective_speed(config, time.time() if now is None else now, read_clock(config.clock_path))


def current_duration_s(work_s: float, start: float | None = None, environ: Mapping[str, str] | None = None) -> float:
    """How long ``work_s`` seconds of nominal work take on this process's host from ``start`` (default now).

    What a replay task body sleeps: ``work_s`` itself outside a test bed.
    """
    config = current_host(environ)
    if config is None:
        return float(work_s)
    begin = time.time() if start is None else start
    return emulated_duration_s(config, begin, work_s, read_clock(config.clock_path))


def host_url(host: HostConfig | str, relpath: str, host_urls: Mapping[str, str] | None = None) -> str:
    """The HTTP URL of ``relpath`` in ``host``'s storage (a :class:`HostConfig`, a host object or a name).

    With a name, the base URLs come from ``host_urls`` or, on a test-bed worker, from its environment.

    >>> host_url("h1", "data/x.bin", {"h1": "http://198.18.0.11:8000/"})
    'http://198.18.0.11:8000/data/x.bin'
    """
    base = getattr(host, "url", None)
    if base is None:
        urls = host_urls
        if urls is None:
            mine = current_host()
            urls = mine.host_urls if mine else {}
        if host not in urls:
            raise KeyError(f"test bed host {host!r} unknown; known hosts: {', '.join(sorted(urls)) or 'none'}")
        base = urls[host]
    quoted = urllib.parse.quote(str(relpath).lstrip("/"))
    return base.rstrip("/") + "/" + quoted
