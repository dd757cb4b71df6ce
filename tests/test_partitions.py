"""Pure unit tests for daskflow.partitions: keys, ranges, selections, mapping."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest

from daskflow.partitions import time_windows as time_windows_module
from daskflow.errors import PartitionError
from daskflow.partitions import (
    DailyPartitions,
    HourlyPartitions,
    StaticPartitions,
    as_partitions,
    parse_partition_selection,
    partition_mapping,
    upstream_partition_keys,
)

pytestmark = pytest.mark.timeout(30)


# -- static ------------------------------------------------------------------------

def test_static_keys_keep_declared_order():
    assert StaticPartitions(["us", "eu", "apac"]).keys() == ("us", "eu", "apac")


def test_static_rejects_empty_duplicate_reserved_and_string_keys():
    with pytest.raises(PartitionError, match="at least one key"):
        StaticPartitions([])
    with pytest.raises(PartitionError, match=r"duplicate keys \['eu'\]"):
        StaticPartitions(["eu", "us", "eu"])
    with pytest.raises(PartitionError, match="reserved"):
        StaticPartitions(["a...b"])
    with pytest.raises(PartitionError, match=r"Fix: StaticPartitions\(\['eu'\]\)"):
        StaticPartitions("eu")


def test_static_equality_is_by_value_so_graphs_can_compare_definitions():
    assert StaticPartitions(["a", "b"]) == StaticPartitions(["a", "b"])
    assert StaticPartitions(["a", "b"]) != StaticPartitions(["b", "a"])
    assert hash(StaticPartitions(["a"])) == hash(StaticPartitions(["a"]))


def test_unknown_key_error_names_asset_key_valid_keys_and_close_match():
    parts = StaticPartitions(["europe", "america"])
    with pytest.raises(PartitionError) as info:
        parts.validate_key("eurpe", asset_key="sales/orders")
    message = str(info.value)
    assert "'sales/orders'" in message and "'eurpe'" in message
    assert "europe, america" in message
    assert "Did you mean 'europe'" in message
    assert "Fix:" in message


# -- time windows --------------------------------------------------------------------

def test_daily_keys_include_both_ends():
    assert DailyPartitions("2024-02-27", "2024-03-01").keys() == (
        "2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01")


def test_daily_accepts_date_objects_and_strings_equally():
    assert DailyPartitions(dt.date(2024, 1, 1), dt.date(2024, 1, 2)) == DailyPartitions("2024-01-01", "2024-01-02")


def test_hourly_keys_cross_midnight_and_have_no_colon():
    keys = HourlyPartitions("2024-01-01T22", "2024-01-02T01").keys()
    assert keys == ("2024-01-01T22", "2024-01-01T23", "2024-01-02T00", "2024-01-02T01")
    assert not any(":" in k for k in keys)


def test_hourly_accepts_hh_mm_inputs_and_truncates_to_the_hour():
    assert HourlyPartitions("2024-01-01T05:30", "2024-01-01T06:00").keys() == ("2024-01-01T05", "2024-01-01T06")


def test_open_ended_daily_ends_at_last_complete_utc_day(monkeypatch):
    monkeypatch.setattr(time_windows_module, "_utcnow", lambda: dt.datetime(2024, 3, 10, 23, 59))
    keys = DailyPartitions("2024-03-07").keys()
    assert keys == ("2024-03-07", "2024-03-08", "2024-03-09")


def test_open_ended_hourly_ends_at_last_complete_utc_hour(monkeypatch):
    monkeypatch.setattr(time_windows_module, "_utcnow", lambda: dt.datetime(2024, 3, 10, 2, 15))
    assert HourlyPartitions("2024-03-10").keys() == ("2024-03-10T00", "2024-03-10T01")


def test_open_ended_window_starting_today_explains_there_is_no_complete_window(monkeypatch):
    monkeypatch.setattr(time_windows_module, "_utcnow", lambda: dt.datetime(2024, 3, 10, 12))
    with pytest.raises(PartitionError, match="no complete window.*Fix: pass an explicit end"):
        DailyPartitions("2024-03-10").keys()


def test_time_window_rejects_bad_format_and_end_before_start():
    with pytest.raises(PartitionError, match=r"DailyPartitions start '2024/01/01'.*%Y-%m-%d"):
        DailyPartitions("2024/01/01")
    with pytest.raises(PartitionError, match="end '2024-01-01' is before start '2024-01-05'.*Fix"):
        DailyPartitions("2024-01-05", "2024-01-01")


def test_daily_and_hourly_are_different_definitions():
    assert DailyPartitions("2024-01-01", "2024-01-02") != HourlyPartitions("2024-01-01", "2024-01-02")


def test_window_returns_half_open_interval_of_a_key():
    start, end = HourlyPartitions("2024-01-01", "2024-01-02").window("2024-01-01T05")
    assert (start, end) == (dt.datetime(2024, 1, 1, 5), dt.datetime(2024, 1, 1, 6))


def test_definitions_pickle_round_trip_for_workers():
    for parts in (StaticPartitions(["a"]), DailyPartitions("2024-01-01", "2024-01-03"),
                  HourlyPartitions("2024-01-01T00", "2024-01-01T03")):
        assert pickle.loads(pickle.dumps(parts)) == parts


def test_repr_is_constructor_like():
    assert repr(DailyPartitions("2024-01-01", None)) == "DailyPartitions('2024-01-01', None)"
    assert repr(StaticPartitions(["a"])) == "StaticPartitions(['a'])"


# -- ranges and selections -------------------------------------------------------------

DAYS = DailyPartitions("2024-01-01", "2024-01-10")


def test_range_is_inclusive_in_definition_order():
    assert DAYS.range("2024-01-03", "2024-01-05") == ("2024-01-03", "2024-01-04", "2024-01-05")


def test_reversed_range_error_names_asset_and_suggests_swapped_range():
    with pytest.raises(PartitionError) as info:
        DAYS.range("2024-01-05", "2024-01-03", asset_key="daily_orders")
    assert "'daily_orders'" in str(info.value)
    assert "Fix: write '2024-01-03...2024-01-05'" in str(info.value)


def test_range_outside_definition_names_asset_and_valid_keys():
    with pytest.raises(PartitionError, match=r"'daily_orders' has no partition '2023-12-31'.*2024-01-01"):
        DAYS.range("2023-12-31", "2024-01-03", asset_key="daily_orders")


@pytest.mark.parametrize(
    "selection, expected",
    [
        (None, DAYS.keys()),
        ("2024-01-02", ("2024-01-02",)),
        ("2024-01-02...2024-01-04", ("2024-01-02", "2024-01-03", "2024-01-04")),
        ("2024-01-09, 2024-01-01", ("2024-01-01", "2024-01-09")),
        (["2024-01-05", "2024-01-01...2024-01-02"], ("2024-01-01", "2024-01-02", "2024-01-05")),
        ("2024-01-01...2024-01-02,2024-01-02", ("2024-01-01", "2024-01-02")),
    ],
)
def test_selection_syntax_gives_keys_in_definition_order_without_duplicates(selection, expected):
    assert parse_partition_selection(DAYS, selection) == expected


def test_empty_selection_is_an_error_with_the_syntax():
    with pytest.raises(PartitionError, match=r"empty partition selection.*FIRST\.\.\.LAST"):
        parse_partition_selection(DAYS, " , ", asset_key="x")


def test_as_partitions_turns_a_list_into_static_and_rejects_other_types():
    assert as_partitions(["a", "b"]) == StaticPartitions(["a", "b"])
    assert as_partitions(None) is None
    with pytest.raises(PartitionError, match="asset 'x'.*got int.*Fix"):
        as_partitions(3, asset_key="x")


# -- mapping --------------------------------------------------------------------------------

def test_mapping_table():
    """Same -> identity; partitioned -> unpartitioned: all; unpartitioned -> partitioned: single."""
    other_days = DailyPartitions("2024-01-01", "2024-01-10")
    assert partition_mapping("b", None, "a", None) == "none"
    assert partition_mapping("b", DAYS, "a", other_days) == "identity"
    assert partition_mapping("b", None, "a", DAYS) == "all"
    assert partition_mapping("b", DAYS, "a", None) == "single"


def test_different_partitions_error_names_both_assets_both_definitions_and_fix():
    with pytest.raises(PartitionError) as info:
        partition_mapping("report", StaticPartitions(["eu"]), "daily_orders", DAYS)
    message = str(info.value)
    assert "'report'" in message and "'daily_orders'" in message
    assert "StaticPartitions" in message and "DailyPartitions" in message
    assert "Fix: give both assets the same partitions" in message


def test_upstream_partition_keys_per_mapping():
    assert upstream_partition_keys("identity", DAYS, "2024-01-03") == ("2024-01-03",)
    assert upstream_partition_keys("all", StaticPartitions(["a", "b"]), None) == ("a", "b")
    assert upstream_partition_keys("single", None, "2024-01-03") == (None,)
    assert upstream_partition_keys("none", None, None) == (None,)


def test_timezone_aware_bounds_are_converted_to_utc():
    cet = dt.timezone(dt.timedelta(hours=1))
    parts = HourlyPartitions(dt.datetime(2024, 1, 1, 1, tzinfo=cet), dt.datetime(2024, 1, 1, 2, tzinfo=cet))
    assert parts.keys() == ("2024-01-01T00", "2024-01-01T01")


def test_long_hourly_window_supports_membership_and_ranges():
    year = HourlyPartitions("2023-01-01T00", "2023-12-31T23")
    assert len(year) == 365 * 24
    assert "2023-06-01T12" in year and "2023-06-01T24" not in year
    assert len(year.range("2023-06-01T00", "2023-06-02T23")) == 48


@pytest.mark.parametrize("key", [" eu", "eu ", "a\\b", "a\tb"])
def test_static_keys_must_survive_selection_parsing_and_paths(key):
    with pytest.raises(PartitionError, match="whitespace, a backslash or a control character.*Fix"):
        StaticPartitions([key])
