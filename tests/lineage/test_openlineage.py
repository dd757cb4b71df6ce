"""OpenLineage export: events validate against the spec, pair per asset-partition, survive a dead endpoint.

A small fake run, built by hand (no cluster)::

    orders ──> totals ──> report        report fails
    orders.check.not_empty (passed, blocking)
    late   (skipped: an upstream failed)
"""

from __future__ import annotations

import http.server
import json
import pathlib
import socket
import threading
import time
import uuid
import warnings

import pyarrow as pa
import pytest

pytest.importorskip("openlineage.client")
jsonschema = pytest.importorskip("jsonschema")

from openlineage.client import OpenLineageClient
from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Transport

from daskflow.lineage import openlineage as ol
from daskflow.lineage.emitter import BackgroundEmitter, LineageExportWarning
from daskflow.listeners import AssetStart, RunInfo
from daskflow.run_result import AssetRecord, CheckRecord, RunResult

SCHEMAS = pathlib.Path(__file__).with_name("schemas")
ROOT = "/data/store"


def _registry():
    from referencing import Registry, Resource

    resources = []
    for path in [SCHEMAS / "OpenLineage.json", *sorted((SCHEMAS / "facets").glob("*.json"))]:
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validate_event(event: dict) -> None:
    """The event against RunEvent, and every facet against the schema its ``_schemaURL`` names."""
    core = REGISTRY.contents("https://openlineage.io/spec/2-0-2/OpenLineage.json")
    jsonschema.Draft202012Validator(
        {"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"}, registry=REGISTRY,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(event)
    assert core["$id"] in event["schemaURL"]
    facet_groups = [event["run"].get("facets", {}), event["job"].get("facets", {})]
    for ds in event.get("inputs", []) + event.get("outputs", []):
        facet_groups += [ds.get("facets", {}), ds.get("inputFacets", {}), ds.get("outputFacets", {})]
    for facets in facet_groups:
        for name, facet in facets.items():
            url = facet["_schemaURL"]
            assert url.split("#")[0] in {r for r in REGISTRY}, f"facet {name}: no schema fixture for {url}"
            jsonschema.Draft202012Validator({"$ref": url}, registry=REGISTRY).validate(facet)


class RecordingTransport(Transport):
    kind = "recording"

    def __init__(self):
        super().__init__()
        self.events: list[dict] = []

    def emit(self, event):
        self.events.append(json.loads(Serde.to_json(event)))

    def close(self, timeout: float = -1) -> bool:
        return True


ASSETS = {
    "orders": {"upstream": [], "dataset": f"{ROOT}/orders", "tags": {"classification": "pii"},
               "schema": pa.schema([("id", pa.int64()), ("amount", pa.float64()),
                                    ("meta", pa.struct([("src", pa.string())]))])},
    "totals": {"upstream": ["orders"], "dataset": f"{ROOT}/totals",
               "metadata": {"column_lineage": {"total": ["orders.amount"], "n": [{"asset": "orders", "column": "id"}]}}},
    "report": {"upstream": ["totals"], "dataset": f"{ROOT}/report"},
    "late": {"upstream": ["report"], "dataset": f"{ROOT}/late"},
}


def run_info(run_id: str, partition: str | None, pipeline: str = "examples/shop.py", **extra) -> RunInfo:
    planned = tuple((a, partition) for a in ("orders", "totals", "report", "late"))
    inputs = {("orders", partition): (), ("totals", partition): (("orders", partition),),
              ("report", partition): (("totals", partition),), ("late", partition): (("report", partition),)}
    fields = {"run_id": run_id, "pipeline": pipeline, "selection": None, "partitions": None, "tags": {"team": "ops"},
                  "only_stale": False, "totals": {a: 1 for a, _ in planned}, "planned": planned, "inputs": inputs,
                  "code_versions": {a: None for a, _ in planned}}
    return RunInfo(**{**fields, **extra})


def fake_run(listener, run_id: str, partition: str | None = "2024-01-01") -> None:
    """Drive a listener through the small fake run of the module docstring, as the run loop does."""
    run = run_info(run_id, partition)
    listener.run_started(run)
    listener.asset_skipped(run, AssetRecord("old", partition, "stale-skipped"))
    part = partition or "__unpartitioned__"
    orders = AssetRecord("orders", partition, "success", duration_s=0.2, rows=3, bytes=1200,
                         path=f"{ROOT}/orders/{part}/{run_id}.parquet", worker="tcp://127.0.0.1:1", host="h1",
                         data_version="v-orders")
    listener.asset_started(run, AssetStart("orders", partition, f"orders-{run_id}", "v-orders"))
    listener.asset_materialized(run, orders, {"path": orders.path, "schema": None})
    listener.check_evaluated(run, CheckRecord("orders", partition, "not_empty", "passed", True, "3 rows"))
    listener.batch_finished(run)
    totals = AssetRecord("totals", partition, "success", duration_s=0.1, rows=1, bytes=100,
                         path=f"{ROOT}/totals/{part}/{run_id}.parquet", worker="tcp://127.0.0.1:2", host="h2",
                         data_version="v-totals")
    # the worker's MaterializedEvent carries the schema as pyarrow's to_string(); no asset_started: synthesized
    listener.asset_materialized(run, totals, {"path": totals.path, "schema": "total: double\nn: int64"})
    listener.asset_started(run, AssetStart("report", partition, f"report-{run_id}", None))
    listener.asset_failed(run, AssetRecord("report", partition, "failed", error="ValueError: boom",
                                           traceback="Traceback ...\nValueError: boom"))
    listener.asset_skipped(run, AssetRecord("late", partition, "skipped", reason="upstream report did not succeed"))
    listener.run_finished(run, RunResult(run_id, "failure", []))


@pytest.fixture
def recorded():
    transport = RecordingTransport()
    listener = ol.OpenLineageListener(client=OpenLineageClient(transport=transport), assets=ASSETS,
                                      namespace="shop")
    run_id = uuid.uuid4().hex
    fake_run(listener, run_id)
    assert listener.close(5.0)
    return run_id, transport.events


def test_every_event_validates_against_the_openlineage_schema(recorded):
    _, events = recorded
    assert len(events) == 2 + 2 * 4 + 2  # run START/FAIL, 4 asset-partitions, 1 check
    for event in events:
        validate_event(event)


def test_each_asset_partition_has_one_start_then_one_terminal_event(recorded):
    run_id, events = recorded
    by_job: dict[str, list[str]] = {}
    for e in events:
        by_job.setdefault(e["job"]["name"], []).append(e["eventType"])
    assert by_job == {"examples/shop.py": ["START", "FAIL"], "orders": ["START", "COMPLETE"],
                      "orders.check.not_empty": ["START", "COMPLETE"], "totals": ["START", "COMPLETE"],
                      "report": ["START", "FAIL"], "late": ["START", "ABORT"]}
    asset_events = [e for e in events if e["job"]["name"] != "examples/shop.py"]
    for e in asset_events:
        assert e["job"]["namespace"] == "shop"
        assert e["run"]["facets"]["parent"]["run"]["runId"] == str(uuid.UUID(run_id))
        assert e["run"]["facets"]["parent"]["job"]["name"] == "examples/shop.py"
    report_fail = next(e for e in events if e["job"]["name"] == "report" and e["eventType"] == "FAIL")
    assert report_fail["run"]["facets"]["errorMessage"]["message"] == "ValueError: boom"
    assert report_fail["run"]["runId"] == ol.asset_run_id(run_id, "report", "2024-01-01")


def test_datasets_are_named_by_storage_url_with_schema_and_column_lineage(recorded):
    _, events = recorded
    done = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    out = done["orders"]["outputs"][0]
    assert (out["namespace"], out["name"]) == ("file", f"{ROOT}/orders")
    assert [f["name"] for f in out["facets"]["schema"]["fields"]] == ["id", "amount", "meta"]
    assert out["facets"]["schema"]["fields"][2]["fields"][0]["name"] == "src"
    assert out["facets"]["version"]["datasetVersion"] == "v-orders"
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 3
    totals = done["totals"]
    assert [(i["namespace"], i["name"]) for i in totals["inputs"]] == [("file", f"{ROOT}/orders")]
    lineage = totals["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert lineage["total"]["inputFields"] == [{"namespace": "file", "name": f"{ROOT}/orders", "field": "amount",
                                                "transformations": []}]
    assert lineage["n"]["inputFields"][0]["field"] == "id"
    assert [f["name"] for f in totals["outputs"][0]["facets"]["schema"]["fields"]] == ["total", "n"]
    check = done["orders.check.not_empty"]["inputs"][0]
    assert check["inputFacets"]["dataQualityAssertions"]["assertions"][0]["success"] is True
    tags = {t["key"]: t["value"] for t in done["orders"]["run"]["facets"]["tags"]["tags"]}
    assert tags["classification"] == "pii" and tags["daskflow.worker"] == "tcp://127.0.0.1:1"


