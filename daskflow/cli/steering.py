"""CLI commands: ``daskflow explain KEY`` and ``daskflow decisions``.

Both read from a running cluster when one answers (``--address``, else the
cluster file of ``daskflow cluster up``): the steering plugin's decisions and
the recorder's rows. Without one they read the durable audit in the catalog
and the history dataset (see :mod:`daskflow.explain`). Errors are one
``error: ...`` line, exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import sys

import click

from daskflow.cli import params
from daskflow.errors import DaskflowError


def _fail(exc: BaseException, code: int = 2) -> None:
    click.echo("error: " + " ".join(str(exc).split()), err=True)
    sys.exit(code)


@contextlib.contextmanager
def _maybe_client(address: str | None):
    """A client for ``address`` (an explicit address must answer); else the cluster file's, if it answers; else None."""
    from daskflow.connection import connect, resolve_address

    resolved = resolve_address(address)
    if resolved is None:
        yield None
        return
    try:
        client = connect(resolved, timeout="10s" if address else "3s")
    except (OSError, TimeoutError) as exc:
        if address:
            _fail(DaskflowError(f"cannot reach the scheduler at {address} ({type(exc).__name__}); without --address "
                                "explain/decisions read the durable audit in the catalog"))
        yield None  # the cluster file names a cluster that is gone: the audit it is
        return
    with client:
        yield client


@click.command("explain")
@click.argument("key")
@click.option("--run", "run_id", default=None, help="run id or the prefix `daskflow runs` shows (default: the last run of that asset)")
@click.option("--partition", "-p", default=None, help="partition of a partitioned asset")
@click.option("--address", type=params.ADDRESS, default=None, help="scheduler address (default: the cluster file; none: the durable audit)")
@click.option("--history", "history_url", default=None, help="history dataset URL for actual costs (default: daskflow.history.url)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def explain_command(key: str, run_id: str | None, partition: str | None, address: str | None,
                    history_url: str | None, as_json: bool) -> None:
    """Tell one task's story: predicted vs actual, where it ran and the alternatives, why there and why then.

    KEY is an asset key (with --run/--partition), a task key with the run-id prefix `daskflow runs`
    prints, or a full task key. Works without a cluster, from the catalog's durable audit.

    Example: daskflow explain daily_revenue --partition 2024-01-03
    """
    from daskflow.explain import story_for

    try:
        with _maybe_client(address) as client:
            story = story_for(key, run_id=run_id, partition=partition, client=client, history_url=history_url)
    except DaskflowError as exc:
        _fail(exc)
    from daskflow.explain import format_story

    click.echo(json.dumps(story, default=str) if as_json else format_story(story))


@click.command("decisions")
@click.option("--run", "run_id", default=None, help="only this run id (a prefix as `daskflow runs` prints it)")
@click.option("--address", type=params.ADDRESS, default=None, help="scheduler address (default: the cluster file; none: the durable audit)")
@click.option("--history", "history_url", default=None, help="history dataset URL for actual costs (default: daskflow.history.url)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def decisions_command(run_id: str | None, address: str | None, history_url: str | None, as_json: bool) -> None:
    """Summarise steering decisions: steered / held / fallback counts and prediction error.

    The error is the median APE of the predictions, beside that of the per-category running mean
    (what Dask itself estimates) and their ratio. Example: daskflow decisions --run 3f2a9c1b0d4e --json
    """
    from daskflow.explain import format_summary, run_summary

    try:
        with _maybe_client(address) as client:
            summary = run_summary(run_id, client=client, history_url=history_url)
    except DaskflowError as exc:
        _fail(exc)
    click.echo(json.dumps(summary, default=str) if as_json else format_summary(summary, summary.get("run_id")))


commands: list = [explain_command, decisions_command]
