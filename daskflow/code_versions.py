"""Code versions: what an asset's data version hashes for "the code that made it".

Design note
-----------
A declared ``code_version`` wins; without one the version is a fingerprint of
the function's bytecode and constants (:func:`code_fingerprint`), read from the
function object itself, so editing an asset makes it stale while moving or
re-commenting it does not. Pure: no file I/O, no Dask.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from daskflow.asset_specs import AssetSpec, _qualname

__all__ = ["code_fingerprint", "code_version_of"]


def _code_payload(code: Any) -> bytes:
    """Bytes describing a code object: bytecode, constants (recursively), names.

    Line numbers, comments and memory addresses are left out, so moving or
    re-commenting a function keeps its fingerprint; frozenset constants are
    sorted because their order depends on hash randomization.
    """
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            parts.append(_code_payload(const))
        elif isinstance(const, frozenset):
            parts.append(repr(sorted(map(repr, const))).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)


def code_fingerprint(fn: Callable) -> str:
    """``"code:"`` + 16 hex digits of the SHA-256 of ``fn``'s bytecode and constants.

    Cheap (no file I/O) and read from the function object itself, so it
    describes exactly the code that runs. Changes with the Python version.
    """
    code = getattr(fn, "__code__", None)
    payload = _code_payload(code) if code is not None else _qualname(fn).encode()
    return "code:" + hashlib.sha256(payload).hexdigest()[:16]


def code_version_of(spec: AssetSpec) -> str:
    """The declared ``code_version``, else :func:`code_fingerprint` of the function.

    Data versions hash this, so editing an asset without a ``code_version``
    makes it stale; declaring one opts into manual control (bump it to re-run).
    Functions built in a loop share their code, hence their fingerprint
    (closure values are not part of it): give those an explicit ``code_version``.

    >>> code_version_of(AssetSpec(key="one", name="one", fn=lambda: 1, code_version="7"))
    '7'
    """
    if spec.code_version is not None:
        return spec.code_version
    return code_fingerprint(spec.fn)
