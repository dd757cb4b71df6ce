"""The ``daskflow`` command line.

Commands live in one module per concern (``pipeline``, ``model``, ``bench``,
``steering``, ``cluster``, ``config``, ``timeline``, ``maintenance``, ``backfill``);
each exposes ``commands``, a list of click commands or groups, which are attached
to :data:`main` here. A later module may replace an earlier module's command with a
group around it, as ``backfill`` does for ``runs`` (``runs cancel``).
"""

from __future__ import annotations

import importlib

import click

_COMMAND_MODULES = ("pipeline", "model", "bench", "steering", "cluster", "config", "timeline", "maintenance",
                    "backfill")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskflow")
def main() -> None:
    """daskflow: Dagster-style assets on a real Dask cluster, steered by learned task costs."""


for _name in _COMMAND_MODULES:
    _module = importlib.import_module(f"daskflow.cli.{_name}")
    for _command in getattr(_module, "commands", []):
        main.add_command(_command)
