"""CLI command for the timeline: ``daskflow daemon PIPELINE... [--address ...]``.

Foreground process; SIGTERM or Ctrl-C stops it cleanly (runs already launched
keep running in their launcher processes). Load mistakes (bad cron, unknown
target, a second daemon on the catalog) print one ``error: ...`` line, exit 2.
"""

from __future__ import annotations

import logging
import sys

import click

from daskflow.errors import DaskflowError


@click.command("daemon")
@click.argument("pipelines", nargs=-1, required=True)
@click.option("--address", default=None, help="Scheduler address runs launch on (default: cluster file, else "
                                              "an embedded cluster per run).")
@click.option("--max-iterations", type=int, default=None, hidden=True, help="Stop after N ticks (tests).")
def daemon_command(pipelines: tuple[str, ...], address: str | None, max_iterations: int | None) -> None:
    """Tick the schedules and sensors of PIPELINE(s) and launch their runs, exactly once."""
    from daskflow.timeline.daemon import run_daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        run_daemon(list(pipelines), address=address, max_iterations=max_iterations)
    except DaskflowError as exc:
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2)


commands = [daemon_command]
