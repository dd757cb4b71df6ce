"""Human-readable numbers for CLI and ``explain`` output.

Bytes are formatted by ``dask.utils.format_bytes`` (the units Dask's own
dashboard and logs use), never by hand; this module only adds the placeholder
for a value that is unknown.
"""

from __future__ import annotations

import math
from typing import Any

import dask.utils


def format_bytes(value: Any, missing: str = "-") -> str:
    """``dask.utils.format_bytes`` of ``value``; ``missing`` for None, NaN or a non-number.

    >>> format_bytes(3 * 2**20), format_bytes(None), format_bytes(None, missing="?")
    ('3.00 MiB', '-', '?')
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return missing
    if not math.isfinite(number):
        return missing
    return dask.utils.format_bytes(int(number))
