"""Load a pipeline's :class:`~daskflow.definitions.Definitions` from a module or a file.

Design note
-----------
``load_definitions(target)`` accepts a ``Definitions`` (returned as is), a
module object, a module name (``"pkg.pipeline"``) or a path to a ``.py`` file
(``"examples/etl_pipeline.py"``). Inside the module it uses, in order:

1. the attribute ``defs`` when it is a ``Definitions``;
2. the only ``Definitions`` instance among the module's attributes (several →
   error asking to name one ``defs``);
3. otherwise every ``@asset`` and ``@asset_check`` function, ``daskflow.schedule``
   and ``@daskflow.sensor`` found in the module namespace (imported ones
   included), in namespace order.

A file is executed as a fresh module named ``daskflow_pipeline_<stem>``; its
directory is put on ``sys.path`` (like ``python file.py``) so sibling imports
work. The module is in ``sys.modules`` only while it executes: afterwards plain
pickle cannot pickle its functions by reference, so Dask falls back to
cloudpickle, which ships them *by value* to workers that cannot import the
file. Sibling modules the file imports from its own directory (its own files,
see :func:`is_sibling_module` — never installed packages, even from a
virtualenv inside that directory) are registered with cloudpickle by value
for the same reason.

Every failure is a :class:`PipelineLoadError` whose message is one line: the
file/module, what went wrong, and the fix; the original exception is chained.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pathlib
import re
import sys
import traceback
import types

from daskflow.definitions import Definitions, check_spec_of, spec_of
from daskflow.errors import PipelineLoadError
from daskflow.timeline.specs import schedule_spec_of, sensor_spec_of

__all__ = ["definitions_from_module", "dumps_by_value", "is_sibling_module", "load_definitions", "module_name_for_file"]


def module_name_for_file(path: str) -> str:
    """The module name a pipeline file is loaded under (``daskflow_pipeline_<stem>``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return "daskflow_pipeline_" + re.sub(r"\W", "_", stem)


def _looks_like_path(target: str) -> bool:
    # A bare word that is a directory (a package) is imported as a module, not read as a path.
    return target.endswith(".py") or os.sep in target or "/" in target or os.path.isfile(target)


def load_definitions(target: object) -> Definitions:
    """Return the ``Definitions`` of a module object, module name or ``.py`` file path.

    >>> import daskflow.definitions as d
    >>> load_definitions(d.Definitions()).assets
    ()
    """
    if isinstance(target, Definitions):
        return target
    if isinstance(target, types.ModuleType):
        return definitions_from_module(target, str(getattr(target, "__file__", None) or target.__name__))
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if not isinstance(target, str) or not target.strip():
        raise PipelineLoadError(
            f"cannot load a pipeline from {target!r}: expected a module, a module name or a .py file path. "
            f"Fix: e.g. load_definitions('examples/etl_pipeline.py')."
        )
    if _looks_like_path(target):
        return definitions_from_module(_load_file(target), target)
    return definitions_from_module(_import_module(target), target)


def _error_location(exc: BaseException, filename: str) -> str:
    if isinstance(exc, SyntaxError):
        return f"{filename}:{exc.lineno}" if exc.lineno else filename
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(filename)]
    return f"{filename}:{frames[-1].lineno}" if frames else filename


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_file(path: str) -> types.ModuleType:
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise PipelineLoadError(
            f"pipeline file {path!r} {what} (working directory {os.getcwd()}). "
            f"Fix: pass the path of a .py file that defines assets, or an importable module name."
        )
    if not path.endswith(".py"):
        raise PipelineLoadError(
            f"pipeline file {path!r} is not a .py file. Fix: pass a Python file that defines assets."
        )
    name = module_name_for_file(path)
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise PipelineLoadError(f"pipeline file {path!r} cannot be loaded as a Python module. Fix: check the file.")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    previous = sys.modules.get(name)
    modules_before = set(sys.modules)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        if isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
            raise
        raise PipelineLoadError(
            f"{_error_location(exc, path)}: loading the pipeline failed with {_describe(exc)}. "
            f"Fix: correct the error in the file (run 'python {path}' to see the full traceback)."
        ) from exc
    # Not left in sys.modules on purpose: plain pickle then cannot pickle these functions by
    # reference (which workers could not import), so Dask falls back to cloudpickle, which
    # pickles functions of modules missing from sys.modules by value.
    if previous is not None:
        sys.modules[name] = previous
    else:
        sys.modules.pop(name, None)
    _ship_siblings_by_value(set(sys.modules) - modules_before, directory)
    return module


