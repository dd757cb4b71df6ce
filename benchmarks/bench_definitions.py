"""asv: cost of the pure definition layer — ``@asset`` and building the asset graph.

Why it matters: a pipeline file is loaded (decorated, collected, resolved into an
:class:`~daskflow.graph.AssetGraph`) by every ``daskflow run``/``assets``/``lineage``
command and by every ``materialize`` call before a task reaches Dask, so it must
stay far below the per-asset execution cost even for 10k assets. These numbers
are pure Python, no cluster: they should be stable across machines' load.

Graphs are the "layered" shape of :mod:`benchmarks.peers.shapes` (width 10, two
parents per asset, upstream named by parameters).
"""

from __future__ import annotations

from benchmarks import require
from benchmarks.peers.shapes import asset_name, trivial_functions


class DefineAssets:
    """``@asset`` on N plain functions and collecting them into ``Definitions``."""

    params = [1_000, 10_000]
    param_names = ["n_assets"]
    timeout = 120
    number = 1
    repeat = (1, 5, 20.0)

    def setup(self, n_assets: int) -> None:
        definitions = require("daskflow.definitions", "asset", "Definitions")
        self.asset = definitions.asset
        self.Definitions = definitions.Definitions
        self.functions = trivial_functions("layered", n_assets)

    def time_decorate(self, n_assets: int) -> None:
        """``@asset`` records a frozen spec per function (signature, code version, ...)."""
        for fn in self.functions:
            self.asset(fn)

    def time_decorate_and_collect(self, n_assets: int) -> None:
        """``@asset`` on every function, then ``Definitions(assets=...)`` (key checks, dedupe)."""
        self.Definitions(assets=[self.asset(fn) for fn in self.functions])


class BuildAssetGraph:
    """``build_asset_graph``: resolve parameter references, detect cycles, order topologically."""

    params = [1_000, 10_000]
    param_names = ["n_assets"]
    timeout = 120
    number = 1
    repeat = (1, 5, 20.0)

    def setup(self, n_assets: int) -> None:
        definitions = require("daskflow.definitions", "asset", "Definitions")
        graph = require("daskflow.graph", "build_asset_graph")
        self.build_asset_graph = graph.build_asset_graph
        self.definitions = definitions.Definitions(
            assets=[definitions.asset(fn) for fn in trivial_functions("layered", n_assets)])
        self.graph = self.build_asset_graph(self.definitions)
        self.last = asset_name(n_assets - 1)

    def time_build_asset_graph(self, n_assets: int) -> None:
        """Definitions → AssetGraph (what every run and CLI command pays once)."""
        self.build_asset_graph(self.definitions)

    def time_select_all_upstream(self, n_assets: int) -> None:
        """Selection ``+last``: every ancestor of the deepest asset (the whole graph)."""
        self.graph.select("+" + self.last)

    def peakmem_build_asset_graph(self, n_assets: int) -> None:
        """Peak memory of the process holding N definitions and their graph."""
        self.build_asset_graph(self.definitions)
