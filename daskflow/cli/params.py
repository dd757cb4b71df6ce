"""Click parameter types shared by the CLI modules: hostile input fails at parse time.

Every value a command takes is checked here, before any work starts, so a bad
argument is one ``Error: Invalid value for '--x': ...`` line and exit 2 (click's
usage-error convention) — never a traceback, a hang, or a silently replaced
value. Ranges: counts ``>= 1``, ports ``0..65535`` (0: any free port),
addresses ``[scheme://]host:port`` with a scheme Dask knows, memory sizes that
parse and are at most :data:`MAX_MEMORY_BYTES`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

from daskflow.errors import DaskflowError

#: limits and counts of things: at least one, at most a number no catalog holds
COUNT = click.IntRange(min=1, max=1_000_000)
#: worker processes started on this machine (embedded cluster, `cluster up`): more is a fork bomb, not a cluster
LOCAL_WORKERS = click.IntRange(min=1, max=512)
#: threads per worker process
THREADS = click.IntRange(min=1, max=1024)
#: a TCP port; 0 asks the OS for any free port
PORT = click.IntRange(min=0, max=65535)
#: hops to follow in lineage (0: just the asset)
DEPTH = click.IntRange(min=0, max=1_000_000)


class CheckedType(click.ParamType):
    """A click type whose value is converted by a daskflow parser; its ``DaskflowError`` is click's usage line."""

    def __init__(self, name: str, parser: str):
        self.name = name
        self._parser = parser  # "module:function", imported lazily (the CLI starts fast)

    def convert(self, value, param, ctx):
        import importlib

        module, function = self._parser.split(":")
        try:
            return getattr(importlib.import_module(module), function)(value)
        except DaskflowError as exc:
            self.fail(str(exc), param, ctx)


class TraceSpecType(click.ParamType):
    """A trace JSON file (validated by loading it) or a generated bag ``skewed-bag[:SEED[:N]]``."""

    name = "trace"

    def convert(self, value, param, ctx):
        from daskflow.replay.trace import load_trace, parse_generated_spec

        try:
            if parse_generated_spec(str(value)) is None:
                trace = load_trace(value)
                if trace.total_work_s() <= 0:  # refuse before a cluster is started for it
                    self.fail(f"trace {str(value)!r}: every runtime_s is 0; nothing to replay", param, ctx)
        except DaskflowError as exc:
            self.fail(str(exc), param, ctx)
        return value


class SinceType(click.ParamType):
    """An ISO date/time or a duration ago (``7d``, ``12h``), checked to be a moment in years 1..9999."""

    name = "since"

    def convert(self, value, param, ctx):
        import datetime as dt
        import re

        import dask.utils

        text = str(value).strip()
        try:
            if re.fullmatch(r"\d+(\.\d+)?\s*[a-zA-Z]+", text):
                seconds = dask.utils.parse_timedelta(text)
                dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)
            else:
                dt.datetime.fromisoformat(text)
        except (ValueError, KeyError, OverflowError, TypeError):
            self.fail(f"{text[:40]!r} is neither an ISO date/time (2024-01-31, 2024-01-31T12:00) "
                      f"nor a duration ago within the calendar (7d, 12h)", param, ctx)
        return text


#: a scheduler address (:func:`daskflow.connection.parse_address`)
ADDRESS = CheckedType("address", "daskflow.connection:parse_address")
TRACE = TraceSpecType()
SINCE = SinceType()
#: ``auto``, a byte count, a fraction of the machine (``0.5``) or a size like ``4GB``
MEMORY = CheckedType("memory", "daskflow.cluster:parse_memory_limit")


@contextlib.contextmanager
def read_only_catalog() -> Iterator[Any]:
    """The catalog for a read-only command, never creating its file.

    Yields the configured :class:`~daskflow.catalog.Catalog` when its SQLite
    file exists; otherwise an *empty* catalog in a temporary directory (removed
    on exit) whose ``path`` names the configured file, so ``runs``, ``lineage``
    and ``assets`` on a fresh home answer "nothing yet" and leave no file behind.
    """
    import pathlib
    import tempfile

    from daskflow.catalog import Catalog

    catalog = Catalog()
    if catalog.path.exists():
        try:  # a run whose client died shows as failed (abandoned) on the next command, read-only ones too
            catalog.mark_abandoned_runs()
        except Exception:  # noqa: BLE001 - best effort: a read-only or locked catalog is still readable
            pass
        yield catalog
        return
    configured_path = catalog.path
    with tempfile.TemporaryDirectory(prefix="daskflow-empty-catalog-") as scratch:
        empty = Catalog(pathlib.Path(scratch) / "catalog.sqlite")
        empty.path = configured_path  # messages name the file the user configured
        try:
            yield empty
        finally:
            empty.close()


def read_only_catalog_for_command() -> Any:
    """:func:`read_only_catalog` held open until the current click command ends."""
    return click.get_current_context().with_resource(read_only_catalog())


def check_cluster_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--address`` callback: without an address, a stale cluster file is reported before any work starts.

    (A run would otherwise load and plan the pipeline, record a run and only
    then find the cluster file's scheduler gone.)
    """
    if value is None:
        from daskflow.connection import resolve_address

        resolve_address(None)  # ClusterError -> `error: ...`, exit 2 (daskflow.cli.DaskflowGroup)
    return value
