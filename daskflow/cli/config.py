"""CLI commands: ``daskflow config show``.

Prints the effective ``daskflow.*`` configuration (package defaults, then dask
config files, then ``DASK_DASKFLOW__...`` environment variables), plus the
resolved daskflow home, so users can see what every command will use.
"""

from __future__ import annotations

import json

import click
import yaml

from daskflow import config as config_lib


@click.group("config")
def config() -> None:
    """Inspect daskflow settings (dask.config namespace `daskflow`)."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of YAML.")
def show(as_json: bool) -> None:
    """Print the effective `daskflow.*` config (defaults + config files + env overrides)."""
    effective = {"daskflow": config_lib.effective_config()}
    resolved_home = str(config_lib.home())
    if as_json:
        click.echo(json.dumps({**effective, "resolved_home": resolved_home}, default=str, sort_keys=True))
        return
    click.echo(f"# resolved daskflow home: {resolved_home}")
    click.echo(yaml.safe_dump(json.loads(json.dumps(effective, default=str)), sort_keys=False).rstrip())


commands: list[click.Command] = [config]
