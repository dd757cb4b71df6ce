"""CLI maintenance commands: ``gc`` (garbage-collect data files no catalog row references).

Dry run by default: lists what would be deleted; ``--apply`` deletes it.
See :mod:`daskflow.gc` for the safety rules. Exit codes: 0, or 2 with one
``error: ...`` line (no catalog, bad grace period).
"""

from __future__ import annotations

import json

import click

from daskflow.errors import DaskflowError


@click.command("gc")
@click.option("--apply", "apply", is_flag=True, help="Delete the listed files (default: only list them).")
@click.option("--grace", default=None, metavar="DURATION",
              help="Keep files younger than this, e.g. 10m (default: daskflow.storage.gc-grace).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def gc_command(apply: bool, grace: str | None, as_json: bool) -> None:
    """List (or with --apply delete) data files of failed, abandoned or superseded attempts."""
    from daskflow.catalog import Catalog
    from daskflow.cli.pipeline import _fail, _table
    from daskflow.formatting import format_bytes
    from daskflow.gc import collect_garbage
    from daskflow.storage import AssetStore

    try:
        grace_s = None
        if grace is not None:
            from dask.utils import parse_timedelta

            try:
                grace_s = float(parse_timedelta(grace, default="s"))
            except (ValueError, KeyError, TypeError) as exc:
                raise DaskflowError(f"--grace {grace!r} is not a duration ({exc}); use e.g. 30s, 10m, 1h") from exc
            if grace_s < 0:
                raise DaskflowError(f"--grace {grace!r} is negative; use e.g. 30s, 10m, 1h")
        report = collect_garbage(Catalog(), AssetStore(), apply=apply, grace_s=grace_s)
    except DaskflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "applied": apply}))
        return
    for run_id in report.abandoned_runs:
        click.echo(f"run {run_id[:12]}: marked failed (abandoned: its client stopped heartbeating)")
    if report.candidates:
        rows = [[c.reason, c.run_id[:12] if c.run_id else "-", format_bytes(c.bytes), c.path] for c in report.candidates]
        click.echo(_table(rows, ["reason", "run", "size", "path"]))
    total = format_bytes(sum(c.bytes or 0 for c in report.candidates))
    young = f"; {report.kept_young} younger than the grace period kept" if report.kept_young else ""
    if apply:
        click.echo(f"deleted {len(report.removed)} files ({total}){young}")
    else:
        click.echo(f"{len(report.candidates)} files ({total}) can be deleted{young}; run `daskflow gc --apply`")


commands = [gc_command]
