"""daskflow settings live in dask.config under the ``daskflow`` namespace.

Defaults ship in ``daskflow.yaml`` beside this module; users override them in
their dask config files or with environment variables
(``DASK_DASKFLOW__STEERING__MODE=shadow``). Modules read settings in their
constructors through :func:`get`, never at import time, so a test can change
them with ``dask.config.set``.
"""

from __future__ import annotations

import copy
import functools
import os
import pathlib
from typing import Any

import dask.config
import yaml

_DEFAULTS_FILE = pathlib.Path(__file__).with_name("daskflow.yaml")
_SCHEMA_FILE = pathlib.Path(__file__).with_name("daskflow-schema.yaml")


def _load_defaults() -> None:
    with open(_DEFAULTS_FILE) as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)
    # Env overrides (DASK_DASKFLOW__...) were collected before our defaults
    # were registered; refresh so they win over the defaults just added.
    dask.config.refresh()


_load_defaults()


@functools.lru_cache(maxsize=1)
def _packaged_defaults() -> dict:
    with open(_DEFAULTS_FILE) as f:
        return yaml.safe_load(f)["daskflow"]


def _packaged_default(name: str) -> Any:
    """The value ``daskflow.yaml`` ships for ``daskflow.<name>`` (None when it has none)."""
    node: Any = _packaged_defaults()
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return copy.deepcopy(node)


def get(name: str, default: Any = None) -> Any:
    """Read ``daskflow.<name>`` from dask.config; without ``default``, the packaged one from ``daskflow.yaml``.

    (dask.config can lose our registered defaults when a test harness restores
    a config snapshot taken before daskflow was imported.)

    >>> get("steering.mode") in {"off", "shadow", "steer"}
    True
    """
    value = dask.config.get(f"daskflow.{name}", default=None)
    if value is None:
        return _packaged_default(name) if default is None else default
    return value


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
