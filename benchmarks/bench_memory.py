"""asv: memory of the long-lived bookkeeping — the task recorder and the SQLite catalog.

Why it matters: the recorder lives in the scheduler for the cluster's whole
life and buffers one row per finished task; the catalog grows with every
materialization and is read back as Arrow data-location metadata on every run.
Neither may grow the scheduler's or the client's memory without bound.

* Recorder: 50k task completions fed through ``RecorderPlugin.transition``
  (the scheduler hook) with a minimal stand-in scheduler (tasks with daskflow
  annotations, one worker), flushing to the Parquet history as configured.
  This isolates the recorder's own buffers from the rest of the scheduler.
* Catalog: a catalog with 10k materializations (two lineage edges each),
  read back as the Arrow ``data_locations`` table.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from benchmarks import IsolatedHome, require

N_RECORDED_TASKS = 50_000
N_MATERIALIZATIONS = 10_000


def fake_scheduler(n_tasks: int) -> SimpleNamespace:
    """Just the scheduler state ``RecorderPlugin.make_row`` reads: tasks, workers, plugins."""
    worker = SimpleNamespace(nthreads=1, memory_limit=4 * 2**30)
    tasks = {}
    for i in range(n_tasks):
        category = f"cat{i % 25:02d}"
        tasks[f"{category}-run-{i}"] = SimpleNamespace(
            annotations={"daskflow": {"run_id": "run", "kind": "asset", "category": category, "asset": category,
                                      "partition": f"2024-01-{1 + i % 28:02d}", "input_bytes": 1000 * i,
                                      "input_rows": i, "n_inputs": 2, "tags": {"team": "bench"},
                                      "input_locations": [{"host": "127.0.0.1", "bytes": 1000 * i}]}},
            dependencies=(), prefix=SimpleNamespace(name=category))
    return SimpleNamespace(tasks=tasks, workers={"tcp://127.0.0.1:1": worker}, plugins={})


class RecorderMemory:
    """The recorder's buffers and Parquet flushes over 50k finished tasks."""

    timeout = 300
    number = 1
    repeat = (1, 3, 30.0)

    def setup(self) -> None:
        self.RecorderPlugin = require("scheduler_plugins.recorder", "RecorderPlugin").RecorderPlugin
        self.home = IsolatedHome()
        self.scheduler = fake_scheduler(N_RECORDED_TASKS)
        now = time.time()
        self.finish_info = {"worker": "tcp://127.0.0.1:1", "nbytes": 28,
                            "startstops": ({"action": "compute", "start": now, "stop": now + 0.01},),
                            "metadata": {}}

    def teardown(self) -> None:
        self.home.close()

    def _record_all(self) -> None:
        import asyncio

        plugin = self.RecorderPlugin(str(self.home.path / "history"), register_worker_plugin=False)
        plugin.scheduler = self.scheduler
        transition = plugin.transition
        for key in self.scheduler.tasks:
            transition(key, "processing", "memory", stimulus_id="bench", **self.finish_info)
        asyncio.run(plugin.close())  # flushes the buffer and waits for every Parquet write
        if plugin.error_count or plugin.rows_flushed != N_RECORDED_TASKS:
            raise RuntimeError(f"recorder: {plugin.error_count} hook errors, "
                               f"{plugin.rows_flushed}/{N_RECORDED_TASKS} rows flushed")

    def peakmem_record_50k_tasks(self) -> None:
        """Peak memory while recording 50k task completions (buffer, recent rows, Parquet writes)."""
        self._record_all()

    def time_record_50k_tasks(self) -> None:
        """Cost of the recorder's hook for 50k completions plus writing them all to Parquet."""
        self._record_all()


class CatalogMemory:
    """A 10k-materialization SQLite catalog and its Arrow data-location table."""

    timeout = 300
    number = 1
    repeat = (1, 3, 30.0)

    def setup_cache(self) -> str:
        """Write the catalog once (10k materializations, layered lineage); its path is the cache."""
        catalog_module = require("daskflow.catalog", "Catalog")
        path = os.path.abspath("bench-catalog.sqlite")  # asv's cache directory, removed after the run
        catalog = catalog_module.Catalog(path)
        run = catalog.start_run(pipeline="bench")
        ids: list[int] = []
        for i in range(N_MATERIALIZATIONS):
            upstream = [ids[i - 10], ids[i - 9]] if i >= 10 else []
            ids.append(catalog.record_materialization(
                run.run_id, f"group/asset{i:05d}",
                {"path": f"/data/group/asset{i:05d}/{run.run_id}.parquet", "format": "parquet", "rows": i,
                 "bytes": 1000 + i, "schema": None, "host": "127.0.0.1", "worker": "tcp://127.0.0.1:1"},
                code_version="1", duration_s=0.01, upstream_ids=upstream))
        catalog.finish_run(run.run_id, "success")
        catalog.close()
        return path

    def setup(self, path: str) -> None:
        self.Catalog = require("daskflow.catalog", "Catalog").Catalog

    def peakmem_data_locations_10k(self, path: str) -> None:
        """Peak memory of opening the catalog and reading all 10k data locations as Arrow."""
        with self.Catalog(path) as catalog:
            table = catalog.data_locations()
        if table.num_rows != N_MATERIALIZATIONS:
            raise RuntimeError(f"expected {N_MATERIALIZATIONS} data locations, got {table.num_rows}")

    def time_data_locations_10k(self, path: str) -> None:
        """Reading the Arrow data-location table of 10k materializations (done before every run)."""
        with self.Catalog(path) as catalog:
            catalog.data_locations()