def test_dataset_naming_follows_the_openlineage_naming_spec():
    assert ol.dataset_naming("s3://bucket/a/b") == ("s3://bucket", "a/b")
    assert ol.dataset_naming("file:///tmp/x") == ("file", "/tmp/x")
    assert ol.dataset_naming("gs://b/k") == ("gs://b", "k")
    assert ol.asset_dataset_url("s3://b/root/orders/2024-01-01/r.parquet") == "s3://b/root/orders"


class _Collector(http.server.BaseHTTPRequestHandler):
    events: list  # set per test on a subclass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).events.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_events_over_http_pair_start_and_complete_per_asset_partition():
    handler = type("Handler", (_Collector,), {"events": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        listener = ol.OpenLineageListener(
            transport={"type": "http", "url": f"http://127.0.0.1:{server.server_address[1]}",
                       "endpoint": "api/v1/lineage", "timeout": 5}, assets=ASSETS)
        run_id = uuid.uuid4().hex
        run = run_info(run_id, "a", pipeline="p", planned=(("orders", "a"), ("orders", "b"), ("report", "a")))
        listener.run_started(run)
        for part in ("a", "b"):
            rec = AssetRecord("orders", part, "success", rows=1, path=f"{ROOT}/orders/{part}/{run_id}.parquet")
            listener.asset_started(run, AssetStart("orders", part, f"orders-{part}", None))
            listener.asset_materialized(run, rec, {"path": rec.path})
        listener.asset_failed(run, AssetRecord("report", "a", "failed", error="RuntimeError: no"))
        listener.run_finished(run, RunResult(run_id, "failure", []))  # flushes
    finally:
        server.shutdown()
        server.server_close()
    pairs: dict[str, list[str]] = {}
    for e in handler.events:
        validate_event(e)
        pairs.setdefault(e["run"]["runId"], []).append(e["eventType"])
    assert pairs[ol.asset_run_id(run_id, "orders", "a")] == ["START", "COMPLETE"]
    assert pairs[ol.asset_run_id(run_id, "orders", "b")] == ["START", "COMPLETE"]
    assert pairs[ol.asset_run_id(run_id, "report", "a")] == ["START", "FAIL"]
    assert pairs[str(uuid.UUID(run_id))] == ["START", "FAIL"]


def _dead_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return port


def test_a_dead_endpoint_drops_events_with_one_warning_and_never_raises():
    listener = ol.OpenLineageListener(
        transport={"type": "http", "url": f"http://127.0.0.1:{_dead_port()}", "timeout": 1,
                   "retry": {"total": 0}}, assets=ASSETS, max_attempts=2, retry_backoff_s=0.01, close_timeout_s=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fake_run(listener, uuid.uuid4().hex)  # run_finished flushes within close_timeout_s
    ours = [w for w in caught if issubclass(w.category, LineageExportWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert "failed after 2 attempt(s)" in str(ours[0].message)


def test_a_full_queue_drops_without_blocking_the_caller():
    gate = threading.Event()
    sent = []

    def slow_send(event):
        gate.wait(10)
        sent.append(event)

    emitter = BackgroundEmitter(slow_send, queue_size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(10):
            emitter.submit(lambda i=i: i)  # returns at once although the sender is stuck
        gate.set()
        assert emitter.close(5.0)
    assert emitter.dropped >= 7 and sent[0] == 0
    assert len([w for w in caught if issubclass(w.category, LineageExportWarning)]) == 1


def test_close_times_out_on_a_stuck_endpoint():
    stuck = threading.Event()
    emitter = BackgroundEmitter(lambda e: stuck.wait(30))
    emitter.submit(lambda: 1)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        started = time.monotonic()
        assert emitter.close(0.2) is False
    assert time.monotonic() - started < 15  # bounded (a generous bound, not a speed assertion)
    stuck.set()


def test_a_bug_in_one_event_does_not_stop_the_others():
    sent = []
    emitter = BackgroundEmitter(sent.append)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        emitter.submit(lambda: 1 / 0)
        emitter.submit(lambda: "ok")
        emitter.close(5.0)
    assert sent == ["ok"] and emitter.dropped == 1


def test_enabled_by_config_or_by_the_clients_own_configuration(tmp_path, monkeypatch):
    assert ol.openlineage_enabled(True, None, environ={}) is True
    assert ol.openlineage_enabled(False, None, environ={"OPENLINEAGE_URL": "http://x"}) is False
    assert ol.openlineage_enabled(None, {"type": "console"}, environ={}, cwd=str(tmp_path)) is True
    assert ol.openlineage_enabled(None, None, environ={"HOME": str(tmp_path)}, cwd=str(tmp_path)) is False
    (tmp_path / "openlineage.yml").write_text("transport: {type: console}\n")
    assert ol.openlineage_enabled(None, None, environ={"HOME": str(tmp_path)}, cwd=str(tmp_path)) is True
    assert ol.openlineage_enabled(True, None, environ={"OPENLINEAGE_DISABLED": "true"}) is False


def test_listener_from_dask_config_writes_to_the_configured_transport(tmp_path):
    import dask.config

    log = tmp_path / "events.jsonl"
    with dask.config.set({"daskflow.openlineage.transport": {"type": "file", "log_file_path": str(log),
                                                             "append": True}}):
        listener = ol.openlineage_listener(assets=ASSETS)
    assert listener is not None
    fake_run(listener, uuid.uuid4().hex, partition=None)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 12
    for event in lines:
        validate_event(event)
    with dask.config.set({"daskflow.openlineage.enabled": False}):
        assert ol.openlineage_listener() is None


def test_describe_assets_reads_the_asset_graph(tmp_path):
    import daskflow
    from daskflow.graph import build_asset_graph
    from daskflow.storage import AssetStore

    @daskflow.asset(tags={"classification": "pii"}, metadata={"column_lineage": {"y": ["a.x"]}})
    def a():
        return [1]

    @daskflow.asset
    def b(a):
        return a

    graph = build_asset_graph(daskflow.Definitions(assets=[a, b]))
    info = ol.describe_assets(graph, AssetStore(str(tmp_path)))
    assert info["b"]["upstream"] == ["a"] and info["a"]["tags"] == {"classification": "pii"}
    assert info["b"]["dataset"].endswith("/b")


def test_a_missing_client_is_an_install_hint(monkeypatch):
    import sys

    from daskflow.errors import OptionalDependencyError

    monkeypatch.setitem(sys.modules, "openlineage.client", None)  # import fails as if not installed
    with pytest.raises(OptionalDependencyError, match=r"daskflow\[lineage\]"):
        ol.OpenLineageListener()
