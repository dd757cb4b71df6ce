"""The runs page and /daskflow/api/runs on an in-process scheduler with the dashboard preload.

The catalog holds a manual run, a schedule run, a sensor tick, a queued run
and a half-done backfill; the JSON route and the Bokeh document must show each.
"""

from __future__ import annotations

import json

import pytest

from tests.dashboard.helpers import fetch

pytestmark = pytest.mark.timeout(120)


def _timeline_catalog(home):
    from daskflow.catalog import Catalog
    from daskflow.timeline.backfill import BackfillPlan, Backfills
    from daskflow.timeline.queue import QueueEntry, RunQueue
    from daskflow.timeline.store import LaunchClaim, TimelineStore

    catalog = Catalog(home / "catalog.sqlite")
    manual = catalog.start_run(pipeline="etl")
    catalog.record_materialization(manual.run_id, "raw", {"path": "/d/raw", "format": "json", "rows": 1})
    catalog.finish_run(manual.run_id, "success")
    scheduled = catalog.start_run("sched-run", pipeline="etl", tags={"trigger": "schedule", "schedule": "nightly"})
    store = TimelineStore(catalog.path)
    store.record_schedule_tick("nightly", [LaunchClaim("schedule", "nightly", "k", 1000.0, scheduled.run_id)], 1000.0)
    store.set_next_tick("timeline_schedules", "nightly", 2000.0)
    store.record_sensor_tick("new_files", 1500.0, "skipped", "no new files", [], None)
    store.set_next_tick("timeline_sensors", "new_files", 1530.0)
    RunQueue(store).enqueue([QueueEntry("waiting-run", "sensor", "new_files", {"pipeline": "etl"}, pool="warehouse")])
    plan = BackfillPlan("etl.py", "daily", ("daily",), "2024-01-01...2024-01-04", ("a", "b", "c", "d"),
                        (("a", "b"), ("c", "d")))
    backfills = Backfills(store)
    backfill_id = backfills.create(plan, 1)
    first = backfills.chunks(backfill_id)[0]["run_id"]
    catalog.start_run(first, tags={"trigger": "backfill", "backfill": backfill_id})
    catalog.finish_run(first, "success")
    catalog.close()
    store.close()
    return {"manual": manual.run_id, "backfill": backfill_id}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import dask.config
    from distributed import LocalCluster

    home = tmp_path_factory.mktemp("runs-home")
    ids = _timeline_catalog(home)
    settings = {"daskflow.home": str(home), "daskflow.dashboard.update-interval": "200ms"}
    with dask.config.set(settings), LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"preload": ["scheduler_plugins.dashboard"]}) as local:
        yield {"base": f"http://127.0.0.1:{local.scheduler.http_server.port}", **ids}


def test_the_runs_json_lists_runs_with_triggers_queue_ticks_and_backfill_progress(cluster):
    status, body = fetch(cluster["base"] + "/daskflow/api/runs")
    assert status == 200
    payload = json.loads(body)
    by_id = {r["run_id"]: r for r in payload["runs"]}
    manual = by_id[cluster["manual"]]
    assert (manual["trigger"], manual["status"], manual["materializations"]) == ("manual", "success", 1)
    assert manual["duration_s"] >= 0
    assert (by_id["sched-run"]["trigger"], by_id["sched-run"]["origin"]) == ("schedule", "nightly")
    assert (payload["queued"][0]["run_id"], payload["queued"][0]["pool"]) == ("waiting-run", "warehouse")
    assert payload["schedules"] == [{"name": "nightly", "next_tick_at": 2000.0, "evaluated_until": 1000.0,
                                     "last_tick_at": 1000.0, "last_status": "claimed"}]
    assert payload["sensors"][0]["name"] == "new_files" and payload["sensors"][0]["next_tick_at"] == 1530.0
    backfill = payload["backfills"][0]
    assert (backfill["backfill_id"], backfill["done"], backfill["pending"]) == (cluster["backfill"], 2, 2)
    assert payload["counts"]["queued"] == 2  # the waiting run and the backfill's second chunk (the first ran)
    limited = json.loads(fetch(cluster["base"] + "/daskflow/api/runs?limit=1")[1])
    assert len(limited["runs"]) == 1


def test_the_index_links_the_runs_page_and_its_json(cluster):
    status, body = fetch(cluster["base"] + "/daskflow/")
    assert status == 200 and 'href="/daskflow/runs"' in body and "/daskflow/api/runs" in body


def test_the_runs_page_renders_its_tables_with_data(cluster):
    from bokeh.client import pull_session

    status, body = fetch(cluster["base"] + "/daskflow/runs")
    assert status == 200
    for name in ("daskflow-runs-table", "daskflow-runs-queued", "daskflow-runs-ticks", "daskflow-runs-backfills"):
        assert f'id="{name}-ref"' in body
    with pull_session(url=f"{cluster['base']}/daskflow/runs") as session:
        doc = session.document
        runs = doc.get_model_by_name("daskflow-runs-runs-source").data
        assert "manual" in runs["trigger"] and "schedule" in runs["trigger"]
        assert doc.get_model_by_name("daskflow-runs-backfills-source").data["progress"] == ["50%"]
        assert set(doc.get_model_by_name("daskflow-runs-ticks-source").data["kind"]) == {"schedule", "sensor"}


def test_an_absent_catalog_gives_empty_lists_and_a_note(tmp_path):
    from daskflow.timeline.overview import runs_overview

    payload = runs_overview(tmp_path / "none.sqlite")
    assert payload["runs"] == [] and "no catalog" in payload["note"]
    assert not (tmp_path / "none.sqlite").exists()
