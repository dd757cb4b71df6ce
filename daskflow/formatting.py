"""Numbers read from loosely typed payloads, and shown to people.

Decision events, recorder rows and summaries carry numbers that may be
missing, NaN, numpy scalars or strings; :func:`finite_float` is the one
reading of them. Bytes are formatted by ``dask.utils.format_bytes`` (the
units Dask's own dashboard and logs use), never by hand; this module only
adds the placeholder for a value that is unknown.
"""

from __future__ import annotations

import math
from typing import Any

import dask.utils


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float; None for None, NaN, infinity or a non-number.

    >>> finite_float("2.5"), finite_float(float("nan")), finite_float(None)
    (2.5, None, None)
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_bytes(value: Any, missing: str = "-") -> str:
    """``dask.utils.format_bytes`` of ``value``; ``missing`` for None, NaN or a non-number.

    >>> format_bytes(3 * 2**20), format_bytes(None), format_bytes(None, missing="?")
    ('3.00 MiB', '-', '?')
    """
    number = finite_float(value)
    return missing if number is None else dask.utils.format_bytes(int(number))
