"""Multi-host steering benchmark (issue #11): stock / steer / oracle alternated on one test bed.

For each trace (default: eight traces of seven applications, :data:`DEFAULT_TRACES`):

1. *Model from siblings only* — the other instances of the trace's application
   are recorded on a LocalCluster at the trace's time scale and
   ``daskflow model train`` builds its model (``benchmarks/replay_all.py``'s
   :func:`training_instances` and :func:`train_model`). Models are cached
   in ``--models`` by trace and time scale and reused by every scenario.
2. *Alternate the modes* on ONE cluster kept up for the whole matrix: it starts
   as stock Dask (no preload) and a steer/oracle run registers the steering
   plugin for that run only (:mod:`benchmarks.multihost_modes`). ``--repeat``
   rounds of ``stock, steer, oracle``; each run is bounded (``--run-timeout``
   or 12 × the scaled lower bound) and a failing run is recorded, not fatal.

Scenarios (``--scenario``):

``hetero``    4 hosts × 2 workers × 1 thread, speeds 1,1,0.5,0.5, 200 Mbit/s links,
              external inputs round-robin on the hosts, ``--data-scale auto``
              (the trace's bytes scaled so reading every task's inputs over one
              link would take, in total, about the tasks' total runtime).
``slowdown``  the same with host h0 slowed ×4 at 30 % of stock's expected makespan
              (the hetero scenario's stock median of that trace when this output
              root has it, else 0.3 × 1.6 × the target): the bed's slowdown clock
              is shifted per run so the slowdown lands there.
``single``    one host, 8 workers × 1 thread (today's shared-trace benchmark,
              BENCHMARKS.md "Makespan"), on one LocalCluster.
``memory``    ``benchmarks/steering_memory.py`` per seed (three seeds, each with
              its own sibling seed for training): workers lost, failed tasks.

Writes ``<out>/<scenario>.json`` (every run with its load average, the
summary of :mod:`benchmarks.multihost_summary`) after every run, and
``<out>/<scenario>.md`` (the table). Needs root for the test bed.

    python benchmarks/multihost.py --scenario hetero --repeat 2
    python benchmarks/multihost.py --scenario hetero --traces srasearch-64tasks-30a-001 --repeat 1   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks import multihost_summary as summary_mod
from benchmarks.multihost_modes import attach_steering, detach_steering

REPO = pathlib.Path(__file__).resolve().parent.parent
WORKLOADS = next((p for p in (pathlib.Path(os.environ.get("DASKFLOW_WORKLOADS", "/nonexistent")),
                  REPO.parent / "shared" / "workloads", REPO.parent.parent / "shared" / "workloads") if p.is_dir()),
                 REPO.parent / "shared" / "workloads")  # a worktree sits one level deeper than the main checkout
DEFAULT_TRACES = (
    "1000genome-164tasks-4ch-250k-001", "blast-103tasks-large-001", "bwa-104tasks-small-001",
    "epigenomics-125tasks-ilmn-1seq-100k-001", "montage-103tasks-2mass-01d-001", "montage-178tasks-dss-075d-001",
    "soykb-96tasks-10fastq-10ch-001", "srasearch-64tasks-30a-001",
)  # fmt: skip
SCENARIOS = ("hetero", "slowdown", "single", "memory")
SLOWDOWN_PARK_S = 100_000.0  # the bed's nominal slowdown time; each run's clock is shifted so it lands at 30 %


def _log(message: str) -> None:
    print(f"[multihost {dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _commit() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    return proc.stdout.strip() or "unknown"


def _write_json(path: pathlib.Path, data: Any) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(temp, path)


# --------------------------------------------------------------------------- models


def sibling_model(target, pool, slots: int, time_scale: float, models_root: pathlib.Path, args) -> dict[str, Any]:
    """The trace's model trained only on the other instances of its application (cached by trace and scale)."""
    from benchmarks.replay_all import _stem, train_model, training_instances
    from daskflow.replay.harness import replay_cluster, replay_on_client

    stem = _stem(target)
    model_dir = models_root / f"{stem}-ts{time_scale:.6g}"
    info_path = model_dir / "multihost-train.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if "error" not in info:
            return info | {"cached": True}
    train = training_instances(target, pool, slots, time_scale, args.max_record_seconds)
    if not train:
        return {"error": f"no other instance of application {target.application!r}", "model_dir": None}
    history_dir = models_root / "history" / model_dir.name
    shutil.rmtree(history_dir, ignore_errors=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    _log(f"{stem}: recording {[_stem(t) for t in train]} at time scale {time_scale:.4g}")
    started = time.perf_counter()
    try:
        with replay_cluster("record", workers=slots, threads_per_worker=1, history_url=str(history_dir)) as client:
            for other in train:
                replay_on_client(client, other, "record", time_scale=time_scale, history_url=str(history_dir),
                                 timeout_s=args.max_record_seconds * 4)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - recorded as the model's error; steer then has no model
        return {"error": f"recording failed: {type(exc).__name__}: {exc}", "model_dir": None}
    manifest = train_model(history_dir, model_dir, args.rounds)
    info = {"model_dir": str(model_dir), "trained_on": [_stem(t) for t in train], "time_scale": time_scale,
            "model_version": manifest.get("model_version"), "error": manifest.get("error"),
            "train_wall_s": time.perf_counter() - started}  # fmt: skip
    if info["error"] is None:
        info.pop("error")
        _write_json(info_path, info)
    else:
        _log(f"{stem}: training failed: {str(info['error'])[-300:]}")
    return info


# --------------------------------------------------------------------------- one run


class ShiftedClockBed:
    """A test bed whose ``restart_clock()`` puts its parked slowdown ``at_s`` seconds after now."""

    def __init__(self, bed: Any, at_s: float) -> None:
        self._bed = bed
        self.at_s = float(at_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bed, name)

    def restart_clock(self, epoch: float | None = None) -> float:
        now = time.time() if epoch is None else float(epoch)
        return self._bed.restart_clock(now - SLOWDOWN_PARK_S + self.at_s)

    def slowdown_in_run(self) -> Any:
        parked = self._bed.slowdown_in_run()
        return dataclasses.replace(parked, at_s=self.at_s) if parked is not None else None


def one_run(client, trace, mode: str, model: dict[str, Any], speeds_dir: pathlib.Path, *, time_scale: float,
            timeout_s: float, bed=None, common: dict[str, Any],
            events_to: pathlib.Path | None = None) -> dict[str, Any]:  # fmt: skip
    """One bounded replay in ``mode`` on the shared cluster; errors become the record.

    With ``events_to`` a steered run's decision events (topic ``daskflow-steering``, this run's only) are
    written there as JSON, to read why a run was slow.
    """
    from benchmarks.replay_all import _stem
    from daskflow.replay.harness import replay_on_client

    stem = _stem(trace)
    record: dict[str, Any] = {"trace": stem, "mode": mode, "load_before": os.getloadavg()[0],
                              "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    started = time.perf_counter()
    attached = False
    try:
        if mode in ("steer", "oracle"):
            if mode == "steer" and not model.get("model_dir"):
                raise RuntimeError(f"no model: {model.get('error')}")
            attach_steering(client, mode, model.get("model_dir"), str(speeds_dir / f"{stem}-{mode}.json"))
            attached = True
        result = replay_on_client(client, trace, mode, time_scale=time_scale, timeout_s=timeout_s, bed=bed, **common)
        record.update({k: v for k, v in result.items() if k not in ("trace", "mode")})
        # the faithful clairvoyant (links shared, replicas) when the bed gives it; the uncontended one beside it
        record["sim_s"] = (result.get("simulated_heft_contended_makespan_s") or result.get("simulated_heft_makespan_s")
                           or result.get("simulated_list_makespan_s"))
        record["sim_uncontended_s"] = result.get("simulated_heft_makespan_s")
        if result.get("simulated_heft_contended_makespan_s_without_slowdown"):  # slowdown: the sim as it was before it knew
            record["sim_without_slowdown_s"] = result["simulated_heft_contended_makespan_s_without_slowdown"]
        if result.get("failed_tasks"):
            record["note"] = "unfinished or failed tasks"
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        if attached and events_to is not None:
            try:
                from daskflow.contracts import STEERING_TOPIC

                since = time.time() - (time.perf_counter() - started)
                events = [m for t, m in client.get_events(STEERING_TOPIC) if t >= since]
                events_to.parent.mkdir(parents=True, exist_ok=True)
                _write_json(events_to, {"trace": stem, "mode": mode, "events": events})
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                record["events_error"] = f"{type(exc).__name__}: {exc}"[:500]
        if attached:
            try:
                detach_steering(client)
            except Exception as exc:  # noqa: BLE001
                record["detach_error"] = f"{type(exc).__name__}: {exc}"[:500]
    record["wall_s"] = time.perf_counter() - started
    record["load_after"] = os.getloadavg()[0]
    return record


# --------------------------------------------------------------------------- scenarios


def _expected_stock_s(out: pathlib.Path, stem: str, target_seconds: float) -> tuple[float, str]:
    hetero = out / "hetero.json"
    if hetero.exists():
        for row in json.loads(hetero.read_text()).get("summary", {}).get("rows", []):
            if row["trace"] == stem and row["median_s"].get("stock"):
                return float(row["median_s"]["stock"]), "hetero stock median"
    return 1.6 * target_seconds, "1.6 x target (no hetero result)"


@contextlib.contextmanager
def _cluster(scenario: str, args):
    """``(bed or None, client)``: stock Dask with no preload, kept for the whole matrix."""
    from daskflow.replay import probes
    from daskflow.replay.harness import (
        QUIET_CLUSTER,
        _warm_graph,
        _warm_worker,
        replay_cluster,
    )

    if scenario == "single":
        with replay_cluster("stock", workers=8, threads_per_worker=1) as client:
            yield None, client
        return
    from daskflow.testbed import TestBed
    from daskflow.testbed.hostconfig import Slowdown

    slowdown = Slowdown(host=0, at_s=SLOWDOWN_PARK_S, factor=4.0) if scenario == "slowdown" else None
    config = {**QUIET_CLUSTER, "daskflow.dashboard.enabled": False}
    with TestBed(4, 2, threads_per_worker=1, link_mbit=args.link_mbit, link_latency_ms=1.0,
                 host_speeds=[1.0, 1.0, 0.5, 0.5], slowdown=slowdown, preload=None, config=config) as bed:  # fmt: skip
        client = bed.client(timeout=60, set_as_default=True)
        client.wait_for_workers(bed.n_workers, timeout=120)
        client.run(_warm_worker)
        client.register_plugin(probes.ReplayWatch(), name=probes.WATCH_NAME)
        _warm_graph(client, 4 * bed.n_workers)
        yield bed, client


def run_matrix(scenario: str, args, out: pathlib.Path) -> dict[str, Any]:
    from benchmarks.replay_all import _stem
    from daskflow.replay.harness import resolve_trace
    from daskflow.replay.simulate import lower_bound_s

    pool = [resolve_trace(str(p)) for p in sorted(WORKLOADS.glob("*.json"))]
    by_stem = {_stem(t): t for t in pool}
    names = args.traces.split(",") if args.traces else list(DEFAULT_TRACES)
    targets = [by_stem[n] if n in by_stem else resolve_trace(n) for n in names]
    slots = 8
    models_root = pathlib.Path(args.models).absolute()
    models_root.mkdir(parents=True, exist_ok=True)
    speeds_dir = out / f"speeds-{scenario}"
    speeds_dir.mkdir(parents=True, exist_ok=True)
    modes = [m for m in args.modes.split(",") if m]
    meta = {"scenario": scenario, "commit": _commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "repeat": args.repeat, "modes": modes, "target_seconds": args.target_seconds, "link_mbit": args.link_mbit,
            "traces": names, "argv": sys.argv, "cpus": os.cpu_count()}  # fmt: skip
    scales = {_stem(t): args.target_seconds / lower_bound_s(t, slots) for t in targets}
    models = {}
    if "steer" in modes:  # all models first: recording must not run beside a measured run
        for t in targets:
            models[_stem(t)] = sibling_model(t, pool, slots, scales[_stem(t)], models_root, args)
    runs: list[dict[str, Any]] = []

    def save() -> dict[str, Any]:
        summary = summary_mod.summarize(runs, scenario)
        _write_json(out / f"{scenario}.json", {"meta": meta, "models": models, "summary": summary, "runs": runs})
        (out / f"{scenario}.md").write_text(summary_mod.markdown_table(summary) + "\n")
        return summary

    _log(f"{scenario}: starting the cluster")
    with _cluster(scenario, args) as (bed, client):
        meta["cluster"] = bed.describe() if bed is not None else {"workers": 8, "threads_per_worker": 1}
        for target in targets:
            stem = _stem(target)
            time_scale = scales[stem]
            timeout_s = args.run_timeout or max(60.0, 12 * args.target_seconds)
            run_bed = bed
            extra: dict[str, Any] = {}
            if scenario == "slowdown":
                expected, source = _expected_stock_s(out, stem, args.target_seconds)
                run_bed = ShiftedClockBed(bed, 0.3 * expected)
                extra = {"slowdown": f"h0 x4 at {0.3 * expected:.2f} s", "slowdown_basis": source}
            common = {"memory_scale": 0.01, "bytes_scale": 0.001}
            if bed is not None:
                common.update({"data_scale": None, "input_placement": "round-robin"})
            for round_index in range(args.repeat):
                for mode in modes:
                    events_to = out / "events" / f"{stem}-{mode}-r{round_index}.json" if args.events else None
                    record = one_run(client, target, mode, models.get(stem, {}), speeds_dir, time_scale=time_scale,
                                     timeout_s=timeout_s, bed=run_bed, common=common, events_to=events_to)  # fmt: skip
                    record.update(extra, round=round_index, scenario=scenario)
                    runs.append(record)
                    _log(f"{scenario} {stem} r{round_index} {mode}: "
                         + (f"makespan {record['makespan_s']:.2f} s, sim {record.get('sim_s') or 0:.2f} s"
                            if "makespan_s" in record else f"ERROR {record.get('error')}")
                         + f", lost {record.get('workers_lost')}, failed {record.get('failed_tasks')}, "
                         f"load {record['load_before']:.1f}, {record['wall_s']:.0f} s wall")
                    save()
    summary = save()
    _log(f"{scenario}: wrote {out / f'{scenario}.json'}")
    print(summary_mod.markdown_table(summary))
    print(json.dumps({"geomean": summary["geomean"], "targets": summary["targets"]}, default=str))
    return summary


def run_memory(args, out: pathlib.Path) -> dict[str, Any]:
    """``steering_memory.py`` per seed (each bounded, each failure recorded); the clean-run counts."""
    from benchmarks import steering_memory

    seeds = [int(s) for s in args.memory_seeds.split(",")]
    per_seed: dict[str, Any] = {}
    meta = {"scenario": "memory", "commit": _commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "repeat": args.repeat, "modes": args.modes, "seeds": seeds, "argv": sys.argv}  # fmt: skip
    for seed in seeds:
        path = out / f"memory-seed{seed}.json"
        argv = ["--seed", str(seed), "--train-seed", str(seed + 100), "--tasks", "64", "--repeat", str(args.repeat),
                "--modes", args.modes, "--timeout", str(args.run_timeout or 120), "--out", str(path)]  # fmt: skip
        if args.events:
            argv += ["--events", str(out / "events")]
        if args.memory_stock_repeat is not None:
            argv += ["--stock-repeat", str(args.memory_stock_repeat)]
        load = os.getloadavg()[0]
        _log(f"memory seed {seed}: steering_memory.py {' '.join(argv)} (load {load:.1f})")
        try:
            with contextlib.redirect_stdout(sys.stderr):
                steering_memory.main(argv)
            per_seed[str(seed)] = json.loads(path.read_text())
        except Exception as exc:  # noqa: BLE001 - the other seeds still run
            per_seed[str(seed)] = {"error": f"{type(exc).__name__}: {exc}"[:2000], "runs": []}
        per_seed[str(seed)]["load_before"] = load
        per_seed[str(seed)]["load_after"] = os.getloadavg()[0]
        _write_json(out / "memory.json", {"meta": meta, "summary": summary_mod.memory_summary(per_seed), "seeds": per_seed})
    summary = summary_mod.memory_summary(per_seed)
    (out / "memory.md").write_text(summary_mod.memory_markdown(summary) + "\n")
    print(summary_mod.memory_markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="hetero")
    parser.add_argument("--traces", default=None, help="comma-separated trace stems or files (default: eight traces)")
    parser.add_argument("--modes", default="stock,steer,oracle", help="alternated in this order every round")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of alternated modes (memory: runs per mode)")
    parser.add_argument("--target-seconds", type=float, default=8.0, help="lower bound on 8 slots scaled to this")
    parser.add_argument("--link-mbit", type=float, default=200.0)
    parser.add_argument("--run-timeout", type=float, default=None, help="seconds per run (default 12 x target)")
    parser.add_argument("--max-record-seconds", type=float, default=40.0, help="skip longer sibling recordings")
    parser.add_argument("--rounds", type=int, default=200, help="boosting rounds for daskflow model train")
    parser.add_argument("--memory-seeds", default="0,1,2")
    parser.add_argument("--memory-stock-repeat", type=int, default=None,
                        help="memory: stock runs per seed (default --repeat); steer runs --repeat")
    parser.add_argument("--models", default=str(REPO / ".daskflow" / "bench" / "multihost-models"),
                        help="model cache (shared by the scenarios)")
    parser.add_argument("--events", action="store_true",
                        help="write each steered run's decision events to <out>/events/ (diagnostics)")
    parser.add_argument("--out", default=None, help="output directory (default .daskflow/bench/multihost-<UTC stamp>)")
    args = parser.parse_args(argv)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = pathlib.Path(args.out or REPO / ".daskflow" / "bench" / f"multihost-{stamp}").absolute()
    out.mkdir(parents=True, exist_ok=True)
    _log(f"{args.scenario}: output in {out}")
    try:
        if args.scenario == "memory":
            run_memory(args, out)
        else:
            run_matrix(args.scenario, args, out)
    except KeyboardInterrupt:
        _log("interrupted: the test bed was torn down; partial results are in the output directory")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
