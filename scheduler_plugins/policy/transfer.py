"""Transfer rates learned from what the tasks themselves observe: bytes read from a host, per second.

Design note
-----------
Dask measures bandwidth from the ``sizeof`` of the values it moves. Where a
task's value is a small *handle* to bytes kept in storage (a replayed task on
the test bed, an asset written to a host's disk), the handle moves in
microseconds while its ``sizeof`` is the stored bytes, so that measure is far
too high (~18 × the link on the test bed) and the real cost is paid later,
inside the consumer, reading from the producer's host. A task that reads
stored data reports, per source host, the bytes it read and the seconds it
took (``daskflow.replay.hosted``: task metadata
:data:`~daskflow.replay.hosted.TRANSFER_METADATA_KEY`), and
:class:`TransferRates` keeps per ``(source host, destination host)`` the
median of the recent rates (log scale; reads smaller than ``min_bytes`` are
latency, not rate, and are not observed). A pair never observed falls back
to the median rate of the observed pairs between *different* hosts (a link
is a link), then to the caller's default. Rates persist across runs like the
per-host speeds (:mod:`scheduler_plugins.speed_store`), as priors that this
run's own reads outweigh after a few observations.

Placement (:func:`~scheduler_plugins.policy.placement.estimate_finish`)
prices a dependency at the cheapest replica's pair rate and a stored input
at its host's pair rate whenever rates were learned; otherwise it keeps the
old rules (Dask's measured bandwidth, the configured storage bandwidth).

A rate is what one read got; reads that share a link share its rate.
:class:`LinkLoad` keeps the remote reads the plan itself placed (per host,
the interval each is expected to take), so placement prices a read by the
seconds other planned reads overlap it on its source's or destination's
link (processor sharing: each overlapping read delays it by at most its own
length). Without that, every placement sees an idle link, and a burst of
consumers placed off their data in one round (each "only 0.8 s" of reads)
queue behind each other on one host's link - the montage traces, where
steering moved 25-40 % more bytes than stock Dask and finished later.
Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LinkLoad", "TransferRates"]

#: one observed rate counts at most this far from the median (bytes/s, log scale clamp)
_MIN_RATE = 1e3
_MAX_RATE = 1e12


@dataclass(slots=True)
class TransferRates:
    """Per ``(source host, destination host)``: the median recent read rate, in bytes per second.

    >>> rates = TransferRates(min_bytes=1000)
    >>> for _ in range(3):
    ...     _ = rates.observe("10.0.0.1", "10.0.0.2", nbytes=25_000_000, seconds=1.0)
    >>> [round(r) if r else r for r in (rates.rate("10.0.0.1", "10.0.0.2"), rates.rate("10.0.0.3", "10.0.0.2"), rates.rate("10.0.0.2", "10.0.0.2"))]
    [25000000, 25000000, None]
    >>> rates.observe("10.0.0.1", "10.0.0.2", nbytes=10, seconds=1.0)  # too small to say anything about a rate
    False
    """

    window: int = 16
    min_bytes: int = 1 << 20
    prior_n: float = 2.0  # a persisted rate counts as this many observations
    samples: dict[tuple[str, str], deque[float]] = field(default_factory=dict)  # pair -> recent log rates
    rates: dict[tuple[str, str], float] = field(default_factory=dict)  # pair -> current estimate (bytes/s)
    prior: dict[tuple[str, str], float] = field(default_factory=dict)  # pair -> persisted log rate
    remote_rate: float | None = None  # median over the pairs of different hosts

    def observe(self, source: str, destination: str, nbytes: float, seconds: float) -> bool:
        """One read by a task on ``destination`` of ``nbytes`` stored on ``source``; False when not used."""
        if not (nbytes >= self.min_bytes and seconds > 0 and source and destination):
            return False
        value = math.log(max(_MIN_RATE, min(_MAX_RATE, float(nbytes) / float(seconds))))
        pair = (str(source), str(destination))
        self.samples.setdefault(pair, deque(maxlen=self.window)).append(value)
        self._refresh(pair)
        return True

    def _refresh(self, pair: tuple[str, str]) -> None:
        samples = self.samples.get(pair, ())
        n = len(samples)
        prior = self.prior.get(pair)
        if n and prior is not None:
            value = (n * statistics.median(samples) + self.prior_n * prior) / (n + self.prior_n)
        elif n:
            value = statistics.median(samples)
        elif prior is not None:
            value = prior
        else:
            self.rates.pop(pair, None)
            return
        self.rates[pair] = math.exp(value)
        remote = sorted(rate for (src, dst), rate in self.rates.items() if src != dst)
        self.remote_rate = remote[len(remote) // 2] if remote else None

    def rate(self, source: str, destination: str) -> float | None:
        """The learned rate of the pair; a pair of different hosts never seen: the other links' median; else None."""
        known = self.rates.get((source, destination))
        if known is not None:
            return known
        return self.remote_rate if source != destination else None

    @property
    def learned(self) -> bool:
        return bool(self.rates)

    def pair_rates(self) -> dict[tuple[str, str], float]:
        """The current estimates, for a round's :class:`~scheduler_plugins.policy.model.RoundContext` (a copy)."""
        return dict(self.rates)

    def persisted(self, min_n: int = 1) -> dict[str, dict[str, float]]:
        """``{"SRC->DST": {"log_rate", "n"}}`` of the pairs with at least ``min_n`` observations in this run."""
        return {f"{src}->{dst}": {"log_rate": round(math.log(self.rates[(src, dst)]), 6), "n": len(samples)}
                for (src, dst), samples in self.samples.items() if len(samples) >= max(min_n, 1) and (src, dst) in self.rates}

    def load_priors(self, persisted: Mapping[str, Mapping[str, float]]) -> None:
        """Use persisted ``{"SRC->DST": {"log_rate"}}`` entries as priors (bad entries are ignored)."""
        for name, entry in persisted.items():
            src, sep, dst = str(name).partition("->")
            try:
                value = float(entry["log_rate"])
            except (KeyError, TypeError, ValueError):
                continue
            if sep and src and dst and math.isfinite(value):
                self.prior[(src, dst)] = max(math.log(_MIN_RATE), min(math.log(_MAX_RATE), value))
                self._refresh((src, dst))


