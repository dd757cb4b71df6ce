"""Sensor evaluation (returns, yields, skips, raises) and the built-in asset sensor."""

import datetime as dt

import daskflow
from daskflow.catalog import Catalog
from daskflow.timeline import RunRequest, SensorContext, SkipReason, evaluate_sensor
from daskflow.timeline.specs import sensor_spec_of

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def context(cursor=None, catalog=None):
    return SensorContext("s", cursor, None, NOW, catalog)


def spec(fn):
    name = fn.__name__ if fn.__name__.isidentifier() else "s"
    return sensor_spec_of(daskflow.sensor(fn, target="report", name=name))


def test_returned_and_yielded_requests_are_collected_with_the_cursor():
    def returns(context):
        context.update_cursor("5")
        return RunRequest(run_key="a", partitions=["2024-01-01"], tags={"n": 1})

    result = evaluate_sensor(spec(returns), context())
    assert result.status == "requested" and result.cursor == "5"
    assert result.requests == (RunRequest("a", ("2024-01-01",), {"n": "1"}),)

    def yields(context):
        yield RunRequest(run_key="a")
        yield SkipReason("b not ready")
        yield RunRequest(run_key="c")

    assert [r.run_key for r in evaluate_sensor(spec(yields), context()).requests] == ["a", "c"]


def test_skip_reasons_and_none_are_skips_with_a_message():
    result = evaluate_sensor(spec(lambda context: SkipReason("no new files")), context("7"))
    assert (result.status, result.message, result.cursor) == ("skipped", "no new files", "7")
    assert evaluate_sensor(spec(lambda context: None), context()).message == "no run requested"


def test_a_raising_sensor_is_one_error_line_and_keeps_its_cursor():
    def broken(context):
        context.update_cursor("moved")
        raise KeyError("bucket\nnot found")

    result = evaluate_sensor(spec(broken), context("old"))
    assert result.status == "error" and result.cursor == "old" and result.requests == ()
    assert result.message == "sensor 'broken' raised KeyError: 'bucket\\nnot found'"
    wrong = evaluate_sensor(spec(lambda context: 42), context())
    assert wrong.status == "error" and "expected RunRequest, SkipReason or None" in wrong.message


def materialize_row(catalog, asset, partition=None):
    run = catalog.start_run(pipeline="p")
    return catalog.record_materialization(run.run_id, asset, {"path": f"/d/{asset}", "format": "json"},
                                          partition=partition, code_version="1")


def test_asset_sensor_requests_a_run_per_new_materialization(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    sensor = daskflow.asset_sensor("raw", target="clean+", minimum_interval_s=1)
    assert sensor.target == "clean+" and sensor.name == "raw_sensor"
    assert evaluate_sensor(sensor, context(catalog=catalog)).status == "skipped"  # never materialized

    materialize_row(catalog, "raw")
    newest = materialize_row(catalog, "raw")
    first = evaluate_sensor(sensor, context(catalog=catalog))
    assert [r.run_key for r in first.requests] == [f"raw:{newest}"] and first.cursor == str(newest)
    assert first.requests[0].tags == {"upstream_materialization": str(newest)}

    again = evaluate_sensor(sensor, context(first.cursor, catalog))
    assert again.status == "skipped" and again.cursor == str(newest)

    day1, day2 = materialize_row(catalog, "raw", "2024-01-01"), materialize_row(catalog, "raw", "2024-01-02")
    materialize_row(catalog, "other")
    later = evaluate_sensor(sensor, context(first.cursor, catalog))
    assert [(r.run_key, r.partitions) for r in later.requests] == [
        (f"raw:{day1}", ("2024-01-01",)), (f"raw:{day2}", ("2024-01-02",))]
    assert later.cursor == str(day2)
