"""CLI commands for pipelines: ``run``, ``assets``, ``lineage``, ``runs``.

Every command prints human-readable text by default and one JSON document
with ``--json`` (for scripts). Exit codes: 0 success; 1 a run failed (an
asset or a blocking check failed); 2 the pipeline could not be loaded or
planned (bad file, unknown asset in ``--select``, bad partition, ...) — that
case prints exactly one ``error: ...`` line on stderr and writes nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import Any

import click

from daskflow.cli import params
from daskflow.errors import DaskflowError
from daskflow.formatting import format_bytes


def _fail(exc: BaseException, code: int = 2) -> None:
    """One clear line on stderr, then exit."""
    message = " ".join(str(exc).split())  # the message on one line
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _load_graph(pipeline: str):
    from daskflow.graph import build_asset_graph
    from daskflow.loading import load_definitions

    return build_asset_graph(load_definitions(pipeline))


# -- run -----------------------------------------------------------------------
@click.command("run")
@click.argument("pipeline")
@click.option("--select", "-s", "selection", default=None, help="Assets to run, e.g. 'report', '+report', 'group:sales'.")
@click.option("--partition", "-p", "partitions", default=None, help="Partition key, 'FIRST...LAST' range or 'a,b'.")
@click.option("--address", type=params.ADDRESS, default=None, callback=params.check_cluster_file,
              help="Scheduler address (default: cluster file, else an embedded cluster).")
@click.option("--workers", type=params.LOCAL_WORKERS, default=None, help="Workers of the embedded cluster (default: execution.workers).")
@click.option("--only-stale", is_flag=True, help="Skip assets whose code and inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the run result as one JSON document.")
def run_command(pipeline: str, selection: str | None, partitions: str | None, address: str | None,
                workers: int | None, only_stale: bool, as_json: bool) -> None:
    """Materialize the assets of PIPELINE (a .py file or module name) on a Dask cluster."""
    from daskflow.execution import materialize

    try:
        result = materialize(pipeline, selection=selection, partitions=partitions, address=address,
                             only_stale=only_stale, progress=False if as_json else None, workers=workers)
    except DaskflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        _print_result(result)
    sys.exit(0 if result.ok else 1)


def _print_result(result) -> None:
    rows = []
    for rec in result.records:
        duration = "-" if rec.duration_s is None else f"{rec.duration_s:.2f}s"
        rows.append([rec.asset, rec.partition or "-", rec.status, duration, "-" if rec.rows is None else rec.rows,
                     format_bytes(rec.bytes), rec.worker or "-"])
    click.echo(_table(rows, ["asset", "partition", "status", "duration", "rows", "size", "worker"]))
    for check in result.checks:
        kind = "blocking" if check.blocking else "warning"
        where = check.asset if check.partition is None else f"{check.asset}[{check.partition}]"
        click.echo(f"check {check.check} on {where} ({kind}): {check.status}" + (f" - {check.message}" if check.message else ""))
    for rec in result.records:
        where = rec.asset if rec.partition is None else f"{rec.asset}[{rec.partition}]"
        if rec.status == "failed":
            click.echo(f"\n{where} failed: {rec.error}", err=True)
            if rec.traceback:
                click.echo(rec.traceback.rstrip(), err=True)
        elif rec.status in ("skipped", "stale-skipped"):
            click.echo(f"{where} {rec.status}: {rec.reason}")
    click.echo(f"run {result.run_id}: {result.status} in {result.duration_s:.1f}s")


# -- assets --------------------------------------------------------------------
def asset_status(graph, catalog) -> list[dict[str, Any]]:
    """Per asset: partitions, last materialization, and staleness (with the reason)."""
    from daskflow.definitions import code_version_of
    from daskflow.graph import resolve_partitions

    latest = catalog.latest_materializations(list(graph.assets))
    rows = []
    for key, spec in graph.assets.items():
        parts = resolve_partitions(spec)
        found = [latest[(key, p)] for p in parts if (key, p) in latest]
        stale_reasons = []
        for part in parts:
            versions = [latest[(up, up_part)].data_version for _, up in graph.inputs[key]
                        for up_part in graph.upstream_partitions(key, part, up) if (up, up_part) in latest]
            stale, why = catalog.is_stale(key, part, code_version_of(spec), versions)
            if stale:
                stale_reasons.append(why)
        newest = max(found, key=lambda m: m.id) if found else None
        rows.append({
            "asset": key, "group": spec.group, "partitions": len(parts) if spec.partitions else None,
            "materialized_partitions": len(found) if spec.partitions else None,
            "last_materialization_id": newest.id if newest else None,
            "last_run_id": newest.run_id if newest else None,
            "last_materialized_at": newest.created_at if newest else None,
            "rows": sum(m.rows or 0 for m in found) if found else None,
            "bytes": sum(m.bytes or 0 for m in found) if found else None,
            "stale": bool(stale_reasons), "stale_reason": stale_reasons[0] if stale_reasons else None,
        })
    return rows


@click.command("assets")
@click.argument("pipeline")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def assets_command(pipeline: str, as_json: bool) -> None:
    """List the assets of PIPELINE with their last materialization and staleness."""
    try:
        graph = _load_graph(pipeline)
        rows = asset_status(graph, params.read_only_catalog_for_command())
    except DaskflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"pipeline": pipeline, "assets": rows}))
        return
    table = []
    for row in rows:
        parts = "-" if row["partitions"] is None else f"{row['materialized_partitions']}/{row['partitions']}"
        last = "never" if row["last_materialization_id"] is None else (
            f"#{row['last_materialization_id']} {_when(row['last_materialized_at'])}")
        table.append([row["asset"], row["group"], parts, last, "-" if row["rows"] is None else row["rows"],
                      format_bytes(row["bytes"]), "stale" if row["stale"] else "fresh"])
    click.echo(_table(table, ["asset", "group", "partitions", "last materialization", "rows", "size", "status"]))


# -- lineage -------------------------------------------------------------------
@click.command("lineage")
@click.argument("asset")
@click.option("--pipeline", default=None, help="Pipeline file/module: also show the declared upstream/downstream assets.")
@click.option("--depth", type=params.DEPTH, default=None, help="Hops to follow (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def lineage_command(asset: str, pipeline: str | None, depth: int | None, as_json: bool) -> None:
    """Upstream and downstream materializations of ASSET's latest materialization(s)."""
    try:
        declared = None
        if pipeline is not None:
            graph = _load_graph(pipeline)
            asset = graph.resolve(asset)
            declared = {"upstream": list(graph.ancestors(asset)), "downstream": list(graph.descendants(asset))}
        catalog = params.read_only_catalog_for_command()
        walks = {direction: catalog.lineage(asset, direction, depth) for direction in ("upstream", "downstream")}
    except DaskflowError as exc:
        _fail(exc)
    document: dict[str, Any] = {"asset": asset, "declared": declared}
    for direction, nodes in walks.items():
        document[direction] = [
            {"materialization_id": n.materialization.id, "asset": n.materialization.asset_key,
             "partition": n.materialization.partition, "run_id": n.materialization.run_id, "depth": n.depth,
             "via_id": n.via_id, "path": n.materialization.path, "created_at": n.materialization.created_at}
            for n in nodes]
    if as_json:
        click.echo(json.dumps(document))
        return
    if declared is not None:
        click.echo(f"declared upstream:   {', '.join(declared['upstream']) or '(none)'}")
        click.echo(f"declared downstream: {', '.join(declared['downstream']) or '(none)'}")
    for direction in ("upstream", "downstream"):
        click.echo(f"{direction}:")
        for node in document[direction]:
            where = node["asset"] if node["partition"] is None else f"{node['asset']}[{node['partition']}]"
            via = "" if node["via_id"] is None else f" (via #{node['via_id']})"
            click.echo(f"  {'  ' * node['depth']}#{node['materialization_id']} {where} run {node['run_id'][:12]}"
                       f" {_when(node['created_at'])}{via}")