@dataclass(slots=True)
class LinkLoad:
    """Remote reads the plan placed, per host: ``(start, end)`` on the caller's clock, for :meth:`delay_s`.

    >>> load = LinkLoad()
    >>> load.add("h0", "h1", start=0.0, seconds=1.0)
    >>> load.delay_s("h0", "h2", start=0.5, seconds=1.0)  # shares h0's link for 0.5 s
    0.5
    >>> load.delay_s("h2", "h3", start=0.5, seconds=1.0), load.delay_s("h0", "h2", start=2.0, seconds=1.0)
    (0.0, 0.0)
    >>> load.prune(now=5.0); load.by_host
    {}
    """

    max_reads: int = 1024  # per host, the most recent kept (older ones have ended)
    by_host: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def add(self, source: str, destination: str, start: float, seconds: float) -> None:
        """A read of ``seconds`` (alone on the link) from ``source`` to ``destination``, starting at ``start``."""
        if not (seconds > 0 and source and destination and source != destination):
            return
        interval = (float(start), float(start) + float(seconds))
        for host in (source, destination):
            self.by_host.setdefault(host, deque(maxlen=self.max_reads)).append(interval)

    def delay_s(self, source: str, destination: str, start: float, seconds: float) -> float:
        """Extra seconds a read of ``seconds`` from ``start`` waits for planned reads on either end's link.

        Each overlapping read on a link delays it by its overlap, at most by
        the read's own length (two reads sharing a link take twice as long);
        the busier of the two links counts.
        """
        if not (seconds > 0 and source != destination and self.by_host):
            return 0.0
        end = start + seconds
        worst = 0.0
        for host in (source, destination):
            delay = 0.0
            for begin, finish in self.by_host.get(host, ()):
                overlap = min(end, finish) - max(start, begin)
                if overlap > 0:
                    delay += min(overlap, seconds)
            worst = max(worst, delay)
        return worst

    def prune(self, now: float) -> None:
        """Forget reads that ended before ``now`` (once per round: O(reads))."""
        for host in list(self.by_host):
            kept = deque((i for i in self.by_host[host] if i[1] > now), maxlen=self.max_reads)
            if kept:
                self.by_host[host] = kept
            else:
                del self.by_host[host]
