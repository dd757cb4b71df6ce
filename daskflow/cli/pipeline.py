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


def _table(rows: list[list[Any]], headers: list[str], right: tuple[str, ...] = ()) -> str:
    from daskflow.cli.output import table

    return table(rows, headers, right=right)


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
@click.option("--resume", "resume", default=None, metavar="RUN_ID",
              help="Re-run only the failed, skipped and unfinished asset-partitions of RUN_ID (or its prefix).")
@click.option("--verbose", "-v", is_flag=True, help="Also list up-to-date assets with their reasons; full tracebacks.")
def run_command(pipeline: str, selection: str | None, partitions: str | None, address: str | None,
                workers: int | None, only_stale: bool, as_json: bool, resume: str | None = None,
                verbose: bool = False) -> None:
    """Materialize the assets of PIPELINE (a .py file or module name) on a Dask cluster."""
    from daskflow.cli.output import RunNotes
    from daskflow.execution import materialize
    from daskflow.progress import make_progress

    bar = make_progress(False if as_json else None)
    bar.summary = False  # the result table says it
    notes = RunNotes(bar.note if bar.enabled else (lambda line: click.echo(line, err=True)))
    try:
        with notes.active():
            result = materialize(pipeline, selection=selection, partitions=partitions, address=address,
                                 only_stale=only_stale, progress=bar, workers=workers, resume=resume)
    except DaskflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        _print_result(result, verbose, pipeline)
    sys.exit(0 if result.ok else 1)


def _print_result(result, verbose: bool = False, pipeline: str = "") -> None:
    from daskflow.cli.output import run_report

    source = pipeline if pipeline.endswith(".py") else None
    out, err = run_report(result, verbose, source_file=source)
    for line in out[:-1]:
        click.echo(line)
    for line in err:
        click.echo(line, err=True)
    click.echo(out[-1])


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
        failed_checks = [{"partition": m.partition, "check": r.check_name, "blocking": r.blocking}
                         for m in found for r in catalog.check_results(materialization_id=m.id) if not r.passed]
        failed_checks += [{"partition": m.partition, "check": m.failed_check, "blocking": True}
                          for m in found if m.check_status == "failed" and not any(
                              f["partition"] == m.partition and f["blocking"] for f in failed_checks)]
        gated = [m for m in found if not m.usable]
        rows.append({
            "asset": key, "group": spec.group, "partitions": len(parts) if spec.partitions else None,
            "materialized_partitions": len(found) if spec.partitions else None,
            "last_materialization_id": newest.id if newest else None,
            "last_run_id": newest.run_id if newest else None,
            "last_materialized_at": newest.created_at if newest else None,
            "rows": sum(m.rows or 0 for m in found) if found else None,
            "bytes": sum(m.bytes or 0 for m in found) if found else None,
            "stale": bool(stale_reasons), "stale_reason": stale_reasons[0] if stale_reasons else None,
            "status": "check-failed" if gated else ("stale" if stale_reasons else "fresh"),
            "failed_checks": failed_checks,
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
                      format_bytes(row["bytes"]), _asset_status_text(row)])
    click.echo(_table(table, ["asset", "group", "partitions", "last materialization", "rows", "size", "status"],
                      right=("partitions", "rows", "size")))


def _asset_status_text(row: dict[str, Any]) -> str:
    warnings = sorted({f["check"] for f in row["failed_checks"] if not f["blocking"]})
    return row["status"] + (f" (warning: {', '.join(warnings)})" if warnings else "")


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
                      "reason": r.reason, "resumed_from": r.resumed_from, "started_at": r.started_at,
                      "duration_s": r.duration_s, "trigger": r.tags.get("trigger", "manual")} for r in runs]
        if as_json:
            click.echo(json.dumps({"runs": documents}))
            return
        rows = [[d["run_id"][:12], d["pipeline"] or "-", d["selection"] or "*",
                 d["status"] + (f" ({d['reason']})" if d["reason"] else ""), _when(d["started_at"]),
                 "-" if d["duration_s"] is None else f"{d['duration_s']:.1f}s", d["trigger"]] for d in documents]
        click.echo(_table(rows, ["run", "pipeline", "selection", "status", "started (UTC)", "duration", "trigger"],
                          right=("duration",)))
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
    rows = []
    for event in events:
        where = "" if event.asset_key is None else (
            event.asset_key if event.partition is None else f"{event.asset_key}[{event.partition}]")
        rows.append([_when(event.timestamp), event.kind, where, event.message or ""])
    click.echo(_table(rows, ["time (UTC)", "event", "asset", "message"]))


commands = [run_command, assets_command, lineage_command, runs_command]
