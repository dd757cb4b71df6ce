"""The ``daskflow`` command line.

Commands live in one module per concern (``pipeline``, ``model``, ``bench``,
``steering``, ``cluster``, ``config``, ``timeline``, ``maintenance``, ``backfill``, ``audit``);
each exposes ``commands``, a list of click commands or groups, which are attached
to :data:`main` here. A later module may replace an earlier module's command with a
group around it, as ``backfill`` does for ``runs`` (``runs cancel``).

Errors never reach the user as tracebacks (:class:`DaskflowGroup`): a bad
argument is click's one usage line, exit 2; a :class:`~daskflow.errors.DaskflowError`
from any command is ``error: <one line>``, exit 2; Ctrl-C is one line, exit
130; anything unexpected is one line naming the exception plus a hint to rerun
with ``DASKFLOW_DEBUG=1`` for the traceback, exit 1 (a failed run also exits 1).
"""

from __future__ import annotations

import importlib
import os

import click

from daskflow.errors import DaskflowError

_COMMAND_MODULES = ("pipeline", "model", "bench", "steering", "cluster", "config", "timeline", "maintenance",
                    "backfill", "audit")

#: exit codes of the whole CLI
EXIT_FAILED = 1  # a run failed, or an unexpected error
EXIT_USAGE = 2  # bad input: argument, pipeline file, address, selection ...
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace, newlines and log tails collapsed)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _debug() -> bool:
    return os.environ.get("DASKFLOW_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


class DaskflowGroup(click.Group):
    """A click group whose commands' errors end as one line on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise  # click's own (usage errors: exit 2) and explicit exits
        except DaskflowError as exc:
            if _debug():
                raise
            click.echo(f"error: {one_line(exc)}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted (Ctrl-C); nothing more was started", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # the last line of defence against tracebacks
            if _debug():
                raise
            click.echo(
                f"error: unexpected {type(exc).__name__}: {one_line(exc)[:500]} "
                f"(a daskflow bug or an unusual environment; rerun with DASKFLOW_DEBUG=1 for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_FAILED)


@click.group(cls=DaskflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskflow")
def main() -> None:
    """daskflow: Dagster-style assets on a real Dask cluster, steered by learned task costs."""


for _name in _COMMAND_MODULES:
    _module = importlib.import_module(f"daskflow.cli.{_name}")
    for _command in getattr(_module, "commands", []):
        main.add_command(_command)

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "DaskflowGroup", "main", "one_line"]
