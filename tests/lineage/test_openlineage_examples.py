"""The example pipelines' records, replayed through the exporter, give only schema-valid, paired events.

Until the run loop calls listeners (``RunListener``), this drives the listener from a real
``materialize`` result: the same records, paths and schemas a live run would report.
"""

from __future__ import annotations

import json
import pathlib

import pytest

pytest.importorskip("openlineage.client")
pytest.importorskip("jsonschema")

from openlineage.client import OpenLineageClient

from daskflow.lineage import openlineage as ol
from tests.lineage.test_openlineage import RecordingTransport, validate_event

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.mark.parametrize("example", ["etl_pipeline.py", "ml_pipeline.py"])
def test_example_pipeline_events_validate_and_pair(example, daskflow_home):
    from distributed import Client, LocalCluster

    from daskflow.catalog import Catalog
    from daskflow.execution import materialize
    from daskflow.graph import build_asset_graph
    from daskflow.loading import load_definitions
    from daskflow.storage import AssetStore

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        result = materialize(str(EXAMPLES / example), client=client, progress=False)
    assert result.ok
    schemas = {(m.asset_key, m.partition): m.schema for m in Catalog().materializations(run_id=result.run_id)}
    graph = build_asset_graph(load_definitions(str(EXAMPLES / example)))
    transport = RecordingTransport()
    listener = ol.OpenLineageListener(client=OpenLineageClient(transport=transport),
                                      assets=ol.describe_assets(graph, AssetStore()))
    listener.run_started({"run_id": result.run_id, "pipeline": example})
    for record in result.records:
        record = {**vars(record), "schema": schemas.get((record.asset, record.partition))}
        listener.asset_started(record)
        listener.asset_materialized(record)
    for check in result.checks:
        listener.check_evaluated(check)
    listener.run_finished(result)
    events = transport.events
    assert len(events) == 2 + 2 * len(result.records) + 2 * len(result.checks)
    runs: dict[str, list[str]] = {}
    for event in events:
        validate_event(event)
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert all(kinds == ["START", "COMPLETE"] for kinds in runs.values()), json.dumps(runs)[:500]
    with_schema = [e for e in events if e["eventType"] == "COMPLETE" and e["outputs"]
                   and "schema" in e["outputs"][0]["facets"]]
    assert with_schema, "the Parquet outputs carry their Arrow schema"
    read_upstream = [e for e in events if e["eventType"] == "COMPLETE" and e["inputs"] and e["job"]["name"] in graph.assets]
    assert read_upstream, "assets with upstreams name their input datasets"
