"""asv: orchestration overhead — materializing trivial asset graphs on an embedded cluster.

Why it matters: daskflow's promise over Dagster is a small per-asset overhead
(target ≤ 5 ms per asset including catalog writes, issue 2), so that many small
assets are cheap. Every asset here returns the int 1, so the time is planning,
building and submitting one annotated Dask graph, storage writes (JSON) and
SQLite catalog records — orchestration, not compute.

The cluster is the embedded default (``LocalCluster``, 2 worker processes × 1
thread, scheduler preload with recorder and steering) started once in ``setup``
and passed as ``client=``: cluster start-up is not part of the number. Shapes
come from :mod:`benchmarks.peers.shapes` (chain; fan-out/fan-in; layered width 10,
two parents each). Compare 200 vs 1000 assets for the marginal cost per asset.
"""

from __future__ import annotations

import logging

from benchmarks import IsolatedHome, require
from benchmarks.peers.shapes import SHAPES, trivial_functions

SCHEDULER_PRELOAD = "scheduler_plugins.preload"


def start_embedded_cluster():
    """``(cluster, client)`` configured like daskflow's embedded default cluster."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.CRITICAL,
                           scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]})
    return cluster, Client(cluster)


class _MaterializeSetup:
    """Shared setup: an isolated home, the embedded cluster, N trivial asset definitions."""

    param_names = ["shape", "n_assets"]
    timeout = 300
    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0

    def setup(self, shape: str, n_assets: int) -> None:
        execution = require("daskflow.execution", "materialize")
        definitions = require("daskflow.definitions", "asset", "Definitions")
        self.materialize = execution.materialize
        self.home = IsolatedHome()
        self.cluster, self.client = start_embedded_cluster()
        self.definitions = definitions.Definitions(
            assets=[definitions.asset(fn) for fn in trivial_functions(shape, n_assets)])
        # One small run first: worker imports, catalog schema, first-run costs are not what we measure.
        warm = definitions.Definitions(assets=[definitions.asset(fn) for fn in trivial_functions("chain", 5)])
        self._run(warm)

    def teardown(self, shape: str, n_assets: int) -> None:
        self.client.close()
        self.cluster.close()
        self.home.close()

    def _run(self, definitions) -> None:
        result = self.materialize(definitions, client=self.client, progress=False)
        if not result.ok:
            raise RuntimeError(f"benchmark run failed: {result!r}")


class MaterializeTrivial(_MaterializeSetup):
    """``daskflow.execution.materialize`` of N trivial assets on a running embedded cluster."""

    params = [list(SHAPES), [200, 1000]]

    def time_materialize(self, shape: str, n_assets: int) -> None:
        """Wall time of one run: plan, submit one graph, store every value, record the catalog."""
        self._run(self.definitions)


class MaterializeTrivialMemory(_MaterializeSetup):
    """Peak client memory of materializing N trivial layered assets.

    Memory grows with the number of assets, not with the shape, so only the
    layered shape is measured (each size costs a cluster start in quick mode).
    """

    params = [["layered"], [200, 1000]]

    def peakmem_materialize(self, shape: str, n_assets: int) -> None:
        """Peak memory of the client process during one run (plan, futures, results, catalog)."""
        self._run(self.definitions)
