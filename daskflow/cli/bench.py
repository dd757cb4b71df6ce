"""CLI commands: ``daskflow bench`` — measure makespans by replaying workload traces.

``daskflow bench replay TRACE`` replays one trace (a normalized WfCommons JSON
file, or a generated bag ``skewed-bag[:SEED[:N]]`` / ``memory-pressure[:SEED[:N]]``)
on a fresh process LocalCluster and prints the makespan beside the lower
bound and a clairvoyant list schedule. With ``--json`` the last stdout line is
one JSON object (see :func:`daskflow.replay.harness.replay`).
"""

from __future__ import annotations

import json

import click

from daskflow.cli import params
from daskflow.errors import TraceFormatError


def _memory_limit(value: str) -> str | int:
    return int(value) if value.isdigit() else value


@click.group("bench")
def bench() -> None:
    """Benchmarks: replay workflow traces on a real cluster."""


@bench.command("replay")
@click.argument("trace", type=params.TRACE)
@click.option("--mode", type=click.Choice(["stock", "record", "steer", "oracle"]), default="stock", show_default=True,
              help="stock: plain Dask; record: recorder only; steer: steering with --model; oracle: steering with true costs.")
@click.option("--workers", type=params.LOCAL_WORKERS, default=8, show_default=True, help="Worker processes.")
@click.option("--threads-per-worker", type=params.THREADS, default=1, show_default=True)
@click.option("--memory-limit", type=params.MEMORY, default="auto", show_default=True, help="Per worker, e.g. 2GB (Dask syntax).")
@click.option("--target-seconds", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True,
              help="Scale runtimes so max(critical path, work / slots) equals this.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Multiply runtimes by this instead of scaling to --target-seconds.")
@click.option("--memory-scale", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Each task holds memory_bytes × this while it runs.")
@click.option("--bytes-scale", type=click.FloatRange(min=0), default=0.001, show_default=True,
              help="Declared input bytes and returned output bytes are multiplied by this (outputs capped at 64 MiB).")
@click.option("--history", "history_url", default=None, help="History dataset URL for record/steer (default: config).")
@click.option("--model", "model_url", default=None, help="Model directory URL for steer (default: config).")
@click.option("--repeat", type=click.IntRange(1, 1000), default=1, show_default=True, help="Runs on the same cluster; makespan_s is the median.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=600.0, show_default=True, help="Give up on a run after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on the last line.")
def replay_command(trace, mode, workers, threads_per_worker, memory_limit, target_seconds, time_scale, memory_scale,
                   bytes_scale, history_url, model_url, repeat, timeout_s, as_json) -> None:
    """Replay TRACE (a trace JSON file) on a fresh LocalCluster and report its makespan.

    \b
    Example:
      daskflow bench replay ../shared/workloads/montage-103tasks-2mass-01d-001.json --mode stock --json
    """
    from daskflow.replay.harness import replay

    try:
        result = replay(
            trace, mode=mode, workers=workers, threads_per_worker=threads_per_worker,
            memory_limit=_memory_limit(memory_limit), target_seconds=target_seconds, memory_scale=memory_scale,
            bytes_scale=bytes_scale, history_url=history_url, model_url=model_url, time_scale=time_scale,
            repeat=repeat, timeout_s=timeout_s,
        )
    except TraceFormatError as exc:
        raise click.ClickException(str(exc)) from exc
    except TimeoutError as exc:
        raise click.ClickException(f"{exc}; raise --timeout or lower --target-seconds") from exc
    click.echo(_summary(result))
    if as_json:
        click.echo(json.dumps(result, sort_keys=True, default=str))


def _summary(result: dict) -> str:
    def fmt(value, spec=".3f"):
        return "-" if value is None else format(value, spec)

    lines = [
        (f"trace {result['trace']} ({result['tasks']} tasks), mode {result['mode']}, "
        f"{result['workers']} workers x {result['threads_per_worker']} threads"),
        f"  makespan          {fmt(result['makespan_s'])} s   ({fmt(result['makespan_over_lower_bound'])} x lower bound)",
        f"  lower bound       {fmt(result['lower_bound_s'])} s",
        f"  list schedule     {fmt(result['simulated_list_makespan_s'])} s   ({fmt(result['simulated_over_lower_bound'])} x lower bound, simulated)",
        f"  workers lost {result['workers_lost']}, pauses {result['worker_pauses']}, failed tasks {result['failed_tasks']}",
    ]
    if result.get("duration_median_ape") is not None:
        lines.append(
            f"  duration median APE {fmt(result['duration_median_ape'])} (baseline {fmt(result['baseline_duration_median_ape'])}), "
            f"memory {fmt(result['memory_median_ape'])} (baseline {fmt(result['baseline_memory_median_ape'])})"
        )
    return "\n".join(lines)


commands: list = [bench]
