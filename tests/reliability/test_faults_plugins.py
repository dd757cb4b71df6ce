"""Plugin faults never fail a run: a raising predictor, a corrupt model directory, an unwritable history.

Each test starts a small in-process cluster (threads, ``processes=False``)
with the daskflow scheduler preload, breaks one plugin input, runs a pipeline
and asserts: the run succeeds, the catalog matches the files, and the fault
produced exactly ONE distinct warning (logging or ``warnings``), naming it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import dask.config
import pytest
from distributed import Client, LocalCluster

from daskflow.catalog import Catalog
from daskflow.contracts import SCHEDULER_PRELOAD, STEERING_PLUGIN
from daskflow.execution import materialize

from .conftest import write_pipeline
from .fault_checks import assert_catalog_matches_disk

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PIPELINE = '''
from daskflow.definitions import asset


@asset(io="json")
def a():
    return list(range(10))


@asset(io="json")
def b(a):
    return [x * 2 for x in a]


@asset(io="json")
def c(a, b):
    return a + b
'''
NO_MODEL_NOTICE = "no model at"  # the normal notice of a home without a trained model


@contextlib.contextmanager
def cluster_with_plugins(**settings):
    with dask.config.set({"daskflow.history.flush-interval": "0.1s", **settings}), \
            LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                         scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]}) as cluster, Client(cluster) as client:
        yield cluster, client


@contextlib.contextmanager
def daskflow_warnings(caplog):
    """Distinct daskflow warning texts, from logging and from ``warnings``, other than the no-model notice."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        yield found
    texts = {str(w.message) for w in caught} | {r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING}
    found.extend(sorted(t for t in texts if "daskflow" in t and NO_MODEL_NOTICE not in t))


def _run_and_check(tmp_path, daskflow_home, client):
    result = materialize(write_pipeline(tmp_path, PIPELINE), client=client, progress=False)
    assert result.ok, result.to_dict()
    catalog = Catalog()
    assert_catalog_matches_disk(catalog, daskflow_home / "data")
    assert sorted(m.asset_key for m in catalog.materializations(run_id=result.run_id)) == ["a", "b", "c"]
    return result


def test_a_raising_predictor_falls_back_to_stock_with_one_warning(daskflow_home, tmp_path, caplog):
    with cluster_with_plugins() as (cluster, client), daskflow_warnings(caplog) as found:
        plugin = cluster.scheduler.plugins[STEERING_PLUGIN]
        plugin._ensure_predictor()

        def broken(records):
            raise RuntimeError("predictor exploded")

        plugin.predictor.predict = broken
        _run_and_check(tmp_path, daskflow_home, client)
        _run_and_check(tmp_path, daskflow_home, client)  # a second run: still no second warning
        assert plugin.fallback_count >= 1
    assert len(found) == 1 and "predictor exploded" in found[0], found


@pytest.mark.parametrize("manifest", ["{not json", '{"version": 1, "category_levels": 7, "feature_defaults": "x"}'],
                         ids=["not-json", "wrong-types"])
def test_a_corrupt_model_directory_predicts_the_baseline_with_one_warning(daskflow_home, tmp_path, caplog, manifest):
    models = daskflow_home / "models"
    models.mkdir()
    (models / "manifest.json").write_text(manifest)
    with daskflow_warnings(caplog) as found, cluster_with_plugins() as (cluster, client):
        assert STEERING_PLUGIN in cluster.scheduler.plugins
        _run_and_check(tmp_path, daskflow_home, client)
    assert len(found) == 1 and "model" in found[0], found


def test_an_unwritable_history_directory_gives_one_warning(daskflow_home, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the history folder should be")
    settings = {"daskflow.history.url": str(blocker / "history")}
    with daskflow_warnings(caplog) as found, cluster_with_plugins(**settings) as (_, client):
        _run_and_check(tmp_path, daskflow_home, client)
        _run_and_check(tmp_path, daskflow_home, client)
    assert len(found) == 1 and "history" in found[0], found
