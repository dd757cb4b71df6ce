"""daskflow settings live in dask.config under the ``daskflow`` namespace.

Defaults ship in ``daskflow.yaml`` beside this module — the only place a
default is written; every key there has an entry in ``daskflow-schema.yaml``.
Users override them in their dask config files or with environment variables
(``DASK_DASKFLOW__STEERING__MODE=shadow``). Modules read settings in their
constructors through :func:`get`, never at import time, so a test can change
them with ``dask.config.set``.

:func:`get` takes no default: a name that is not in ``daskflow.yaml`` raises
:class:`~daskflow.errors.UnknownSettingError` (a typo fails loudly), and a
setting absent from dask.config (e.g. after a test reset the config) reads as
its packaged default. Optional settings are ``null`` in ``daskflow.yaml`` and
read as ``None``. ``tests/test_config.py`` fails on package code that passes an
inline default.
"""

from __future__ import annotations

import copy
import os
import pathlib
from typing import Any

import dask.config
import yaml

from daskflow.errors import UnknownSettingError

_DEFAULTS_FILE = pathlib.Path(__file__).with_name("daskflow.yaml")
_SCHEMA_FILE = pathlib.Path(__file__).with_name("daskflow-schema.yaml")


def _read_defaults() -> dict:
    with open(_DEFAULTS_FILE) as f:
        return yaml.safe_load(f)


#: the packaged defaults (``daskflow.yaml``), kept to validate names and as the fallback
PACKAGED_DEFAULTS: dict = _read_defaults()["daskflow"]


def _load_defaults() -> None:
    dask.config.update_defaults({"daskflow": copy.deepcopy(PACKAGED_DEFAULTS)})
    # Env overrides (DASK_DASKFLOW__...) were collected before our defaults
    # were registered; refresh so they win over the defaults just added.
    dask.config.refresh()


_load_defaults()


_NOT_GIVEN: Any = object()


def packaged_default(name: str) -> Any:
    """The value ``daskflow.yaml`` ships for ``daskflow.<name>``; UnknownSettingError when it has none.

    ``-`` and ``_`` are interchangeable in names, as in dask.config.

    >>> packaged_default("steering.mode")
    'steer'
    """
    node: Any = PACKAGED_DEFAULTS
    walked: list[str] = []
    for part in name.split("."):
        found = False
        if isinstance(node, dict):
            for candidate in (part, part.replace("_", "-"), part.replace("-", "_")):
                if candidate in node:
                    node, found = node[candidate], True
                    walked.append(candidate)
                    break
        if not found:
            where = "daskflow." + ".".join(walked) if walked else "daskflow"
            known = ", ".join(sorted(node)) if isinstance(node, dict) and node else "none"
            raise UnknownSettingError(
                f"setting daskflow.{name} is not defined in daskflow/daskflow.yaml; known keys under {where}: {known}"
                " (add the key with its default to daskflow.yaml and daskflow-schema.yaml)"
            )
    return node


def get(name: str, default: Any = _NOT_GIVEN) -> Any:
    """Read ``daskflow.<name>``; its default is the one in ``daskflow.yaml``.

    Raises :class:`~daskflow.errors.UnknownSettingError` for a name that
    ``daskflow.yaml`` does not define. ``default`` is accepted only so that
    call sites not yet converted keep working, and is ignored: the packaged
    default always applies (``tests/test_config.py`` lists those call sites).

    >>> get("steering.mode") in {"off", "shadow", "steer"}
    True
    >>> packaged_default("storage.url") is None   # optional: null in daskflow.yaml, read as None
    True
    """
    fallback = packaged_default(name)
    if isinstance(fallback, (dict, list)):
        fallback = copy.deepcopy(fallback)  # callers may mutate what they get
    return dask.config.get(f"daskflow.{name}", default=fallback)


def home() -> pathlib.Path:
    """The daskflow home: config ``daskflow.home``, else ``$DASKFLOW_HOME``, else ``./.daskflow``."""
    configured = get("home") or os.environ.get("DASKFLOW_HOME") or ".daskflow"
    return pathlib.Path(configured).expanduser().absolute()


def home_url(setting: str, subdir: str) -> str:
    """A URL setting (``storage.url`` ...), defaulting to ``<home>/<subdir>``."""
    value = get(setting)
    if value:
        return str(value)
    return str(home() / subdir)


def effective_config() -> dict:
    """The whole effective ``daskflow`` namespace (defaults + files + env)."""
    return dask.config.get("daskflow")


def schema() -> dict:
    with open(_SCHEMA_FILE) as f:
        return yaml.safe_load(f)


def history_url(url: str | None = None) -> str:
    """``url`` if given, else ``daskflow.history.url``, else ``<home>/history``."""
    return str(url) if url else home_url("history.url", "history")


def models_url(url: str | None = None) -> str:
    """``url`` if given, else ``daskflow.models.url``, else ``<home>/models``."""
    return str(url) if url else home_url("models.url", "models")
