"""Timeline example: a daily schedule, a file sensor and an asset sensor on one small pipeline.

Run the daemon (schedules and sensors, exactly-once launches) with::

    daskflow daemon examples/timeline_pipeline.py
    # or with a background cluster it runs on, stopped by `cluster down`:
    daskflow cluster up --daemon examples/timeline_pipeline.py

Backfill a year of daily partitions, 7 per run, at most 2 runs at once::

    daskflow backfill examples/timeline_pipeline.py --partition 2024-01-01...2024-12-31 --chunk 7 \\
        --max-concurrent-runs 2
    daskflow backfill status

Graph and triggers::

    readings [daily] ──> daily_stats [daily] ──> summary (by hand: reads every day)
       ^ nightly: 00:10 UTC, yesterday's partition
                         ^ stats_sensor: a new readings partition -> daily_stats of that day
    landed_files <── file_sensor: one run per new *.csv in $TIMELINE_EXAMPLE_INBOX (run key = file name)

Everything is seeded from the partition key, so re-runs give the same data.
"""

from __future__ import annotations

import os
import pathlib
import zlib

import daskflow
from daskflow import DailyPartitions, asset

DAYS = DailyPartitions("2024-01-01", "2024-12-31")
INBOX = pathlib.Path(os.environ.get("TIMELINE_EXAMPLE_INBOX", "timeline-inbox"))


@asset(partitions=DAYS, code_version="1", tags={"layer": "raw"})
def readings(context) -> list[dict]:
    """24 hourly sensor readings of one day (seeded by the day)."""
    seed = zlib.crc32(context.partition.encode())
    return [{"day": context.partition, "hour": h, "value": (seed >> (h % 16)) % 100} for h in range(24)]


@asset(partitions=DAYS, code_version="1")
def daily_stats(readings: list[dict]) -> list[dict]:
    """Min, mean and max of one day's readings."""
    values = [r["value"] for r in readings]
    return [{"day": readings[0]["day"], "min": min(values), "mean": sum(values) / len(values), "max": max(values)}]


@asset(code_version="1")
def landed_files() -> list[dict]:
    """The CSV files in the inbox (name and size)."""
    return [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(INBOX.glob("*.csv"))]


@asset(code_version="1")
def summary(daily_stats: dict) -> list[dict]:
    """One row over every day (receives every daily partition)."""
    rows = [row for day in daily_stats.values() for row in day]
    return [{"days": len(rows), "mean": sum(r["mean"] for r in rows) / max(1, len(rows))}]


#: yesterday's partition every night at 00:10 UTC; after downtime, only the latest missed night
nightly = daskflow.schedule("10 0 * * *", target="readings", name="nightly", catchup="latest",
                            tags={"pool": "warehouse"})


@daskflow.sensor(target="landed_files", minimum_interval_s=30)
def file_sensor(context):
    """One run per new CSV in the inbox; the file name is the run key, so a file launches once, ever."""
    if not INBOX.is_dir():
        return daskflow.SkipReason(f"no inbox directory {INBOX}")
    names = sorted(p.name for p in INBOX.glob("*.csv"))
    if not names:
        return daskflow.SkipReason(f"no CSV files in {INBOX}")
    context.update_cursor(names[-1])
    return [daskflow.RunRequest(run_key=name, tags={"file": name}) for name in names]


#: each new readings partition (from the schedule or a backfill) gets its daily_stats, partition by partition
stats_sensor = daskflow.asset_sensor("readings", target="daily_stats", name="stats_sensor", minimum_interval_s=60)
