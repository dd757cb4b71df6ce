"""Real runs through ``materialize(listeners=[...])``: the examples' events validate and pair; HTTP end to end."""

from __future__ import annotations

import http.server
import json
import pathlib
import threading

import pytest

pytest.importorskip("openlineage.client")
pytest.importorskip("jsonschema")

from openlineage.client import OpenLineageClient

from daskflow.lineage import openlineage as ol
from tests.lineage.test_openlineage import (
    RecordingTransport,
    _Collector,
    validate_event,
)

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def _pairs(events):
    runs: dict[str, list[str]] = {}
    for event in events:
        validate_event(event)
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
    return runs


@pytest.mark.parametrize("example", ["etl_pipeline.py", "ml_pipeline.py"])
def test_example_pipeline_events_validate_and_pair(example, client, daskflow_home):
    from daskflow.execution import materialize
    from daskflow.graph import build_asset_graph
    from daskflow.loading import load_definitions
    from daskflow.storage import AssetStore

    graph = build_asset_graph(load_definitions(str(EXAMPLES / example)))
    transport = RecordingTransport()
    listener = ol.OpenLineageListener(client=OpenLineageClient(transport=transport),
                                      assets=ol.describe_assets(graph, AssetStore()))
    result = materialize(str(EXAMPLES / example), client=client, progress=False, listeners=[listener])
    assert result.ok
    events = transport.events
    assert len(events) == 2 + 2 * len(result.records) + 2 * len(result.checks)
    runs = _pairs(events)
    assert all(kinds == ["START", "COMPLETE"] for kinds in runs.values()), json.dumps(runs)[:500]
    complete = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] in graph.assets]
    assert any("schema" in e["outputs"][0]["facets"] for e in complete), "Parquet outputs carry their Arrow schema"
    assert any(e["inputs"] for e in complete), "assets with upstreams name their input datasets"


@pytest.mark.parametrize("via", ["listener", "config"])
def test_a_real_run_over_http_pairs_start_and_complete_and_fails_the_failing_asset(via, client, daskflow_home):
    """``via="config"``: no listener passed; ``daskflow.openlineage.*`` makes materialize export by itself."""
    import dask.config

    import daskflow
    from daskflow.execution import materialize

    @daskflow.asset(partitions=["a", "b"])
    def orders(context):
        return [{"id": 1, "part": context.partition}]

    @daskflow.asset
    def broken(orders):
        raise ValueError("boom")

    @daskflow.asset
    def after(broken):
        return broken

    handler = type("Handler", (_Collector,), {"events": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = {"type": "http", "timeout": 5, "url": f"http://127.0.0.1:{server.server_address[1]}"}
        if via == "listener":
            listener = ol.OpenLineageListener(transport=transport)
            result = materialize([orders, broken, after], client=client, progress=False, listeners=[listener])
        else:
            with dask.config.set({"daskflow.openlineage.enabled": True, "daskflow.openlineage.transport": transport}):
                result = materialize([orders, broken, after], client=client, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert not result.ok
    runs = _pairs(handler.events)
    rid = result.run_id
    assert runs[ol.asset_run_id(rid, "orders", "a")] == ["START", "COMPLETE"]
    assert runs[ol.asset_run_id(rid, "orders", "b")] == ["START", "COMPLETE"]
    assert runs[ol.asset_run_id(rid, "broken", None)] == ["START", "FAIL"]
    assert runs[ol.asset_run_id(rid, "after", None)] == ["START", "ABORT"]
    assert runs[ol.parent_run_id(rid)] == ["START", "FAIL"]
    broken_inputs = next(e for e in handler.events if e["job"]["name"] == "broken" and e["eventType"] == "FAIL")
    assert [i["name"].rsplit("/", 1)[-1] for i in broken_inputs["inputs"]] == ["orders"]
