"""CLI commands: ``daskflow cluster up|status|down|scheduler|worker``.

Errors (:class:`~daskflow.errors.ClusterError`) propagate to the CLI group,
which prints them as one ``error: ...`` line with exit 2.

``up``/``down``/``status`` manage a one-machine cluster of background
processes through :mod:`daskflow.cluster`. ``scheduler`` and ``worker`` run
one part in the foreground (for separate machines): they replace this process
with distributed's own ``dask scheduler --preload scheduler_plugins.preload`` /
``dask worker ADDRESS``; extra arguments after ``--`` go to those commands.
"""

from __future__ import annotations

import json
import os

import click

from daskflow import cluster as cluster_lib
from daskflow.cli import params
from daskflow.errors import ClusterError
from daskflow.formatting import format_bytes


def _tls_options(function):
    function = click.option("--tls-key", type=click.Path(dir_okay=False), help="Private key (PEM).")(function)
    function = click.option("--tls-cert", type=click.Path(dir_okay=False), help="Certificate (PEM).")(function)
    function = click.option("--tls-ca-file", type=click.Path(dir_okay=False), help="CA certificate(s) (PEM).")(function)
    return function


@click.group("cluster")
def cluster() -> None:
    """Start, inspect and stop a daskflow-enabled Dask cluster."""


@cluster.command("up")
@click.option("--workers", "-n", type=params.LOCAL_WORKERS, default=None, help="Worker processes [daskflow.cluster.workers].")
@click.option("--threads", type=params.THREADS, default=None, help="Threads per worker [daskflow.cluster.threads-per-worker].")
@click.option("--memory-limit", type=params.MEMORY, default=None, help="Per worker: bytes, '4GB', a fraction, or 'auto'.")
@click.option("--host", default=None, help="Interface to bind [daskflow.cluster.host, 127.0.0.1].")
@click.option("--scheduler-port", type=params.PORT, default=None, help="Scheduler port (0: any free) [8786].")
@click.option("--dashboard-port", type=params.PORT, default=None, help="Dashboard port (0: any free) [8787].")
@_tls_options
@click.option("--daemon", "daemon_pipelines", multiple=True, metavar="PIPELINE",
              help="Also run the timeline daemon for PIPELINE (repeatable); `cluster down` stops it.")
@click.option("--json", "as_json", is_flag=True, help="Print the cluster file content as JSON.")
def up(workers, threads, memory_limit, host, scheduler_port, dashboard_port, tls_ca_file, tls_cert, tls_key,
       daemon_pipelines, as_json):
    """Start a scheduler (recorder, steering, dashboard pages preloaded) and workers in the background."""
    from daskflow.timeline import cluster_daemon

    if daemon_pipelines:
        cluster_daemon.check_pipelines(list(daemon_pipelines))  # a pipeline's mistake: one line, nothing started
    spec = cluster_lib.ClusterSpec(
        workers=workers,
        threads_per_worker=threads,
        memory_limit=memory_limit,
        host=host,
        scheduler_port=scheduler_port,
        dashboard_port=dashboard_port,
        tls=cluster_lib.TLSFiles.from_options(tls_ca_file, tls_cert, tls_key),
    )
    info = cluster_lib.start_cluster(spec)
    if daemon_pipelines:
        try:
            info = cluster_daemon.start_cluster_daemon(info, list(daemon_pipelines))
        except ClusterError:
            cluster_lib.stop_cluster()
            raise
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"scheduler: {info['scheduler_address']}")
    link = info["dashboard_link"]
    if link:
        click.echo(f"dashboard: {link}")
        click.echo(f"daskflow pages: {link.rsplit('/', 1)[0]}/daskflow/")
    click.echo(f"workers: {len(info['pids']['workers'])} (logs in {info['log_dir']})")
    if info["pids"].get("daemon"):
        click.echo(f"daemon: pid {info['pids']['daemon']} for {', '.join(info['daemon']['pipelines'])}")
    from daskflow import connection

    click.echo(f"cluster file: {connection.cluster_file()}  (stop with `daskflow cluster down`)")


