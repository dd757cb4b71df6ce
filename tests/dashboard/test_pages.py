"""The daskflow pages and JSON endpoints on a real (in-process) scheduler with the preload.

One module-scoped LocalCluster (threads, so the test can reach the scheduler
object) with ``scheduler_plugins.preload``; annotated tasks run through it and
a real SQLite catalog under the same daskflow home holds one run's lineage.
Pages are fetched over HTTP and their Bokeh documents pulled over the
websocket (``bokeh.client.pull_session``) to check that the plots hold data.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.dashboard.helpers import annotated_tasks, fetch, make_catalog

pytestmark = pytest.mark.timeout(120)

PAGE_MODELS = {
    "predictions": ["daskflow-predictions-duration", "daskflow-predictions-memory", "daskflow-predictions-table"],
    "decisions": ["daskflow-decisions-table", "daskflow-steering-summary", "daskflow-decisions-reasons"],
    "assets": ["daskflow-assets-graph", "daskflow-assets-table"],
    "model": ["daskflow-model-quality", "daskflow-drift"],
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import dask.config
    from distributed import Client, LocalCluster

    from daskflow.daskgraph import submit_graph

    home = tmp_path_factory.mktemp("dashboard-home")
    run_id = make_catalog(home)
    with dask.config.set({"daskflow.home": str(home), "daskflow.dashboard.update-interval": "200ms", "daskflow.steering.oracle": True}):
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"preload": ["scheduler_plugins.preload"]},
        ) as local, Client(local) as client:  # fmt: skip
            client.gather(list(submit_graph(client, annotated_tasks(30)).values()))
            scheduler = local.scheduler
            base = f"http://127.0.0.1:{scheduler.http_server.port}"
            yield {"client": client, "scheduler": scheduler, "base": base, "run_id": run_id, "home": home}


def test_preload_installs_dashboard_next_to_recorder_and_steering(cluster):
    scheduler = cluster["scheduler"]
    assert "daskflow-dashboard" in scheduler.extensions
    assert "daskflow-recorder" in scheduler.plugins
    assert "daskflow-steering" in scheduler.plugins
    assert "daskflow-dashboard" in scheduler.periodic_callbacks


def test_index_links_every_page_and_endpoint(cluster):
    status, body = fetch(cluster["base"] + "/daskflow/")
    assert status == 200
    for page in PAGE_MODELS:
        assert f'href="/daskflow/{page}"' in body
    for api in ("decisions", "model", "predictions", "assets"):
        assert f"/daskflow/api/{api}" in body
    assert fetch(cluster["base"] + "/daskflow")[0] == 200


def test_dask_navigation_bar_links_to_daskflow(cluster):
    status, body = fetch(cluster["base"] + "/status")
    assert status == 200 and 'href="daskflow/"' in body


@pytest.mark.parametrize("page", sorted(PAGE_MODELS))
def test_page_html_names_its_plots_and_loads_bokeh_from_the_same_port(cluster, page):
    status, body = fetch(f"{cluster['base']}/daskflow/{page}")
    assert status == 200
    for name in PAGE_MODELS[page]:
        assert f'id="{name}-ref"' in body
    assert "static/js/bokeh" in body
    assert fetch(f"{cluster['base']}/daskflow/static/js/bokeh.min.js")[0] == 200


def pulled(cluster, page):
    from bokeh.client import pull_session

    with pull_session(url=f"{cluster['base']}/daskflow/{page}") as session:
        return session.document


def test_predictions_page_plots_predicted_against_actual(cluster):
    doc = pulled(cluster, "predictions")
    points = doc.get_model_by_name("daskflow-predictions-points").data
    assert len(points["duration_s"]) == 60
    assert not any(math.isnan(p) for p in points["predicted_duration_s"])  # steering predicted every task
    assert set(doc.get_model_by_name("daskflow-predictions-categories").data["category"]) == {"load", "transform"}


def test_decisions_page_lists_decisions_with_workers_and_alternatives(cluster):
    doc = pulled(cluster, "decisions")
    data = doc.get_model_by_name("daskflow-decisions-source").data
    assert len(data["key"]) > 0
    assert any(worker for worker in data["worker"])
    assert any(reason for reason in data["reason"])
    assert any("inproc://" in alternatives for alternatives in data["alternatives"])  # "worker score | ..."
    assert "steering mode" in doc.get_model_by_name("daskflow-steering-summary").text


def test_model_page_has_a_quality_series(cluster):
    doc = pulled(cluster, "model")
    series = doc.get_model_by_name("daskflow-model-series").data
    assert len(series["model_error"]) >= 1
    assert doc.get_model_by_name("daskflow-drift").text


def test_assets_page_draws_lineage_with_status_colours(cluster):
    from scheduler_plugins.dashboard.assets import STATUS_COLOURS

    doc = pulled(cluster, "assets")
    nodes = doc.get_model_by_name("daskflow-assets-nodes").data
    status = dict(zip(nodes["asset"], nodes["status"]))
    assert status == {"raw": "materialized", "clean": "materialized", "report": "check-failed", "broken": "failed"}
    colour = dict(zip(nodes["asset"], nodes["colour"]))
    assert colour["broken"] == STATUS_COLOURS["failed"]
    assert len(doc.get_model_by_name("daskflow-assets-edges").data["x0"]) == 3


def api(cluster, name):
    status, body = fetch(f"{cluster['base']}/daskflow/api/{name}")
    assert status == 200
    return json.loads(body)


def test_api_predictions_counts_this_run(cluster):
    payload = api(cluster, "predictions")
    assert payload["rows_seen"] == 60
    by_category = {c["category"]: c for c in payload["categories"]}
    assert by_category["transform"]["mean_duration_s"] > by_category["load"]["mean_duration_s"]
    assert len(api(cluster, "predictions?limit=5")["points"]) == 5
    assert fetch(cluster["base"] + "/daskflow/api/predictions?limit=x")[0] == 400


def test_api_decisions_and_model(cluster):
    decisions = api(cluster, "decisions?limit=7")
    assert decisions["present"] is True and decisions["mode"] in {"shadow", "steer", "off"}
    assert 0 < decisions["count"] <= 7
    assert {"key", "action", "worker"} <= set(decisions["decisions"][0])
    model = api(cluster, "model")
    assert model["quality"]["series"] and "drift" in model["quality"]
    assert model["steering"]["present"] is True
    if not model["steering"]["model_version"]:
        assert model["quality"]["drift"]["message"].startswith("no trained model loaded")


def test_api_assets_reads_the_catalog(cluster):
    payload = api(cluster, "assets")
    assert [r["run_id"] for r in payload["runs"]] == [cluster["run_id"]]
    assert sorted(map(tuple, payload["edges"])) == [("clean", "report"), ("raw", "clean"), ("raw", "report")]


def test_install_is_idempotent(cluster):
    from scheduler_plugins.dashboard import install

    scheduler = cluster["scheduler"]
    extension = scheduler.extensions["daskflow-dashboard"]
    n_applications = len(scheduler.http_application.applications)
    cluster["client"].run_on_scheduler(lambda dask_scheduler: install(dask_scheduler))
    assert scheduler.extensions["daskflow-dashboard"] is extension
    assert len(scheduler.http_application.applications) == n_applications


def test_pages_work_without_recorder_and_steering(tmp_path):
    """A scheduler with only the dashboard installed: 200s, empty plots, a note saying why."""
    import dask.config
    from distributed import Client, LocalCluster

    from scheduler_plugins.dashboard import install

    with dask.config.set({"daskflow.home": str(tmp_path)}):
        with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as local, Client(local) as client:
            client.run_on_scheduler(lambda dask_scheduler: install(dask_scheduler))
            client.gather(client.map(abs, range(5)))
            base = {"base": f"http://127.0.0.1:{local.scheduler.http_server.port}"}
            for page in PAGE_MODELS:
                assert fetch(f"{base['base']}/daskflow/{page}")[0] == 200
            doc = pulled(base, "predictions")
            assert len(doc.get_model_by_name("daskflow-predictions-points").data["key"]) == 0
            assert "not installed" in doc.get_model_by_name("daskflow-predictions-note").text
            assert api(base, "decisions") == {"present": False, "mode": "absent", "model_version": None, "fallback_count": None, "recorder": False, "count": 0, "decisions": []}
            assert "no catalog" in api(base, "assets")["note"]


def test_without_the_dask_dashboard_only_the_json_endpoints_are_served(tmp_path):
    import dask.config
    from distributed import Client, LocalCluster

    with dask.config.set({"daskflow.home": str(tmp_path)}):
        with LocalCluster(
            n_workers=1, processes=False, dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"preload": ["scheduler_plugins.dashboard"], "dashboard": False},
        ) as local, Client(local):  # fmt: skip
            base = f"http://127.0.0.1:{local.scheduler.http_server.port}"
            assert fetch(base + "/status")[0] == 404
            assert fetch(base + "/daskflow/predictions")[0] == 404
            assert fetch(base + "/daskflow/api/model")[0] == 200
