"""CLI commands for backfills and the run queue.

* ``daskflow backfill PIPELINE --partition A...B [--select S] [--chunk N] [--max-concurrent-runs K]``
  plans, persists and drives a backfill in the foreground (Ctrl-C pauses it);
* ``daskflow backfill status [ID] [--json]``, ``daskflow backfill resume ID``,
  ``daskflow backfill cancel ID``;
* ``daskflow runs cancel RUN_ID`` (``daskflow runs [RUN_ID]`` is unchanged).

Mistakes print one ``error: ...`` line and exit 2, never a traceback.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import Any

import click

from daskflow import config
from daskflow.errors import DaskflowError


def _fail(exc: Exception) -> None:
    click.echo(f"error: {' '.join(str(exc).split())}", err=True)
    sys.exit(2)


class _DefaultGroup(click.Group):
    """A group whose first argument, when it is no subcommand, goes to ``default`` (``backfill PIPELINE``)."""

    default: str = ""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


class BackfillGroup(_DefaultGroup):
    default = "start"


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--tag")
        tags[key] = val
    return tags


@click.group("backfill", cls=BackfillGroup)
def backfill() -> None:
    """Backfill a partition range: `daskflow backfill PIPELINE --partition A...B`, then status / resume / cancel."""


def _drive(backfill_id: str, address: str | None, as_json: bool) -> None:
    from daskflow.timeline.backfill_driver import BackfillProgress, drive_backfill

    progress = BackfillProgress(enabled=not as_json)
    status = drive_backfill(backfill_id, address=address, progress=progress)
    if as_json:
        click.echo(json.dumps(status, default=str))
    elif status.get("interrupted"):
        in_flight = len(status.get("in_flight") or ())
        click.echo(f"backfill {backfill_id} paused: {in_flight} run(s) still finishing in their launchers; "
                   f"continue with `daskflow backfill resume {backfill_id}` (done partitions are never re-run)")
    elif status["status"] == "canceled":
        click.echo(f"backfill {backfill_id} canceled: {status['done']} partitions done")
    else:
        click.echo(f"backfill {backfill_id}: {status['done']}/{status['n_partitions']} partitions done, "
                   f"{status['failed']} failed" + (f" (retry them once with `daskflow backfill resume {backfill_id}`)"
                                                   if status["retryable_chunks"] else ""))
    if status["failed"] and not status.get("interrupted"):
        sys.exit(1)


@backfill.command("start", hidden=True)
@click.argument("pipeline")
@click.option("--partition", "partitions", required=True, help="Partition keys: 'A...B' (inclusive), 'K1,K2', ...")
@click.option("--select", "selection", default=None, help="Asset selection (default: every partitioned asset).")
@click.option("--chunk", "chunk_size", type=int, default=None, help="Partitions per run [daskflow.backfill.chunk-size].")
@click.option("--max-concurrent-runs", type=int, default=None,
              help="Runs of this backfill at once [daskflow.backfill.max-concurrent-runs].")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE on every run (pool=NAME puts them in a pool).")
@click.option("--address", default=None, help="Scheduler address (default: cluster file, else one embedded cluster "
                                              "per run).")
@click.option("--detach", is_flag=True, help="Only plan and persist it; a running daemon (or `resume`) drives it.")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as one JSON document.")
def start_command(pipeline, partitions, selection, chunk_size, max_concurrent_runs, tags, address, detach, as_json):
    """Plan a backfill of PIPELINE, persist it, and drive it in the foreground."""
    from daskflow.timeline.backfill import Backfills, plan_backfill
    from daskflow.timeline.store import TimelineStore

    try:
        chunk_size = int(chunk_size or config.get("backfill.chunk-size"))
        limit = int(max_concurrent_runs or config.get("backfill.max-concurrent-runs"))
        plan = plan_backfill(pipeline, partitions, selection, chunk_size)
        backfill_id = Backfills(TimelineStore()).create(plan, limit, _tags(tags))
    except DaskflowError as exc:
        _fail(exc)
    if not as_json:
        click.echo(f"backfill {backfill_id}: {len(plan.partitions)} partitions of {plan.selection} in "
                   f"{len(plan.chunks)} runs, at most {limit} at once"
                   + (f" (not backfilled, unpartitioned: {', '.join(plan.left_out)})" if plan.left_out else ""))
        if address is None and not detach and not _cluster_running():
            click.echo("note: no --address and no `daskflow cluster up` cluster: each run starts its own embedded "
                       "cluster (slow); start one to share it")
    if detach:
        if as_json:
            click.echo(json.dumps({"backfill_id": backfill_id}))
        return
    try:
        _drive(backfill_id, address, as_json)
    except DaskflowError as exc:
        _fail(exc)


def _cluster_running() -> bool:
    from daskflow.cluster import running_cluster

    try:
        return running_cluster() is not None
    except Exception:  # noqa: BLE001 - only a hint
        return False


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@backfill.command("status")
@click.argument("backfill_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def status_command(backfill_id: str | None, as_json: bool) -> None:
    """Backfills (or one) with their done / failed / running / pending partitions."""
    from daskflow.timeline.backfill import Backfills
    from daskflow.timeline.store import TimelineStore

    try:
        backfills = Backfills(TimelineStore())
        ids = [backfill_id] if backfill_id else backfills.ids()
        documents: list[dict[str, Any]] = [backfills.status(i) for i in ids]
    except DaskflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"backfills": documents} if backfill_id is None else documents[0], default=str))
        return
    if not documents:
        click.echo("no backfills (start one with `daskflow backfill PIPELINE --partition A...B`)")
        return
    header = f"{'backfill':<14} {'status':<9} {'done':>7} {'failed':>7} {'running':>7} {'pending':>7}  partitions / created"
    click.echo(header)
    for d in documents:
        click.echo(f"{d['backfill_id']:<14} {d['status']:<9} {d['done']:>7} {d['failed']:>7} {d['running']:>7} "
                   f"{d['pending']:>7}  {d['partition_selection']} of {d['selection']} / {_when(d['created_at'])}")


@backfill.command("resume")
@click.argument("backfill_id")
@click.option("--address", default=None, help="Scheduler address (default: cluster file, else embedded).")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as one JSON document.")
def resume_command(backfill_id: str, address: str | None, as_json: bool) -> None:
    """Continue a paused or interrupted backfill; failed chunks are retried once (done partitions never)."""
    from daskflow.timeline.backfill import Backfills
    from daskflow.timeline.store import TimelineStore

    try:
        retried = Backfills(TimelineStore()).resume(backfill_id)
        if not as_json and retried:
            click.echo(f"backfill {backfill_id}: retrying {retried} failed run(s) once")
        _drive(backfill_id, address, as_json)
    except DaskflowError as exc:
        _fail(exc)


@backfill.command("cancel")
@click.argument("backfill_id")
def cancel_command(backfill_id: str) -> None:
    """Cancel a backfill: queued chunks never start, running ones are canceled."""
    from daskflow.timeline.backfill import Backfills
    from daskflow.timeline.cancel import cancel_run
    from daskflow.timeline.store import TimelineStore

    try:
        result = Backfills(TimelineStore()).cancel(backfill_id)
        lines = [cancel_run(run_id) for run_id in result["running"]]
    except DaskflowError as exc:
        _fail(exc)
    click.echo(f"backfill {backfill_id} canceled: {len(result['canceled'])} queued run(s) dropped, "
               f"{len(result['running'])} running run(s) canceled")
    for line in lines:
        click.echo(f"  {line}")


# -- daskflow runs cancel --------------------------------------------------------
class RunsGroup(_DefaultGroup):
    default = "show"


@click.group("runs", cls=RunsGroup, invoke_without_command=True)
@click.pass_context
def runs(ctx: click.Context) -> None:
    """Recent runs (`daskflow runs [RUN_ID] [--json]`), or `daskflow runs cancel RUN_ID`."""
    if ctx.invoked_subcommand is None:
        from daskflow.cli.pipeline import runs_command

        ctx.invoke(runs_command)


@runs.command("cancel")
@click.argument("run_id")
@click.option("--wait", "wait_s", type=float, default=30.0, show_default=True,
              help="Seconds to wait for a running run's launcher to stop it.")
def runs_cancel_command(run_id: str, wait_s: float) -> None:
    """Cancel a queued run (it never starts) or a running one (its launcher cancels its futures)."""
    from daskflow.timeline.cancel import cancel_run

    try:
        click.echo(cancel_run(run_id, wait_s=wait_s))
    except DaskflowError as exc:
        _fail(exc)


def _attach_show() -> None:
    from daskflow.cli.pipeline import runs_command

    show = click.Command("show", callback=runs_command.callback, params=runs_command.params,
                         help=runs_command.help, hidden=True)
    runs.add_command(show)


_attach_show()
commands = [backfill, runs]