@cluster.command("status")
@click.option("--address", type=params.ADDRESS, default=None, help="Scheduler address [the cluster file's].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(address, as_json):
    """Workers, threads, memory, model version and steering mode, fetched from the scheduler."""
    summary = cluster_lib.cluster_status(address)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    click.echo(f"scheduler: {summary['scheduler_address']}")
    if summary.get("dashboard_link"):
        click.echo(f"dashboard: {summary['dashboard_link']}")
    click.echo(
        f"workers: {summary['n_workers']}  threads: {summary['threads']}  "
        f"memory: {format_bytes(summary['memory_bytes'] or None)} / {format_bytes(summary['memory_limit_bytes'] or None)}"
    )
    click.echo(
        f"steering: {summary['steering_mode']}  model: {summary['model_version'] or 'none'}  "
        f"fallbacks: {summary['fallback_count'] if summary['fallback_count'] is not None else '-'}  "
        f"recorder: {'on' if summary['recorder'] else 'absent'}"
    )
    for worker in summary["workers"]:
        click.echo(
            f"  {worker['name']:<22} {worker['address']:<28} threads={worker['threads']} "
            f"memory={format_bytes(worker['memory_bytes'] or None)}/{format_bytes(worker['memory_limit_bytes'] or None)} "
            f"processing={worker['processing']}"
        )


@cluster.command("down")
@click.option("--grace", type=click.FloatRange(min=0, max=3600), default=None, help="Seconds between SIGTERM and SIGKILL [daskflow.cluster.stop-grace].")
def down(grace):
    """Stop exactly the processes `daskflow cluster up` started and remove the cluster file."""
    stopped = cluster_lib.stop_cluster(grace_s=grace)
    click.echo(f"stopped {len(stopped)} processes: {' '.join(map(str, stopped)) or '-'}")


_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@cluster.command("scheduler", context_settings=_PASSTHROUGH)
@click.option("--host", default=None, help="Interface to bind (default: all).")
@click.option("--port", type=params.PORT, default=8786, show_default=True)
@click.option("--dashboard-port", type=params.PORT, default=8787, show_default=True)
@_tls_options
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def scheduler(host, port, dashboard_port, tls_ca_file, tls_cert, tls_key, extra):
    """Run a scheduler with the daskflow preload in the foreground (`dask scheduler` options after --)."""
    tls = cluster_lib.TLSFiles.from_options(tls_ca_file, tls_cert, tls_key)
    command = cluster_lib.python_cli("dask_scheduler") + ["--port", str(port), "--preload", cluster_lib.DEFAULT_PRELOAD]
    command += ["--dashboard-address", f"{host or ''}:{dashboard_port}"]
    if host:
        command += ["--host", host]
    if tls:
        command += ["--protocol", "tls", *tls.cli_args()]
    _exec(command + list(extra))


@cluster.command("worker", context_settings=_PASSTHROUGH)
@click.argument("address", type=params.ADDRESS)
@click.option("--threads", type=params.THREADS, default=None, help="Threads per worker [daskflow.cluster.threads-per-worker].")
@click.option("--memory-limit", type=params.MEMORY, default=None, help="Bytes, '4GB', a fraction, or 'auto'.")
@click.option("--name", default=None, help="Worker name.")
@_tls_options
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def worker(address, threads, memory_limit, name, tls_ca_file, tls_cert, tls_key, extra):
    """Run one worker for the scheduler at ADDRESS in the foreground (`dask worker` options after --)."""
    tls = cluster_lib.TLSFiles.from_options(tls_ca_file, tls_cert, tls_key)
    spec = cluster_lib.ClusterSpec(workers=1, threads_per_worker=threads, memory_limit=memory_limit, host="", tls=tls)
    command = cluster_lib.python_cli("dask_worker") + [address, "--nthreads", str(spec.threads_per_worker)]
    command += ["--memory-limit", str(spec.memory_limit)]
    if name:
        command += ["--name", name]
    if tls:
        command += tls.cli_args()
    _exec(command + list(extra))


def _exec(command: list[str]) -> None:
    """Replace this process with ``command`` (signals then reach distributed's CLI directly)."""
    click.echo(" ".join(command), err=True)
    os.execvpe(command[0], command, cluster_lib.child_environment())


commands: list[click.Command] = [cluster]
