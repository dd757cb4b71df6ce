"""Both examples run end to end on a real LocalCluster (2 worker processes)."""

from __future__ import annotations

import json
import pathlib

import pandas as pd
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from daskflow.catalog import Catalog
from daskflow.execution import materialize

pytestmark = pytest.mark.timeout(180)

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def test_etl_pipeline(client, daskflow_home):
    result = materialize(str(EXAMPLES / "etl_pipeline.py"), client=client, progress=False)
    assert result.ok, result.to_dict()
    assert len(result.by_status("success")) == 1 + 3 * 7 + 2  # customers, 3 daily assets x 7 days, 2 reports
    assert [c.status for c in result.checks] == ["passed"] * 7
    report = pq.read_table(result.record("weekly_report").path).to_pandas()
    assert sorted(report["region"]) == ["east", "north", "south", "west"]
    assert report["orders"].sum() == 7 * 2_000 and abs(report["share"].sum() - 1) < 1e-3
    day = pq.read_table(result.record("daily_revenue", "2024-01-03").path).to_pandas()
    assert set(day["day"]) == {"2024-01-03"} and day["orders"].sum() == 2_000
    top = pq.read_table(result.record("top_customers").path).to_pandas()
    assert len(top) == 10 and top["spend"].is_monotonic_decreasing
    # one day again, with only_stale: everything is up to date
    again = materialize(str(EXAMPLES / "etl_pipeline.py"), partitions="2024-01-03", only_stale=True,
                        client=client, progress=False)
    assert {r.status for r in again.records} == {"stale-skipped"}


def test_ml_pipeline(client, daskflow_home):
    result = materialize(str(EXAMPLES / "ml_pipeline.py"), client=client, progress=False)
    assert result.ok, result.to_dict()
    [check] = result.checks
    assert check.check == "accurate_enough" and check.status == "passed"
    evaluation = json.loads(pathlib.Path(result.record("evaluation").path).read_text())
    assert evaluation["accuracy"] >= 0.75 and evaluation["test_rows"] == 600
    model_json = json.loads(pathlib.Path(result.record("model").path).read_text())
    assert json.loads(model_json)["learner"]["objective"]["name"] == "binary:logistic"  # XGBoost JSON, not pickle
    card = Catalog().latest_materialization("model_card")
    assert card.run_id == result.run_id
    features = pq.read_table(result.record("features").path).to_pandas()
    assert isinstance(features, pd.DataFrame) and {"load_x_vibration", "temperature_z"} <= set(features.columns)
