"""CLI commands: ``daskflow explain KEY`` and ``daskflow decisions``.

Both connect to a running cluster (``--address``, else the cluster file of
``daskflow cluster up``) and read the steering plugin's decisions and the
recorder's rows through :mod:`daskflow.explain`.
"""

from __future__ import annotations

import json

import click

from daskflow.cli import params


def _client(address: str | None):
    from daskflow.connection import connect

    return connect(address, timeout="10s")


@click.command("explain")
@click.argument("key")
@click.option("--address", type=params.ADDRESS, default=None, help="scheduler address (default: the cluster file)")
@click.option("--history", "history_url", default=None, help="history dataset URL for actual costs (default: daskflow.history.url)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def explain_command(key: str, address: str | None, history_url: str | None, as_json: bool) -> None:
    """Tell one task's story: predicted vs actual, where it ran and the alternatives, why there and why then.

    Example: daskflow explain "mProject-1a2b3c4d-17" --address tcp://127.0.0.1:8786
    """
    from daskflow import config
    from daskflow.explain import (
        fetch_actuals,
        fetch_decisions,
        format_story,
        task_story,
    )

    with _client(address) as client:
        decisions = fetch_decisions(client, key=key)
        rows = fetch_actuals(client, keys=[key], history_url=config.history_url(history_url))
    story = task_story(key, decisions, rows[-1] if rows else None)
    click.echo(json.dumps(story, default=str) if as_json else format_story(story))


@click.command("decisions")
@click.option("--run", "run_id", default=None, help="only this run id")
@click.option("--address", type=params.ADDRESS, default=None, help="scheduler address (default: the cluster file)")
@click.option("--history", "history_url", default=None, help="history dataset URL for actual costs (default: daskflow.history.url)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def decisions_command(run_id: str | None, address: str | None, history_url: str | None, as_json: bool) -> None:
    """Summarise steering decisions: steered / held / fallback counts and prediction error.

    Example: daskflow decisions --run 3f2a... --json
    """
    from daskflow import config
    from daskflow.explain import (
        fetch_actuals,
        fetch_decisions,
        format_summary,
        steering_state,
        summarize,
    )

    with _client(address) as client:
        decisions = fetch_decisions(client, run_id=run_id)
        rows = fetch_actuals(client, run_id=run_id, history_url=config.history_url(history_url))
        state = steering_state(client)
    summary = summarize(decisions, rows, state)
    click.echo(json.dumps(summary, default=str) if as_json else format_summary(summary, run_id))


commands: list = [explain_command, decisions_command]
