"""Pure tick computation with fixed clocks: DST, catch-up policies, the partition of a tick."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from daskflow.partitions import DailyPartitions, HourlyPartitions, StaticPartitions
from daskflow.timeline.specs import schedule
from daskflow.timeline.ticks import MAX_RECORDED_SKIPS, closed_window_key, cron_times, due_ticks, tick_partitions

UTC = dt.timezone.utc
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def local_day(zone, year, month, day):
    """(just before local midnight, local midnight of the next day): one local calendar day."""
    start = dt.datetime(year, month, day, tzinfo=zone)
    end = (start + dt.timedelta(days=1, hours=3)).replace(hour=0)
    return start - dt.timedelta(microseconds=1), end - dt.timedelta(microseconds=1)


def utc_times(ticks):
    return [t.astimezone(UTC).strftime("%H:%M") for t in ticks]


# -- DST -------------------------------------------------------------------------
def test_hourly_schedule_has_23_ticks_on_spring_forward_day_in_berlin():
    hourly = schedule("0 * * * *", target="x", timezone="Europe/Berlin", name="hourly")
    ticks = cron_times(hourly, *local_day(BERLIN, 2024, 3, 31))
    assert len(ticks) == 23
    assert [t.hour for t in ticks][:4] == [0, 1, 3, 4]  # no 02:00 wall time that day
    assert len({t.timestamp() for t in ticks}) == 23


def test_daily_wall_time_in_the_gap_fires_at_the_end_of_the_gap():
    """02:30 does not exist on 2024-03-31 in Berlin nor on 2024-03-10 in New York: it fires at 03:00."""
    berlin = schedule("30 2 * * *", target="x", timezone="Europe/Berlin", name="berlin")
    ticks = cron_times(berlin, *local_day(BERLIN, 2024, 3, 31))
    assert [t.isoformat() for t in ticks] == ["2024-03-31T03:00:00+02:00"]
    new_york = schedule("30 2 * * *", target="x", timezone="America/New_York", name="ny")
    ticks = cron_times(new_york, *local_day(NEW_YORK, 2024, 3, 10))
    assert [t.isoformat() for t in ticks] == ["2024-03-10T03:00:00-04:00"]


def test_daily_wall_time_that_happens_twice_fires_once_at_its_first_occurrence():
    berlin = schedule("30 2 * * *", target="x", timezone="Europe/Berlin", name="berlin")
    assert utc_times(cron_times(berlin, *local_day(BERLIN, 2024, 10, 27))) == ["00:30"]  # 02:30 CEST
    new_york = schedule("30 1 * * *", target="x", timezone="America/New_York", name="ny")
    assert utc_times(cron_times(new_york, *local_day(NEW_YORK, 2024, 11, 3))) == ["05:30"]  # 01:30 EDT


def test_hourly_schedules_fire_in_both_repeated_hours_on_fall_back():
    hourly = schedule("0 * * * *", target="x", timezone="Europe/Berlin", name="hourly")
    ticks = cron_times(hourly, *local_day(BERLIN, 2024, 10, 27))
    assert len(ticks) == 25
    assert [t.isoformat() for t in ticks if t.hour == 2] == ["2024-10-27T02:00:00+02:00",
                                                              "2024-10-27T02:00:00+01:00"]
    half_hourly = schedule("*/30 * * * *", target="x", timezone="America/New_York", name="half")
    assert len(cron_times(half_hourly, *local_day(NEW_YORK, 2024, 11, 3))) == 50
    # one tick per real half hour: strictly increasing, 30 min apart
    ticks = cron_times(half_hourly, *local_day(NEW_YORK, 2024, 11, 3))
    assert {b.timestamp() - a.timestamp() for a, b in zip(ticks, ticks[1:])} == {1800.0}


def test_missed_ticks_found_backwards_match_the_forward_cron_times_across_dst():
    """Catch-up walks backwards; around both DST changes it must agree with the forward walk."""
    for zone, day in ((BERLIN, (2024, 10, 27)), (BERLIN, (2024, 3, 31)), (NEW_YORK, (2024, 11, 3))):
        for cron in ("0 * * * *", "30 2 * * *", "30 1 * * *", "*/20 * * * *"):
            spec = schedule(cron, target="x", timezone=zone.key, name="s", catchup="all", catchup_limit=500)
            start, end = local_day(zone, *day)
            plan = due_ticks(spec, start, end + dt.timedelta(hours=2), grace_s=7200)
            assert list(plan.launch) == cron_times(spec, start, end + dt.timedelta(hours=2)), (zone, cron)


def test_seconds_field_gives_a_fast_cadence():
    fast = schedule("* * * * * */2", target="x", name="fast")
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert len(cron_times(fast, start, start + dt.timedelta(seconds=10))) == 5


# -- catch-up --------------------------------------------------------------------
NOW = dt.datetime(2024, 1, 10, 0, 10, 5, tzinfo=UTC)


def daily(catchup, limit=10):
    return schedule("10 0 * * *", target="x", name="nightly", catchup=catchup, catchup_limit=limit)


def days(ticks):
    return [t.day for t in ticks]


def test_a_schedule_seen_for_the_first_time_starts_now_without_backfilling():
    plan = due_ticks(daily("all"), None, NOW)
    assert plan.launch == () and plan.skipped == () and plan.evaluated_until == NOW


def test_on_time_tick_is_launched_under_every_policy():
    for policy in ("skip", "latest", "all"):
        plan = due_ticks(daily(policy), NOW - dt.timedelta(seconds=30), NOW, grace_s=60)
        assert days(plan.launch) == [10] and plan.skipped == (), policy


def test_skip_drops_missed_ticks_and_records_them():
    plan = due_ticks(daily("skip"), NOW - dt.timedelta(days=3, hours=1), NOW - dt.timedelta(minutes=30))
    assert plan.launch == () and days(plan.skipped) == [7, 8, 9]


def test_latest_runs_only_the_newest_missed_tick():
    plan = due_ticks(daily("latest"), NOW - dt.timedelta(days=3, hours=1), NOW - dt.timedelta(minutes=30))
    assert days(plan.launch) == [9] and days(plan.skipped) == [7, 8]


def test_latest_adds_nothing_when_an_on_time_tick_exists():
    plan = due_ticks(daily("latest"), NOW - dt.timedelta(days=3, hours=1), NOW)
    assert days(plan.launch) == [10] and days(plan.skipped) == [7, 8, 9]


def test_all_runs_the_newest_missed_ticks_up_to_the_limit():
    plan = due_ticks(daily("all", limit=2), NOW - dt.timedelta(days=5, hours=1), NOW)
    assert days(plan.launch) == [8, 9, 10] and days(plan.skipped) == [5, 6, 7] and not plan.more_skipped


def test_long_downtime_costs_the_limit_not_the_missed_ticks():
    per_second = schedule("* * * * * *", target="x", name="s", catchup="all", catchup_limit=3)
    plan = due_ticks(per_second, NOW - dt.timedelta(days=30), NOW, grace_s=0)
    assert len(plan.launch) == 3 and len(plan.skipped) == MAX_RECORDED_SKIPS and plan.more_skipped
    assert plan.launch[-1] == NOW.replace(microsecond=0)


def test_a_tick_exactly_at_the_cursor_is_not_due_again():
    tick = NOW.replace(second=0)
    assert due_ticks(daily("all"), tick, NOW).launch == ()
    assert due_ticks(daily("all"), NOW, NOW - dt.timedelta(hours=1)).evaluated_until == NOW


def test_now_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        due_ticks(daily("all"), None, dt.datetime(2024, 1, 1))


# -- the partition of a tick -----------------------------------------------------
def tick(*args):
    return dt.datetime(*args, tzinfo=UTC)


def test_daily_schedule_at_0010_runs_yesterday():
    spec = daily("latest")
    assert tick_partitions(spec, tick(2024, 3, 10, 0, 10), DailyPartitions("2024-01-01")) == ("2024-03-09", None)


def test_hourly_schedule_runs_the_hour_that_just_closed():
    spec = schedule("5 * * * *", target="x", name="hourly")
    assert tick_partitions(spec, tick(2024, 3, 10, 13, 5), HourlyPartitions("2024-01-01")) == ("2024-03-10T12", None)


def test_the_closed_window_is_in_utc_because_partitions_are():
    """00:10 in Berlin is 23:10 UTC the day before: the last complete UTC day is two local days back."""
    when = dt.datetime(2024, 1, 2, 0, 10, tzinfo=BERLIN)
    assert closed_window_key(DailyPartitions("2023-01-01"), when) == "2023-12-31"


def test_a_window_outside_the_definition_skips_the_tick_with_a_reason():
    spec = daily("latest")
    keys, reason = tick_partitions(spec, tick(2024, 1, 1, 0, 10), DailyPartitions("2024-01-01"))
    assert keys is None and "outside DailyPartitions" in reason
    keys, reason = tick_partitions(spec, tick(2024, 2, 1, 0, 10), DailyPartitions("2024-01-01", "2024-01-05"))
    assert keys is None and reason


def test_unpartitioned_and_static_targets_run_without_a_partition_filter():
    spec = daily("latest")
    assert tick_partitions(spec, tick(2024, 1, 3), None) == (None, None)
    assert tick_partitions(spec, tick(2024, 1, 3), StaticPartitions(["eu", "us"])) == (None, None)


def test_explicit_partitions_and_functions_of_the_tick_win():
    fixed = schedule("10 0 * * *", target="x", name="fixed", partitions=["eu"])
    assert tick_partitions(fixed, tick(2024, 1, 3), StaticPartitions(["eu", "us"])) == (("eu",), None)
    by_tick = schedule("10 0 * * *", target="x", name="f", partitions=lambda t: f"{t:%Y-%m-01}...{t:%Y-%m-%d}")
    assert tick_partitions(by_tick, tick(2024, 1, 3), None) == ("2024-01-01...2024-01-03", None)
    broken = schedule("10 0 * * *", target="x", name="b", partitions=lambda t: 1 / 0)
    keys, reason = tick_partitions(broken, tick(2024, 1, 3), None)
    assert keys is None and reason == "partitions function raised ZeroDivisionError: division by zero"