# -- runs ----------------------------------------------------------------------
@click.command("runs")
@click.argument("run_id", required=False)
@click.option("--limit", type=params.COUNT, default=20, show_default=True, help="How many runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def runs_command(run_id: str | None, limit: int, as_json: bool) -> None:
    """List recent runs, or show one run's events (RUN_ID may be a unique prefix)."""
    catalog = params.read_only_catalog_for_command()
    try:
        if run_id is None:
            runs = catalog.runs(limit=limit)
        else:
            matches = [r for r in catalog.runs(limit=None) if r.run_id.startswith(run_id)]
            if len(matches) != 1:
                found = "no run" if not matches else f"{len(matches)} runs"
                raise DaskflowError(f"{found} with id starting {run_id!r} in {catalog.path}; "
                                    f"list them with `daskflow runs`")
            run = matches[0]
    except DaskflowError as exc:
        _fail(exc)
    if run_id is None:
        documents = [{"run_id": r.run_id, "pipeline": r.pipeline, "selection": r.selection, "status": r.status,
                      "started_at": r.started_at, "duration_s": r.duration_s} for r in runs]
        if as_json:
            click.echo(json.dumps({"runs": documents}))
            return
        rows = [[d["run_id"][:12], d["pipeline"] or "-", d["selection"] or "*", d["status"], _when(d["started_at"]),
                 "-" if d["duration_s"] is None else f"{d['duration_s']:.1f}s"] for d in documents]
        click.echo(_table(rows, ["run", "pipeline", "selection", "status", "started (UTC)", "duration"]))
        return
    events = catalog.events(run.run_id)
    if as_json:
        click.echo(json.dumps({"run_id": run.run_id, "pipeline": run.pipeline, "status": run.status,
                               "started_at": run.started_at, "finished_at": run.finished_at,
                               "events": [{"id": e.id, "timestamp": e.timestamp, "kind": e.kind, "asset": e.asset_key,
                                           "partition": e.partition, "message": e.message, "payload": e.payload}
                                          for e in events]}, default=str))
        return
    click.echo(f"run {run.run_id} ({run.pipeline}): {run.status}")
    for event in events:
        where = "" if event.asset_key is None else (
            event.asset_key if event.partition is None else f"{event.asset_key}[{event.partition}]")
        click.echo(f"  {_when(event.timestamp)}  {event.kind:20s} {where:24s} {event.message}".rstrip())


commands = [run_command, assets_command, lineage_command, runs_command]
