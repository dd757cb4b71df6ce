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
from daskflow.testbed.errors import TestBedError


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
# -- the multi-host test bed (needs root; see daskflow.testbed) --
@click.option("--hosts", type=click.IntRange(min=1), default=None,
              help="Replay on a multi-host test bed of this many emulated hosts (needs root); --workers is then ignored.")
@click.option("--workers-per-host", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--link-mbit", type=click.FloatRange(min=0, min_open=True), default=200.0, show_default=True,
              help="Bandwidth of each host's link.")
@click.option("--link-latency-ms", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Latency added by the file servers (the kernel may lack netem).")
@click.option("--host-speeds", default=None, help="Speed factor per host, e.g. 1,1,0.5,0.5 (known only to the test bed).")
@click.option("--slowdown", default=None, help="HOST@SECONDS:FACTOR: host index HOST becomes FACTOR x slower SECONDS into the run.")
@click.option("--data-scale", default="auto", show_default=True,
              help="Stored bytes = trace bytes x this; auto: a task's inputs over one link cost about its runtime.")
@click.option("--input-placement", default="round-robin", show_default=True,
              help="Hosts of the external input files: round-robin or seed:N.")
def replay_command(trace, mode, workers, threads_per_worker, memory_limit, target_seconds, time_scale, memory_scale,
                   bytes_scale, history_url, model_url, repeat, timeout_s, as_json, hosts=None, workers_per_host=2,
                   link_mbit=200.0, link_latency_ms=1.0, host_speeds=None, slowdown=None, data_scale="auto",
                   input_placement="round-robin") -> None:
    """Replay TRACE (a trace JSON file) on a fresh LocalCluster and report its makespan.

    \b
    Example:
      daskflow bench replay ../shared/workloads/montage-103tasks-2mass-01d-001.json --mode stock --json
    """
    from daskflow.replay.harness import replay

    testbed_kwargs = _testbed_options(hosts, workers_per_host, link_mbit, link_latency_ms, host_speeds, slowdown,
                                      data_scale, input_placement)
    try:
        result = replay(
            trace, mode=mode, workers=workers, threads_per_worker=threads_per_worker,
            memory_limit=_memory_limit(memory_limit), target_seconds=target_seconds, memory_scale=memory_scale,
            bytes_scale=bytes_scale, history_url=history_url, model_url=model_url, time_scale=time_scale,
            repeat=repeat, timeout_s=timeout_s, **testbed_kwargs,
        )
    except TraceFormatError as exc:
        raise click.ClickException(str(exc)) from exc
    except TimeoutError as exc:
        raise click.ClickException(f"{exc}; raise --timeout or lower --target-seconds") from exc
    except TestBedError as exc:
        raise click.ClickException(f"test bed: {exc}") from exc
    click.echo(_summary(result))
    if as_json:
        click.echo(json.dumps(result, sort_keys=True, default=str))


def _testbed_options(hosts, workers_per_host, link_mbit, link_latency_ms, host_speeds, slowdown, data_scale,
                     input_placement) -> dict:  # fmt: skip
    """The test-bed keyword arguments of ``replay`` (none without --hosts); bad values are one-line errors."""
    if hosts is None:
        return {}
    from daskflow.replay.hosted import parse_input_placement
    from daskflow.testbed.hostconfig import parse_slowdown

    speeds = None
    if host_speeds:
        try:
            speeds = [float(part) for part in host_speeds.split(",")]
        except ValueError:
            raise click.BadParameter(f"{host_speeds!r}: expected comma-separated numbers, e.g. 1,1,0.5,0.5",
                                     param_hint="--host-speeds") from None
        if len(speeds) != hosts or any(not s > 0 for s in speeds):
            raise click.BadParameter(f"{host_speeds!r}: expected {hosts} positive factors, one per host",
                                     param_hint="--host-speeds")
    try:
        parsed_slowdown = parse_slowdown(slowdown) if slowdown else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--slowdown") from None
    if parsed_slowdown is not None and parsed_slowdown.host >= hosts:
        raise click.BadParameter(f"{slowdown!r}: host {parsed_slowdown.host} does not exist (0..{hosts - 1})",
                                 param_hint="--slowdown")
    scale: float | None = None
    if data_scale != "auto":
        try:
            scale = float(data_scale)
        except ValueError:
            scale = -1.0
        if not scale >= 0:
            raise click.BadParameter(f"{data_scale!r}: expected 'auto' or a number >= 0", param_hint="--data-scale")
    try:
        placement = parse_input_placement(input_placement)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--input-placement") from None
    testbed = {"hosts": hosts, "workers_per_host": workers_per_host, "link_mbit": link_mbit,
               "link_latency_ms": link_latency_ms, "host_speeds": speeds, "slowdown": slowdown}  # fmt: skip
    return {"testbed": testbed, "data_scale": scale, "input_placement": placement}


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
    if result.get("hosts"):
        lines.append(
            f"  test bed {len(result['hosts']['hosts'])} hosts, HEFT simulation {fmt(result['simulated_heft_makespan_s'])} s, "
            f"bytes between hosts {result['bytes_between_hosts']}, from other hosts' storage "
            f"{result['storage_bytes_read_from_other_hosts']}"
        )
    if result.get("duration_median_ape") is not None:
        lines.append(
            f"  duration median APE {fmt(result['duration_median_ape'])} (baseline {fmt(result['baseline_duration_median_ape'])}), "
            f"memory {fmt(result['memory_median_ape'])} (baseline {fmt(result['baseline_memory_median_ape'])})"
        )
    return "\n".join(lines)


commands: list = [bench]
