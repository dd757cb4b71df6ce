"""The ``if __name__ == "__main__":`` guard an embedded cluster needs in a plain script.

Design note
-----------
The embedded cluster's workers are processes started with
``multiprocessing``'s *spawn* method (distributed's default): each one
re-imports the user's script as ``__mp_main__``. A script that calls
:func:`daskflow.materialize` at top level would start a cluster again inside
every worker, and distributed answers with a wall of ``Nanny failed to
start``. Before starting an embedded cluster, :func:`check_main_guard` finds
the top-level line of the ``__main__`` script that led to the call and, when
that line is not inside an ``if __name__ == "__main__":`` block, raises ONE
line saying so. Notebooks, ``python -c``, the REPL and the ``daskflow`` CLI
have no script file to re-import and are never refused;
:func:`unguarded_line` is the pure part (source and line number in, answer
out).
"""

from __future__ import annotations

import ast
import inspect
import sys
from types import FrameType

from daskflow.errors import DaskflowError

__all__ = ["MainGuardError", "check_main_guard", "unguarded_line"]


class MainGuardError(DaskflowError):
    """``materialize()`` was called at the top level of a script without the ``__main__`` guard."""


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either order)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def unguarded_line(source: str, lineno: int) -> bool:
    """Whether top-level line ``lineno`` of ``source`` runs on import (is outside every ``__main__`` guard).

    >>> src = "import daskflow\\nif __name__ == '__main__':\\n    daskflow.materialize('p.py')\\n"
    >>> unguarded_line(src, 3), unguarded_line(src + "daskflow.materialize('p.py')\\n", 4)
    (False, True)
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False  # cannot tell: never refuse
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            end = getattr(node, "end_lineno", None) or lineno
            body_start = node.body[0].lineno if node.body else node.lineno
            if body_start <= lineno <= end and not any(
                    o.lineno <= lineno <= (o.end_lineno or o.lineno) for o in node.orelse):
                return False
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if node.lineno <= lineno <= (getattr(node, "end_lineno", None) or node.lineno):
                return False  # inside a function body: that is not the top-level line
    return True


def _script_frame(frame: FrameType | None) -> FrameType | None:
    """The outermost frame running the ``__main__`` script's top-level code."""
    found = None
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") in ("__main__", "__mp_main__"):
            found = frame
        frame = frame.f_back
    return found


def check_main_guard(frame: FrameType | None = None) -> None:
    """Raise :class:`MainGuardError` when an unguarded top-level script line is starting an embedded cluster."""
    import dask.config

    method = str(dask.config.get("distributed.worker.multiprocessing-method", "spawn"))
    if method == "fork":
        return  # forked workers do not re-import the script
    main_module = sys.modules.get("__main__")
    spec_name = getattr(getattr(main_module, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        return  # `python -m package`: spawn does not re-run a package's __main__ in the workers
    script = _script_frame(frame if frame is not None else inspect.currentframe())
    if script is None:
        return
    path = script.f_globals.get("__file__")
    if not path or not str(path).endswith(".py"):
        return
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except OSError:
        return
    if unguarded_line(source, script.f_lineno):
        raise MainGuardError(
            f"{path}:{script.f_lineno} starts an embedded Dask cluster at import time; its worker processes "
            f"re-import the script, so put the call under `if __name__ == \"__main__\":`")
