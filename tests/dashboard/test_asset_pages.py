"""The asset catalog, asset detail (partition grid) and run timeline pages on a real in-process scheduler."""

from __future__ import annotations

import json

import pytest

from tests.dashboard.helpers import (
    DAYS,
    annotated_tasks,
    fetch,
    make_partitioned_catalog,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import dask.config
    from distributed import Client, LocalCluster

    from daskflow.daskgraph import submit_graph

    home = tmp_path_factory.mktemp("asset-pages-home")
    runs = make_partitioned_catalog(home)
    with dask.config.set({"daskflow.home": str(home), "daskflow.dashboard.update-interval": "200ms",
                          "daskflow.steering.oracle": True}):
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"preload": ["scheduler_plugins.preload"]},
        ) as local, Client(local) as client:  # fmt: skip
            client.gather(list(submit_graph(client, annotated_tasks(10)).values()))
            yield {"base": f"http://127.0.0.1:{local.scheduler.http_server.port}", "runs": runs,
                   "scheduler": local.scheduler}


def pulled(cluster, page, **arguments):
    from bokeh.client import pull_session

    with pull_session(url=f"{cluster['base']}/daskflow/{page}", arguments=arguments or None) as session:
        return session.document


def api(cluster, path):
    status, body = fetch(f"{cluster['base']}/daskflow/api/{path}")
    assert status == 200, body
    return json.loads(body)


def test_index_links_the_new_pages(cluster):
    status, body = fetch(cluster["base"] + "/daskflow/")
    assert status == 200
    for page in ("catalog", "asset", "timeline"):
        assert f'href="/daskflow/{page}"' in body and f"/daskflow/api/{page}" in body


def test_catalog_page_lists_one_pipeline_with_links(cluster):
    doc = pulled(cluster, "catalog")
    data = doc.get_model_by_name("daskflow-catalog-source").data
    assert sorted(data["asset"]) == ["daily_revenue", "raw_orders"]
    assert doc.get_model_by_name("daskflow-catalog-pipeline").value == "daily"
    assert api(cluster, "catalog")["pipeline"] == "daily"


def test_asset_page_shows_history_checks_and_the_partition_grid(cluster):
    doc = pulled(cluster, "asset", key="daily_revenue")
    assert doc.get_model_by_name("daskflow-asset-select").value == "daily_revenue"
    history = doc.get_model_by_name("daskflow-asset-history").data
    assert len(history["duration_s"]) == 9
    grid = doc.get_model_by_name("daskflow-asset-partitions").data
    assert dict(zip(grid["partition"], grid["status"])) == {
        DAYS[0]: "materialized", DAYS[1]: "materialized", DAYS[2]: "check-failed", DAYS[3]: "failed",
        DAYS[4]: "stale", DAYS[5]: "missing", DAYS[6]: "stale"}
    assert len(doc.get_model_by_name("daskflow-asset-checks").data["check"]) == 2
    header = doc.get_model_by_name("daskflow-asset-header").text
    assert "code version:</b> 2" in header and 'href="asset?key=raw_orders"' in header
    assert api(cluster, "asset?key=raw_orders")["downstream"] == ["daily_revenue"]
    assert fetch(cluster["base"] + "/daskflow/api/asset")[0] == 400


def test_timeline_page_draws_the_run_per_worker_with_predictions(cluster):
    doc = pulled(cluster, "timeline", run="r1")
    tasks = doc.get_model_by_name("daskflow-timeline-tasks").data
    assert len(tasks["key"]) == 20 and len(set(tasks["worker"])) >= 1
    assert all(stop >= start for start, stop in zip(tasks["start"], tasks["stop"]))
    assert doc.get_model_by_name("daskflow-timeline-run").value == "r1"
    timeline = api(cluster, "timeline?run=r1")
    assert timeline["run_id"] == "r1" and "r1" in timeline["runs"]
    assert all(t["predicted_duration_s"] is not None for t in timeline["tasks"])  # oracle predictions
    assert len(timeline["critical_path"]) == 1  # no lineage for a plain graph: only the last task


def test_assets_page_is_one_pipeline_and_marks_running_assets(cluster):
    from scheduler_plugins.dashboard.pages import live_nodes

    doc = pulled(cluster, "assets")
    assert doc.get_model_by_name("daskflow-assets-pipeline").value == "daily"
    payload = {"runs": [{"pipeline": "daily"}, {"pipeline": "etl"}],
               "nodes": [{"asset": "a", "pipeline": "etl", "status": "materialized"},
                         {"asset": "b", "pipeline": "daily", "status": "materialized"}]}
    assert [n["asset"] for n in live_nodes(payload, set(), "etl")["nodes"]] == ["a"]
    assert live_nodes(payload, {"b"}, None)["nodes"][0]["status"] == "running"


def _wait_for(event_name):
    from distributed import Event

    Event(event_name).wait(timeout=30)
    return 1


def test_a_partition_turns_running_while_its_task_runs(cluster):
    import time

    from distributed import Client, Event

    from daskflow.daskgraph import TaskSpec, submit_graph

    with Client(cluster["scheduler"].address) as client:
        release = Event("daskflow-test-release", client=client)
        spec = TaskSpec("daily_revenue-live-" + DAYS[5], _wait_for, args=("daskflow-test-release",),
                        annotations={"run_id": "live", "kind": "asset", "category": "daily_revenue",
                                     "asset": "daily_revenue", "partition": DAYS[5]})
        future = submit_graph(client, [spec])[spec.key]
        try:
            status = None
            for _ in range(100):
                cells = {c["partition"]: c["status"] for c in api(cluster, "asset?key=daily_revenue")["partitions"]}
                status = cells[DAYS[5]]
                if status == "running":
                    break
                time.sleep(0.1)
            assert status == "running"
            catalog = {a["asset"]: a["status"] for a in api(cluster, "catalog")["assets"]}
            assert catalog["daily_revenue"] == "running"
        finally:
            release.set()
            future.result(timeout=30)
        cells = {c["partition"]: c["status"] for c in api(cluster, "asset?key=daily_revenue")["partitions"]}
        assert cells[DAYS[5]] == "missing"
