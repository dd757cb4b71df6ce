"""Bounds on user-given numbers that are valid Python but absurd for a run.

One place for the limits the definition layer enforces, so a typo such as
``retries=10**12`` fails at definition time with one line instead of being
accepted silently (and retried forever). Size limits on partitions and runs
are settings (``daskflow.execution.max-partitions`` / ``max-tasks-per-run``)
and live with the partitions (:func:`daskflow.partitions.check_run_size`).
"""

from __future__ import annotations

from daskflow.errors import AssetDefinitionError

#: an asset retried more often than this is a bug, not resilience (``retries=`` and ``RetryPolicy.max_retries``)
MAX_RETRIES = 1000


def check_retries(retries: object, owner: str) -> int:
    """``retries`` if it is an int in ``0..MAX_RETRIES``, else :class:`AssetDefinitionError`.

    >>> check_retries(2, "asset 'orders'")
    2
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        shown = retries if not isinstance(retries, int) or abs(retries) < 10**9 else f"{type(retries).__name__} of {len(str(retries))} digits"
        raise AssetDefinitionError(
            f"{owner}: retries must be an int >= 0 and <= {MAX_RETRIES}, got {shown!r}. Fix: e.g. retries=2."
        )
    return retries
