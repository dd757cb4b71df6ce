"""Orchestration overhead per trivial asset (issue: foundation).

Runs trivial assets (each returns a tiny JSON value, which is still written
to storage and recorded in the catalog) on an embedded 2-worker LocalCluster,
for three graph shapes at 200 and 1000 assets:

* chain      a0 -> a1 -> ... -> a(n-1)
* fan        one root -> n-2 middle assets -> one sink reading all of them
* layered    layers of width 10, each asset reading two assets of the layer before

The headline number is the *marginal* cost per asset between 200 and 1000
assets, ``(T(1000) - T(200)) / 800``, which cancels fixed costs (planning
setup, graph submission latency, run start/finish). As a floor, the same
shapes run as plain Dask graphs of no-op tasks on the same cluster. Besides
wall time it reports the CPU time of the client process per asset (the
embedded scheduler runs in that process too, so this is client + scheduler
CPU), which is much less sensitive to other load on a shared machine.

    python benchmarks/overhead.py            # prints a table and one JSON line
    python benchmarks/overhead.py --sizes 200 1000 --repeat 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

SHAPES = ("chain", "fan", "layered")


def _make_function(n_parents: int, index: int):
    """A fresh trivial function with ``n_parents`` parameters p0..pN (one object per asset)."""
    params = ", ".join(f"p{i}" for i in range(n_parents))
    namespace: dict = {"__name__": __name__}  # a real module name: cloudpickle need not search sys.modules
    exec(f"def asset_{index}({params}):\n    return {index}\n", namespace)  # noqa: S102 - generated benchmark code
    return namespace[f"asset_{index}"]


def parents_of(shape: str, n: int) -> list[list[int]]:
    """For each asset index, the indices of its parents."""
    if shape == "chain":
        return [[] if i == 0 else [i - 1] for i in range(n)]
    if shape == "fan":
        return [[]] + [[0] for _ in range(1, n - 1)] + [list(range(1, n - 1))]
    if shape == "layered":
        width = 10
        parents = []
        for i in range(n):
            layer, position = divmod(i, width)
            if layer == 0:
                parents.append([])
            else:
                base = (layer - 1) * width
                parents.append(sorted({base + position, base + (position + 1) % width}))
        return parents
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def build_assets(shape: str, n: int) -> list:
    from daskflow.definitions import asset

    assets = []
    for i, parents in enumerate(parents_of(shape, n)):
        fn = _make_function(len(parents), i)
        ins = {f"p{k}": f"a{p}" for k, p in enumerate(parents)}
        assets.append(asset(fn, name=f"a{i}", ins=ins, io="json", code_version="1"))
    return assets


def run_daskflow(client, shape: str, n: int, storage: str | None = None) -> tuple[float, float]:
    """(wall seconds, client-process CPU seconds) of one materialize() of the shape."""
    from daskflow.execution import materialize

    assets = build_assets(shape, n)
    started, started_cpu = time.perf_counter(), time.process_time()
    result = materialize(assets, client=client, progress=False, store=storage)
    elapsed_s, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    if not result.ok:
        raise RuntimeError(f"benchmark run failed: {result}")
    return elapsed_s, cpu_s


def _noop(*args):
    return 1


def run_plain_dask(client, shape: str, n: int) -> tuple[float, float]:
    """The same shape as a plain Dask graph of no-op tasks: Dask's own floor."""
    import uuid

    token = uuid.uuid4().hex
    graph = {}
    for i, parents in enumerate(parents_of(shape, n)):
        graph[f"t{i}-{token}"] = (_noop, *[f"t{p}-{token}" for p in parents])
    started, started_cpu = time.perf_counter(), time.process_time()
    client.get(graph, list(graph))
    return time.perf_counter() - started, time.process_time() - started_cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[200, 1000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the minimum is kept")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--storage", default=None,
                        help="asset storage URL (default: <home>/data on local disk, fsync'ed; "
                             "memory://bench isolates orchestration + catalog from disk writes)")
    parser.add_argument("--preload", action="store_true",
                        help="preload the daskflow scheduler plugins (recorder, steering, dashboard) as "
                             "`daskflow run` does; off by default to measure orchestration alone")
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    args = parser.parse_args(argv)

    home = tempfile.mkdtemp(prefix="daskflow-overhead-")
    os.environ["DASKFLOW_HOME"] = home
    import dask.config
    from distributed import Client, LocalCluster

    small, large = args.sizes
    results: dict = {"sizes": [small, large], "repeat": args.repeat, "workers": 2, "threads_per_worker": 1,
                     "storage": args.storage or "local disk", "preload": args.preload, "shapes": {}}
    with dask.config.set({"daskflow.home": home}), LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        scheduler_kwargs={"preload": ["scheduler_plugins.preload"]} if args.preload else {},
    ) as cluster, Client(cluster) as client:
        run_daskflow(client, "chain", 20, args.storage)  # warm up imports on the workers
        for shape in args.shapes:
            row = {}
            for n in (small, large):
                runs = [run_daskflow(client, shape, n, args.storage) for _ in range(args.repeat)]
                row[f"daskflow_s_{n}"], row[f"daskflow_client_cpu_s_{n}"] = min(runs)
                row[f"dask_s_{n}"], row[f"dask_client_cpu_s_{n}"] = min(
                    run_plain_dask(client, shape, n) for _ in range(args.repeat))
            span = large - small
            row["daskflow_marginal_ms_per_asset"] = 1000 * (row[f"daskflow_s_{large}"] - row[f"daskflow_s_{small}"]) / span
            row["dask_marginal_ms_per_task"] = 1000 * (row[f"dask_s_{large}"] - row[f"dask_s_{small}"]) / span
            row["client_cpu_marginal_ms_per_asset"] = 1000 * (
                row[f"daskflow_client_cpu_s_{large}"] - row[f"daskflow_client_cpu_s_{small}"]) / span
            row["dask_client_cpu_marginal_ms_per_task"] = 1000 * (
                row[f"dask_client_cpu_s_{large}"] - row[f"dask_client_cpu_s_{small}"]) / span
            row["daskflow_mean_ms_per_asset_at_large"] = 1000 * row[f"daskflow_s_{large}"] / large
            row["ratio_marginal_vs_dask"] = row["daskflow_marginal_ms_per_asset"] / max(row["dask_marginal_ms_per_task"], 1e-9)
            results["shapes"][shape] = row
            if not args.json:
                print(f"{shape:8s} daskflow {row[f'daskflow_s_{small}']:.2f}s/{row[f'daskflow_s_{large}']:.2f}s "
                      f"marginal {row['daskflow_marginal_ms_per_asset']:.2f} ms/asset | plain dask "
                      f"marginal {row['dask_marginal_ms_per_task']:.2f} ms/task | "
                      f"ratio {row['ratio_marginal_vs_dask']:.1f}x | client+scheduler CPU "
                      f"{row['client_cpu_marginal_ms_per_asset']:.2f} ms/asset vs "
                      f"{row['dask_client_cpu_marginal_ms_per_task']:.2f} ms/task", file=sys.stderr)
    results["max_marginal_ms_per_asset"] = max(r["daskflow_marginal_ms_per_asset"] for r in results["shapes"].values())
    results["median_marginal_ms_per_asset"] = statistics.median(
        r["daskflow_marginal_ms_per_asset"] for r in results["shapes"].values())
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