def _ship_siblings_by_value(new_modules: set[str], directory: str) -> None:
    """Register the pipeline's own sibling modules, newly imported, with cloudpickle by value."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle ships with dask
        return
    for top in sorted({name.partition(".")[0] for name in new_modules}):
        module = sys.modules.get(top)
        if module is not None and is_sibling_module(module, directory):
            cloudpickle.register_pickle_by_value(module)  # covers its submodules too


def is_sibling_module(module: types.ModuleType, directory: str) -> bool:
    """Whether ``module`` is one of the pipeline's own files: ``directory/<name>.py`` or ``directory/<name>/``.

    Decided by where the module *is*, not by a path prefix: a virtualenv inside
    the pipeline's folder (``proj/.venv`` beside ``proj/pipe.py``) holds pandas
    under ``proj/.venv/lib/.../site-packages``, which shares the prefix but is
    installed code and must travel by reference (shipping it by value fails on
    C extensions). So only a top-level module whose file is directly in
    ``directory`` (or a package directly in it) counts, and never one inside
    site-packages/dist-packages or a directory holding ``pyvenv.cfg``.

    >>> import json
    >>> is_sibling_module(json, os.path.dirname(json.__file__))  # stdlib is never a sibling
    False
    """
    name = module.__name__.partition(".")[0]
    filename = getattr(module, "__file__", None)
    if not filename:  # namespace package or builtin: look at its locations
        locations = list(getattr(getattr(module, "__spec__", None), "submodule_search_locations", None) or [])
        candidates = [os.path.join(location, "") for location in locations]
    else:
        candidates = [filename]
    directory = os.path.realpath(directory)
    if _installed_location(directory):
        return False
    expected = {os.path.join(directory, name + ".py"), os.path.join(directory, name, "__init__.py"),
                os.path.join(directory, name, "")}
    for candidate in candidates:
        real = os.path.realpath(candidate) + (os.sep if candidate.endswith(os.sep) else "")
        if real in expected and not _installed_location(os.path.dirname(real.rstrip(os.sep))):
            return True
    return False


def _installed_location(path: str) -> bool:
    """``path`` is inside site-packages/dist-packages, the interpreter's prefix, or a virtualenv."""
    parts = set(pathlib.PurePath(path).parts)
    if parts & {"site-packages", "dist-packages"}:
        return True
    probe = pathlib.Path(path)
    for folder in (probe, *probe.parents):
        if (folder / "pyvenv.cfg").is_file():
            return True
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    return os.path.realpath(path) == stdlib or any(
        os.path.realpath(path).startswith(os.path.join(prefix, "lib", "")) for prefix in prefixes)


def _import_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise PipelineLoadError(
                f"pipeline module {name!r} was not found (no module named {exc.name!r}). "
                f"Fix: pass a .py file path, or make the module importable (PYTHONPATH / pip install -e .)."
            ) from exc
        raise PipelineLoadError(
            f"pipeline module {name!r}: importing it failed with {_describe(exc)}. "
            f"Fix: install the missing package or correct the import."
        ) from exc
    except Exception as exc:
        location = getattr(exc, "filename", None) if isinstance(exc, SyntaxError) else None
        where = f"{location}:{exc.lineno}" if location else repr(name)
        raise PipelineLoadError(
            f"pipeline module {where}: importing it failed with {_describe(exc)}. "
            f"Fix: correct the error (run 'python -c \"import {name}\"' for the full traceback)."
        ) from exc


def definitions_from_module(module: types.ModuleType, label: str | None = None) -> Definitions:
    """The ``Definitions`` of an already imported module (see the module docstring)."""
    label = label or module.__name__
    namespace = vars(module)
    explicit = namespace.get("defs")
    if isinstance(explicit, Definitions):
        return explicit
    found = [(name, value) for name, value in namespace.items() if isinstance(value, Definitions)]
    if len(found) == 1:
        return found[0][1]
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise PipelineLoadError(
            f"pipeline {label!r} defines several Definitions objects ({names}); expected one. "
            f"Fix: name the one to use 'defs'."
        )
    assets, checks, schedules, sensors = [], [], [], []
    for value in namespace.values():
        if spec_of(value) is not None and not isinstance(value, type):
            assets.append(value)
        elif check_spec_of(value) is not None:
            checks.append(value)
        elif schedule_spec_of(value) is not None:
            schedules.append(value)
        elif sensor_spec_of(value) is not None:
            sensors.append(value)
    if not assets:
        raise PipelineLoadError(
            f"pipeline {label!r} defines no assets. Fix: decorate functions with @daskflow.asset, "
            f"or define 'defs = daskflow.Definitions(assets=[...])'."
        )
    return Definitions(assets=assets, checks=checks, schedules=schedules, sensors=sensors)


# -- shipping functions by value, keeping their file names --------------------
def dumps_by_value(obj: object) -> bytes:
    """``cloudpickle.dumps(obj)``, but code objects keep their real ``co_filename``.

    cloudpickle (3.x) replaces every pickled code object's file name with
    ``"<dynamic-code>"`` (for deterministic payloads), so a pipeline function
    that raises on a worker shows ``File "<dynamic-code>", line 12`` instead of
    the pipeline file. Line numbers survive; only the name is lost. This
    pickler puts the name back, so worker tracebacks name ``pipe.py:12`` (and
    show the source line when the file is readable there).

    >>> import pickle
    >>> def f():
    ...     return 1
    >>> pickle.loads(dumps_by_value(f)).__code__.co_filename == f.__code__.co_filename
    True
    """
    import io

    import cloudpickle

    buffer = io.BytesIO()
    _pickler_class()(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(obj)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def _pickler_class():
    """A cloudpickle Pickler whose code reducer keeps file names (built lazily: cloudpickle is imported late)."""
    import collections

    import cloudpickle

    reduce_code = cloudpickle.Pickler.dispatch_table[types.CodeType]  # cloudpickle's own code reducer

    def reduce_code_keeping_filename(code: types.CodeType):
        constructor, args = reduce_code(code)
        return constructor, tuple(code.co_filename if value == "<dynamic-code>" else value for value in args)

    class FilenameKeepingPickler(cloudpickle.Pickler):
        # pickle's class-level reducer table, never mutated
        dispatch_table = collections.ChainMap(  # noqa: RUF012
            {types.CodeType: reduce_code_keeping_filename}, cloudpickle.Pickler.dispatch_table)

    return FilenameKeepingPickler
