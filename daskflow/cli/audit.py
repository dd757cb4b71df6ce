"""CLI ``daskflow audit --run RUN_ID [--json]``: what ran where, on which data, under which rule, by which model.

Reads only the catalog file (the durable audit, :mod:`daskflow.audit`), so it
answers after the cluster stopped, for embedded-cluster runs too. Exit codes:
0, or 2 with one ``error: ...`` line (no catalog, unknown or ambiguous run).
"""

from __future__ import annotations

import json
import sys

import click

from daskflow.errors import DaskflowError


def _fail(exc: BaseException) -> None:
    click.echo("error: " + " ".join(str(exc).split()), err=True)
    sys.exit(2)


@click.command("audit")
@click.option("--run", "run_id", required=True, metavar="RUN_ID",
              help="The run (its id or a unique prefix, as `daskflow runs` shows it).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
def audit_command(run_id: str, as_json: bool) -> None:
    """What a run's tasks did: worker and host, data read and written, placement rule, decision and model version."""
    from daskflow.audit import AuditStore, audit_report, format_audit_report
    from daskflow.catalog import Catalog

    try:
        catalog = Catalog()
        if not catalog.path.exists():  # a read-only command never creates the catalog
            raise DaskflowError(f"no catalog at {str(catalog.path)!r}; run a pipeline first (`daskflow run ...`) "
                                "or set daskflow.catalog.path / DASKFLOW_HOME")
        store = AuditStore(catalog)
        audited = [r for r in store.runs() if r.startswith(run_id)]
        # a run in the audit only (its catalog rows are gone) is still reported; else the catalog names the problem
        resolved = audited[0] if len(audited) == 1 and run_id not in audited else (
            run_id if run_id in audited else catalog.find_run(run_id).run_id)
        report = audit_report(resolved, store)
    except DaskflowError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(report, default=str, sort_keys=True))
    else:
        click.echo(format_audit_report(report))


commands = [audit_command]
