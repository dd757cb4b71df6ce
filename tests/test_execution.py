"""materialize() on a real LocalCluster (2 worker processes x 1 thread), shared by the module.

Pipelines are written to files (or built as module objects) so their functions
travel to the worker processes by value, as a user's pipeline file would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import textwrap
import threading

import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from daskflow.catalog import Catalog
from daskflow.daskgraph import annotations_of
from daskflow.errors import RunFailedError, SelectionError
from daskflow.execution import materialize

pytestmark = pytest.mark.timeout(120)


class AnnotationRecorder(SchedulerPlugin):
    """Keeps the daskflow annotations of every task the scheduler receives."""

    name = "test-annotation-recorder"

    def __init__(self):
        self.by_key: dict[str, dict] = {}

    def update_graph(self, scheduler, *, keys, **kwargs):
        for key in keys:
            task = scheduler.tasks.get(key)
            if task is not None:
                self.by_key[key] = annotations_of(task.annotations)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as client:
        yield client


PIPELINE = '''
import os
import pyarrow as pa
from daskflow.definitions import asset, asset_check, CheckResult
from daskflow.partitions import StaticPartitions

REGIONS = StaticPartitions(["eu", "us"])
MARKERS = {markers!r}


@asset(partitions=REGIONS, code_version="1", tags={{"team": "sales"}})
def orders(context):
    n = 3 if context.partition == "eu" else 5
    return pa.table({{"amount": list(range(1, n + 1)), "region": [context.partition] * n}})


@asset(code_version="1")
def totals(orders):
    return {{region: sum(t.column("amount").to_pylist()) for region, t in orders.items()}}


@asset_check(asset=totals, blocking=False)
def totals_positive(totals):
    return CheckResult(passed=all(v > 0 for v in totals.values()), message="all positive")


@asset(code_version="1")
def report(totals):
    open(os.path.join(MARKERS, "report-ran"), "w").close()
    return {{"grand_total": sum(totals.values())}}
'''


def write_pipeline(tmp_path, body: str = PIPELINE, name: str = "pipeline", **extra) -> str:
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body.format(markers=str(markers), **extra)))
    return str(path)


def module_from_file(path: str, name: str):
    """A module object that is NOT importable by name (like a user's notebook module)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_materialize_module_object_records_every_asset(client, daskflow_home, tmp_path):
    module = module_from_file(write_pipeline(tmp_path), "pipeline_as_module")
    result = materialize(module, client=client, progress=False)
    assert result.ok, result.to_dict()
    assert [(r.asset, r.partition) for r in result.records] == [
        ("orders", "eu"), ("orders", "us"), ("totals", None), ("report", None)]
    orders_us = result.record("orders", "us")
    assert orders_us.rows == 5 and orders_us.bytes > 0 and os.path.exists(orders_us.path)
    assert orders_us.worker in client.scheduler_info()["workers"]
    assert result.record("report").rows == 1
    catalog = Catalog()
    report = catalog.latest_materialization("report")
    assert report.run_id == result.run_id and report.path == result.record("report").path
    totals_id = catalog.latest_materialization("totals").id
    assert catalog.upstream_ids(report.id) == [totals_id]
    assert len(catalog.upstream_ids(totals_id)) == 2  # both partitions of orders
    assert [c.status for c in result.checks] == ["passed"]
    assert catalog.get_run(result.run_id).status == "success"
    json.dumps(result.to_dict())


def test_selection_loads_upstream_from_storage_and_partitions(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path)
    first = materialize(path, selection="orders", partitions="eu", client=client, progress=False)
    assert [(r.asset, r.partition) for r in first.records] == [("orders", "eu")]
    with pytest.raises(SelectionError, match="orders\\[us\\]"):  # us never materialized: refused up front
        materialize(path, selection="totals", client=client, progress=False)
    materialize(path, selection="orders", partitions="us", client=client, progress=False)
    totals = materialize(path, selection="totals", client=client, progress=False)
    assert totals.ok and [r.asset for r in totals.records] == ["totals"]
    catalog = Catalog()
    orders_ids = {m.id for m in catalog.materializations(asset_key="orders")}
    assert set(catalog.upstream_ids(totals.record("totals").materialization_id)) == orders_ids
    result = materialize(path, selection="report", client=client, progress=False)
    assert result.ok and [r.asset for r in result.records] == ["report"]
    stored = json.loads(open(catalog.latest_materialization("report").path).read())
    assert stored == {"grand_total": 1 + 2 + 3 + 1 + 2 + 3 + 4 + 5}


def test_annotations_are_visible_on_the_scheduler(client, cluster, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path)
    materialize(path, client=client, progress=False)  # sizes known from the catalog on the next run
    recorder = AnnotationRecorder()
    cluster.scheduler.add_plugin(recorder, name=AnnotationRecorder.name)
    try:
        result = materialize(path, client=client, progress=False, tags={"owner": "tests"})
    finally:
        cluster.scheduler.remove_plugin(name=AnnotationRecorder.name)
    ours = {k: v for k, v in recorder.by_key.items() if v.get("run_id") == result.run_id}
    assert len(ours) == 5  # 4 asset-partitions + 1 check
    orders_eu = ours[f"orders-{result.run_id}-eu"]
    assert orders_eu["category"] == "orders" and orders_eu["partition"] == "eu" and orders_eu["kind"] == "asset"
    assert orders_eu["tags"] == {"owner": "tests", "team": "sales"} and orders_eu["code_version"] == "1"
    totals = ours[f"totals-{result.run_id}"]
    catalog = Catalog()
    previous = [m for m in catalog.materializations(asset_key="orders") if m.run_id != result.run_id]
    assert totals["n_inputs"] == 2 and totals["input_rows"] == 8
    assert totals["input_bytes"] == sum(m.bytes for m in previous)
    assert totals["input_locations"] and totals["input_locations"][0]["bytes"] == totals["input_bytes"]
    check = ours[f"totals.check.totals_positive-{result.run_id}"]
    assert check["kind"] == "check" and check["asset"] == "totals"


FAILING = '''
import os
import pyarrow as pa
from daskflow.definitions import asset

MARKERS = {markers!r}


@asset
def source():
    return pa.table({{"x": [1, 2, 3]}})


@asset
def broken(source):
    raise ValueError("broken asset exploded on purpose")


@asset
def after_broken(broken):
    open(os.path.join(MARKERS, "after_broken-ran"), "w").close()
    return 1


@asset
def independent(source):
    return source.num_rows
'''


def test_failure_skips_downstream_with_traceback_and_no_partial_files(client, daskflow_home, tmp_path):
    result = materialize(write_pipeline(tmp_path, FAILING), client=client, progress=False)
    assert not result.ok and result.status == "failure"
    broken = result.record("broken")
    assert broken.status == "failed" and "broken asset exploded" in broken.error
    assert "in broken" in broken.traceback and "ValueError" in broken.traceback
    skipped = result.record("after_broken")
    assert skipped.status == "skipped" and "broken" in skipped.reason
    assert not (tmp_path / "markers" / "after_broken-ran").exists()  # not attempted
    assert result.record("independent").status == "success"
    data = daskflow_home / "data"
    assert not (data / "broken").exists() and not (data / "after_broken").exists()
    assert not [p for p in data.rglob("*") if ".tmp-" in p.name]
    catalog = Catalog()
    assert {m.asset_key for m in catalog.materializations(run_id=result.run_id)} == {"source", "independent"}
    assert catalog.get_run(result.run_id).status == "failure"
    kinds = [(e.kind, e.asset_key) for e in catalog.events(result.run_id)]
    assert ("asset-failed", "broken") in kinds and ("asset-skipped", "after_broken") in kinds
    with pytest.raises(RunFailedError, match="broken"):
        materialize(write_pipeline(tmp_path, FAILING), client=client, progress=False, raise_on_error=True)


FLAKY = '''
import os
from daskflow.definitions import asset

MARKERS = {markers!r}


@asset(retries=2, io="json")
def flaky():
    attempts = os.path.join(MARKERS, "attempts")
    with open(attempts, "a") as f:
        f.write("x")
    if len(open(attempts).read()) < 2:
        raise RuntimeError("transient failure")
    return {{"attempts": len(open(attempts).read())}}
'''


def test_retries_are_honoured(client, daskflow_home, tmp_path):
    result = materialize(write_pipeline(tmp_path, FLAKY), client=client, progress=False)
    assert result.ok, result.to_dict()
    assert (tmp_path / "markers" / "attempts").read_text() == "xx"
    assert json.loads(open(result.record("flaky").path).read()) == {"attempts": 2}


CHECKED = '''
import os
from daskflow.definitions import asset, asset_check, CheckResult

MARKERS = {markers!r}


@asset(io="json")
def numbers():
    return [1, -2, 3]


@asset_check(asset=numbers, blocking={blocking})
def no_negatives(numbers):
    return CheckResult(passed=min(numbers) >= 0, message=f"min is {{min(numbers)}}")


@asset(io="json")
def doubled(numbers):
    open(os.path.join(MARKERS, "doubled-ran"), "w").close()
    return [2 * n for n in numbers]
'''


def test_blocking_check_failure_skips_downstream(client, daskflow_home, tmp_path):
    result = materialize(write_pipeline(tmp_path, CHECKED, blocking=True), client=client, progress=False)
    assert not result.ok
    assert result.record("numbers").status == "success"
    assert result.record("doubled").status == "skipped" and "no_negatives" in result.record("doubled").reason
    assert not (tmp_path / "markers" / "doubled-ran").exists()
    [check] = result.checks
    assert (check.status, check.blocking, check.message) == ("failed", True, "min is -2")
    [stored] = Catalog().check_results(run_id=result.run_id)
    assert not stored.passed and stored.blocking


def test_warning_check_failure_is_recorded_only(client, daskflow_home, tmp_path):
    result = materialize(write_pipeline(tmp_path, CHECKED, blocking=False), client=client, progress=False)
    assert result.ok and result.record("doubled").status == "success"
    assert [c.status for c in result.checks] == ["failed"]


def test_two_runs_in_parallel_on_one_catalog(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path)
    results: list = []
    errors: list = []

    def run():
        try:
            results.append(materialize(path, client=client, progress=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors and len(results) == 2
    assert all(r.ok for r in results) and results[0].run_id != results[1].run_id
    catalog = Catalog()
    for result in results:
        assert len(catalog.materializations(run_id=result.run_id)) == 4
        assert catalog.get_run(result.run_id).status == "success"


def test_only_stale_skips_unchanged_and_reruns_changed_code(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path)
    assert materialize(path, client=client, progress=False).ok
    again = materialize(path, client=client, progress=False, only_stale=True)
    assert again.ok and {r.status for r in again.records} == {"stale-skipped"}
    assert all("up to date" in r.reason for r in again.records)
    changed = open(path).read().replace('@asset(code_version="1")\ndef totals', '@asset(code_version="2")\ndef totals')
    path2 = tmp_path / "pipeline_v2.py"
    path2.write_text(changed)
    third = materialize(str(path2), client=client, progress=False, only_stale=True)
    statuses = {(r.asset, r.partition): r.status for r in third.records}
    assert statuses == {("orders", "eu"): "stale-skipped", ("orders", "us"): "stale-skipped",
                        ("totals", None): "success", ("report", None): "success"}
    # the re-run totals read the stored orders: lineage points at the first run's materializations
    catalog = Catalog()
    totals = catalog.latest_materialization("totals")
    assert totals.run_id == third.run_id and len(catalog.upstream_ids(totals.id)) == 2


SCHEMA = '''
import pyarrow as pa
from daskflow.definitions import asset


@asset(schema=pa.schema([("id", pa.int64()), ("name", pa.string())]))
def people():
    return pa.table({{"id": ["a", "b"], "name": ["x", "y"]}})
'''


def test_schema_mismatch_fails_the_asset_with_a_clear_error(client, daskflow_home, tmp_path):
    result = materialize(write_pipeline(tmp_path, SCHEMA), client=client, progress=False)
    record = result.record("people")
    assert record.status == "failed" and "SchemaMismatchError" in record.error
    assert "'id'" in record.error and "int64" in record.error
    assert not (daskflow_home / "data" / "people").exists()


def test_progress_bar_counts_and_stays_quiet_off_a_tty():
    import io

    import dask.config

    from daskflow.progress import RunProgress, make_progress

    quiet = io.StringIO()  # not a TTY
    bar = make_progress(None, stream=quiet)
    bar.start("run", {"a": 1})
    bar.update([{"asset": "a", "status": "success"}])
    bar.finish()
    assert not bar.enabled and quiet.getvalue() == ""

    with dask.config.set({"daskflow.execution.progress": "always"}):
        shown = io.StringIO()
        bar = RunProgress(stream=shown)
        bar.start("run", {"orders": 2, "report": 1})
        bar.update([{"asset": "orders", "status": "success"}, {"asset": "orders", "status": "failed"}])
        assert (bar.done, bar.total, bar.failures) == (2, 3, 1)
        assert "2/3 assets | 1 failed | report" in bar.line()
        bar.update([{"asset": "report", "status": "skipped"}])
        bar.finish()
    text = shown.getvalue()
    assert "3/3 assets" in text and "orders: 1 success, 1 failed (of 2)" in text and "report: 1 skipped (of 1)" in text


def test_task_payload_is_unpickled_inside_the_task_not_by_the_worker_comm():
    """A payload that cannot be loaded must fail its task (recorded), never kill the worker's stream."""
    import pickle
    import sys
    import types

    from daskflow.tasks import ByValue as _ByValue

    module = types.ModuleType("daskflow_test_vanishing_module")
    exec("def f():\n    return 1\n", module.__dict__)
    sys.modules[module.__name__] = module  # importable while pickled: shipped by reference
    try:
        wrapped = _ByValue(module.f)
    finally:
        del sys.modules[module.__name__]
    clone = pickle.loads(pickle.dumps(wrapped))  # what the worker's comm does: must not raise
    with pytest.raises(ModuleNotFoundError, match="daskflow_test_vanishing_module"):
        clone.obj
    assert pickle.loads(pickle.dumps(_ByValue(len))).obj is len


# -- run listeners -----------------------------------------------------------------
from daskflow.listeners import ListenerError, RunListener  # noqa: E402


class RecordingListener(RunListener):
    """Keeps (event, subject) for every event; instances built from config land in ``built``."""

    built: list["RecordingListener"] = []

    def __init__(self):
        self.events: list[tuple] = []
        RecordingListener.built.append(self)

    def run_started(self, run):
        self.events.append(("run_started", run.run_id, run.totals))

    def asset_started(self, run, start):
        self.events.append(("asset_started", start.asset))

    def asset_materialized(self, run, record, stored):
        self.events.append(("asset_materialized", record.asset, record.materialization_id, stored["path"]))

    def asset_failed(self, run, record):
        self.events.append(("asset_failed", record.asset, record.error))

    def asset_skipped(self, run, record):
        self.events.append(("asset_skipped", record.asset, record.status))

    def check_evaluated(self, run, record):
        self.events.append(("check_evaluated", record.check, record.status))

    def batch_finished(self, run):
        self.events.append(("batch_finished",))

    def run_finished(self, run, result):
        self.events.append(("run_finished", result.status))


LISTENED = '''
import pyarrow as pa
from daskflow.definitions import asset, asset_check


@asset
def source():
    return pa.table({{"x": [1, 2, 3]}})


@asset_check(asset=source, blocking=False)
def source_not_empty(source):
    return source.num_rows > 0


@asset
def broken(source):
    raise ValueError("broken on purpose")


@asset
def after_broken(broken):
    return 1
'''


def test_a_listener_receives_the_run_events_in_order(client, daskflow_home, tmp_path):
    """source -> [source_not_empty check]; source -> broken (raises) -> after_broken (skipped)."""
    listener = RecordingListener()
    result = materialize(write_pipeline(tmp_path, LISTENED), client=client, progress=False, listeners=[listener])
    assert result.status == "failure"
    events = [e for e in listener.events if e[0] != "batch_finished"]
    assert events[0] == ("run_started", result.run_id, {"source": 1, "broken": 1, "after_broken": 1})
    assert events[-1] == ("run_finished", "failure")
    asset_events = [e[:2] for e in events if e[0].startswith("asset_")]
    assert asset_events == [("asset_started", "source"), ("asset_materialized", "source"),
                            ("asset_started", "broken"), ("asset_failed", "broken"),
                            ("asset_skipped", "after_broken")]
    materialized = next(e for e in events if e[0] == "asset_materialized")
    catalog = Catalog()
    assert materialized[2] == catalog.latest_materialization("source").id  # the catalog writer ran first
    assert materialized[3] == result.record("source").path
    assert "broken on purpose" in next(e for e in events if e[0] == "asset_failed")[2]
    assert ("asset_skipped", "after_broken", "skipped") in events
    checks = [i for i, e in enumerate(events) if e[0] == "check_evaluated"]
    assert [events[i] for i in checks] == [("check_evaluated", "source_not_empty", "passed")]
    assert events.index(materialized) < checks[0] < len(events) - 1
    assert ("batch_finished",) in listener.events and listener.events[-1] == ("run_finished", "failure")


class ExplodingListener(RunListener):
    def __init__(self):
        self.calls = 0

    def asset_materialized(self, run, record, stored):
        self.calls += 1
        raise RuntimeError("listener bug")


def test_a_raising_listener_warns_once_and_the_run_continues(client, daskflow_home, tmp_path):
    exploding = ExplodingListener()
    with pytest.warns(RuntimeWarning, match="ExplodingListener raised RuntimeError: listener bug") as caught:
        result = materialize(write_pipeline(tmp_path), client=client, progress=False, listeners=[exploding])
    assert result.ok and exploding.calls == 4  # called for every asset-partition, reported once
    assert len([w for w in caught if "ExplodingListener" in str(w.message)]) == 1
    assert len(Catalog().materializations(run_id=result.run_id)) == 4


def test_listeners_from_config_are_built_per_run(client, daskflow_home, tmp_path):
    import dask.config

    path = write_pipeline(tmp_path, LISTENED)
    RecordingListener.built.clear()
    with dask.config.set({"daskflow.execution.listeners": ["tests.test_execution:RecordingListener"]}):
        first = materialize(path, client=client, progress=False, selection="source")
        second = materialize(path, client=client, progress=False, selection="source")
    assert len(RecordingListener.built) == 2
    assert [b.events[0][1] for b in RecordingListener.built] == [first.run_id, second.run_id]
    catalog_file = tmp_path / "untouched" / "catalog.sqlite"
    with dask.config.set({"daskflow.execution.listeners": ["tests.test_execution:NoSuchListener"]}):
        with pytest.raises(ListenerError, match="NoSuchListener"):
            materialize(path, client=client, progress=False, catalog=str(catalog_file))
    assert not catalog_file.exists()  # refused before anything was written


def test_a_catalog_writer_failure_fails_the_run(client, daskflow_home, tmp_path, monkeypatch):
    from daskflow.catalog_writer import CatalogWriter
    from daskflow.errors import CatalogError

    def refuse(self, run, record, stored):
        raise CatalogError("catalog write refused on purpose")

    monkeypatch.setattr(CatalogWriter, "asset_materialized", refuse)
    listener = RecordingListener()
    with pytest.raises(CatalogError, match="refused on purpose"):
        materialize(write_pipeline(tmp_path), client=client, progress=False, listeners=[listener])
    [run] = Catalog().runs()
    assert run.status == "failure"
    assert listener.events[-1] == ("run_finished", "failure")
