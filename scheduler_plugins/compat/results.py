"""Task results as the scheduler reports them: the one ``startstops`` parser."""

from __future__ import annotations

from collections.abc import Iterable


def startstops_compute(startstops: Iterable[dict] | None) -> tuple[float | None, float | None, float | None]:
    """``(start, stop, compute seconds)`` from a processing->memory transition's ``startstops``.

    The one parser of ``startstops``. Worker clock; ``start``/``stop`` span
    all ``compute`` phases and the seconds are their sum. All None when there
    is no compute phase.

    >>> startstops_compute([{"action": "transfer", "start": 0, "stop": 1}, {"action": "compute", "start": 1.0, "stop": 3.5}])
    (1.0, 3.5, 2.5)
    """
    start = stop = None
    total = 0.0
    found = False
    for item in startstops or ():
        if item.get("action") != "compute":
            continue
        found = True
        begin, end = float(item["start"]), float(item["stop"])
        start = begin if start is None else min(start, begin)
        stop = end if stop is None else max(stop, end)
        total += max(0.0, end - begin)
    return (start, stop, total if found else None)


def startstops_compute_start(startstops: Iterable[dict] | None) -> float | None:
    """Start of the compute phase on the scheduler's clock (the worker adds its measured offset; see
    :func:`startstops_compute`)."""
    return startstops_compute(startstops)[0]


def startstops_compute_s(startstops: Iterable[dict] | None) -> float | None:
    """Compute seconds (see :func:`startstops_compute`)."""
    return startstops_compute(startstops)[2]
