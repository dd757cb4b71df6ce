"""Schedule and sensor definitions: recorded specs, one-line load-time errors, discovery."""

import dataclasses
import textwrap

import pytest

import daskflow
from daskflow.partitions import DailyPartitions, HourlyPartitions
from daskflow.timeline import TimelineDefinitionError
from daskflow.timeline.specs import ScheduleSpec, SensorSpec
from daskflow.timeline.targets import load_timeline, merge_timelines, resolve_timeline


@daskflow.asset
def orders():
    return [1, 2, 3]


@daskflow.asset
def report(orders):
    return sum(orders)


def one_line(exc_info):
    return "\n" not in str(exc_info.value)


def test_schedule_is_a_frozen_spec_with_a_selection_target():
    spec = daskflow.schedule("10 0 * * *", target=[orders, "report"], timezone="Europe/Berlin")
    assert isinstance(spec, ScheduleSpec)
    assert spec.target == "orders,report" and spec.name == "orders_report_schedule"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.cron = "* * * * *"


@pytest.mark.parametrize("kwargs, words", [
    (dict(cron="61 0 * * *"), ["schedule 'nightly'", "cron '61 0 * * *'", "Fix:"]),
    (dict(cron="every day"), ["not a valid cron expression", "'10 0 * * *'"]),
    (dict(timezone="Europe/Berln"), ["timezone 'Europe/Berln' is unknown", "timezone='Europe/Berlin'"]),
    (dict(catchup="some"), ["catchup='some' is unknown", "'skip', 'latest' or 'all'"]),
    (dict(catchup_limit=0), ["catchup_limit must be an int >= 1"]),
    (dict(target=""), ["target is empty"]),
    (dict(name="has space"), ["name 'has space' is not a valid name"]),
    (dict(tags={"a": 1}), ["tags must map str to str"]),
])
def test_schedule_mistakes_are_one_line_naming_the_schedule_and_the_fix(kwargs, words):
    arguments = {**dict(cron="10 0 * * *", target="report", name="nightly"), **kwargs}
    with pytest.raises(TimelineDefinitionError) as exc_info:
        daskflow.schedule(**arguments)
    assert one_line(exc_info) and "Fix:" in str(exc_info.value)
    for word in words:
        assert word in str(exc_info.value)


def test_sensor_records_a_spec_and_returns_the_function():
    @daskflow.sensor(target="report", minimum_interval_s=5)
    def new_files(context):
        return daskflow.SkipReason("nothing")

    spec = new_files.__daskflow_sensor__
    assert isinstance(spec, SensorSpec) and spec.name == "new_files" and spec.minimum_interval_s == 5.0
    assert new_files(None) == daskflow.SkipReason("nothing")


def test_sensor_mistakes_are_one_line():
    with pytest.raises(TimelineDefinitionError, match="takes 2 parameters, expected one") as exc_info:
        @daskflow.sensor(target="report")
        def two(context, other):
            return None
    assert one_line(exc_info)
    with pytest.raises(TimelineDefinitionError, match="minimum_interval_s must be a number >= 0"):
        daskflow.sensor(lambda context: None, name="s", minimum_interval_s=-1)


def test_definitions_hold_schedules_and_sensors_unique_by_name():
    nightly = daskflow.schedule("10 0 * * *", target="report", name="nightly")
    watcher = daskflow.asset_sensor(orders, target="report")
    defs = daskflow.Definitions(assets=[orders, report], schedules=[nightly], sensors=[watcher])
    assert defs.schedules == (nightly,) and defs.sensors == (watcher,)
    assert "1 schedules, 1 sensors" in repr(defs)
    twin = daskflow.schedule("0 1 * * *", target="orders", name="nightly")
    with pytest.raises(TimelineDefinitionError, match="two schedules share the name 'nightly'"):
        daskflow.Definitions(assets=[orders], schedules=[nightly, twin])
    with pytest.raises(TimelineDefinitionError, match="is not a sensor"):
        daskflow.Definitions(assets=[orders], sensors=[nightly])


def test_unknown_target_is_reported_at_load_time_naming_the_schedule():
    defs = daskflow.Definitions(assets=[orders, report],
                                schedules=[daskflow.schedule("10 0 * * *", target="+reprot", name="nightly")])
    with pytest.raises(TimelineDefinitionError) as exc_info:
        resolve_timeline(defs, "etl.py")
    message = str(exc_info.value)
    assert one_line(exc_info) and message.startswith("schedule 'nightly' (pipeline etl.py): target '+reprot'")
    assert "report" in message and "Fix:" in message


def test_a_target_mixing_partitionings_needs_explicit_partitions():
    @daskflow.asset(partitions=DailyPartitions("2024-01-01"))
    def daily():
        return 1

    @daskflow.asset(partitions=HourlyPartitions("2024-01-01T00"))
    def hourly():
        return 1

    mixed = daskflow.schedule("10 0 * * *", target="daily,hourly", name="mixed")
    with pytest.raises(TimelineDefinitionError, match="mixes differently partitioned assets"):
        resolve_timeline(daskflow.Definitions(assets=[daily, hourly], schedules=[mixed]), "p")
    resolved = resolve_timeline(daskflow.Definitions(assets=[daily], schedules=[
        daskflow.schedule("10 0 * * *", target="daily", name="d")]), "p")
    assert resolved.schedules[0].partitions == DailyPartitions("2024-01-01")


def test_names_are_unique_across_the_pipelines_of_one_daemon():
    defs = daskflow.Definitions(assets=[orders], schedules=[daskflow.schedule("* * * * *", target="orders",
                                                                              name="s")])
    with pytest.raises(TimelineDefinitionError, match="defined by both a.py and b.py"):
        merge_timelines([resolve_timeline(defs, "a.py"), resolve_timeline(defs, "b.py")])


def test_module_level_schedules_and_sensors_are_discovered_like_assets(tmp_path):
    pipeline = tmp_path / "timed.py"
    pipeline.write_text(textwrap.dedent("""
        import daskflow

        @daskflow.asset
        def raw():
            return 1

        @daskflow.asset
        def clean(raw):
            return raw

        nightly = daskflow.schedule("10 0 * * *", target="+clean", name="nightly")
        raw_changed = daskflow.asset_sensor("raw", target="clean")

        @daskflow.sensor(target="raw", minimum_interval_s=1)
        def files(context):
            return None
    """))
    defs = daskflow.load_definitions(str(pipeline))
    assert [s.name for s in defs.schedules] == ["nightly"]
    assert [s.name for s in defs.sensors] == ["raw_sensor", "files"]
    timeline = load_timeline([str(pipeline)])
    assert timeline.schedules[0].asset_keys == ("raw", "clean")
    assert timeline.schedules[0].pipeline == str(pipeline)
