"""A real browser loads every daskflow page, Bokeh renders it, and the plots hold data.

Headless Chromium (Debian package ``chromium``) driven over the DevTools
protocol (:mod:`tests.dashboard.cdp`). For each page the test waits until
BokehJS has the document, the named data sources hold the expected rows, and
every view is idle (rendered), then saves a screenshot to
``test-artifacts/dashboard-<page>.png``. Without Chromium the test is skipped
with the install command as the reason.
"""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest

from tests.dashboard.cdp import Browser, Page, find_chromium
from tests.dashboard.helpers import annotated_tasks, make_catalog, make_partitioned_catalog

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(180)]

ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"

# page -> [(data source name, column, minimum rows)]
EXPECTED = {
    "predictions": [("daskflow-predictions-points", "duration_s", 60), ("daskflow-predictions-categories", "category", 2)],
    "decisions": [("daskflow-decisions-source", "key", 1), ("daskflow-decisions-reasons-source", "reason", 1)],
    "assets": [("daskflow-assets-nodes", "asset", 4), ("daskflow-assets-edges", "x0", 3)],
    "model": [("daskflow-model-series", "model_error", 1)],
    "catalog": [("daskflow-catalog-source", "asset", 3)],
    "asset?key=daily_revenue": [("daskflow-asset-history", "duration_s", 9), ("daskflow-asset-partitions", "status", 7)],
    "timeline?run=r1": [("daskflow-timeline-tasks", "key", 60)],
}


def shot_name(page: str) -> str:
    """``asset?key=daily_revenue`` -> ``asset``: one screenshot per page."""
    return page.split("?", 1)[0]

ROWS_JS = """(() => {
  const B = window.Bokeh;
  if (!B || !B.documents || !B.documents.length) return null;
  const doc = B.documents[0];
  const rows = {};
  for (const [name, column] of %s) {
    const model = doc.get_model_by_name(name);
    rows[name] = model ? model.data[column].length : -1;
  }
  const views = [...B.index];
  return {rows, views: views.length, idle: views.length > 0 && views.every(v => v.is_idle)};
})()"""


@pytest.fixture(scope="module")
def chromium():
    executable = find_chromium()
    if executable is None:
        pytest.skip("Chromium is not installed: the browser test needs `apt-get install -y chromium`")
    return executable


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    import dask.config
    from distributed import Client, LocalCluster

    from daskflow.daskgraph import submit_graph

    home = tmp_path_factory.mktemp("browser-home")
    make_partitioned_catalog(home)  # pipeline "daily" first: the assets page shows the newest, "etl"
    make_catalog(home)
    with dask.config.set({"daskflow.home": str(home), "daskflow.dashboard.update-interval": "300ms"}):
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"preload": ["scheduler_plugins.preload"]},
        ) as local, Client(local) as client:  # fmt: skip
            client.gather(list(submit_graph(client, annotated_tasks(30)).values()))
            yield f"http://127.0.0.1:{local.scheduler.http_server.port}"


async def visit_all(executable: str, base: str) -> dict[str, dict]:
    results = {}
    with Browser(executable) as browser:
        page = await Page.connect(browser.page_websocket_url())
        try:
            await page.navigate(f"{base}/daskflow/")
            # Wait for the whole document: links read mid-parse were once only the first two.
            links = await page.wait_for(
                "document.readyState === 'complete' && [...document.querySelectorAll('#daskflow-pages a')].map(a => a.getAttribute('href'))"
            )
            results["index"] = {"links": links, "screenshot": await page.screenshot(ARTIFACTS / "dashboard-index.png")}
            for name, checks in EXPECTED.items():
                await page.navigate(f"{base}/daskflow/{name}")
                expression = ROWS_JS % json.dumps([[source, column] for source, column, _ in checks])
                minimum = {source: rows for source, _, rows in checks}

                async def ready(expression=expression, minimum=minimum):
                    state = await page.evaluate(expression)
                    return state if state and state["idle"] and all(state["rows"][s] >= n for s, n in minimum.items()) else None

                state = None
                for _ in range(150):  # up to ~30 s
                    state = await ready()
                    if state:
                        break
                    await asyncio.sleep(0.2)
                last = await page.evaluate(expression)
                assert state, f"page {name}: plots did not fill/render; last state {last}"
                state["screenshot"] = await page.screenshot(ARTIFACTS / f"dashboard-{shot_name(name)}.png")
                state["errors"] = await page.evaluate("document.title")
                results[name] = state
        finally:
            page.close()
    return results


def test_every_page_renders_with_data_in_chromium(chromium, dashboard):
    results = asyncio.run(visit_all(chromium, dashboard))
    assert results["index"]["links"][:4] == [f"/daskflow/{name}" for name in ("predictions", "decisions", "assets", "model")]
    assert {"/daskflow/catalog", "/daskflow/asset", "/daskflow/timeline"} <= set(results["index"]["links"])
    for name, checks in EXPECTED.items():
        state = results[name]
        for source, _, minimum in checks:
            assert state["rows"][source] >= minimum, (name, source, state)
        assert state["views"] > 0 and state["idle"]
    for name in ("index", *map(shot_name, EXPECTED)):
        shot = ARTIFACTS / f"dashboard-{name}.png"
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, shot
