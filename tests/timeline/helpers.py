"""Shared pieces of the timeline tests: a pipeline file with daily partitions, a pool that 'runs' in-process."""

from __future__ import annotations

import textwrap

from daskflow.catalog import Catalog

PIPELINE = textwrap.dedent('''
    import time
    import daskflow
    from daskflow.partitions import DailyPartitions

    DAYS = DailyPartitions("2023-01-01", "2024-12-31")

    @daskflow.asset(partitions=DAYS)
    def events(context):
        time.sleep(float(__import__("os").environ.get("DASKFLOW_TEST_SLEEP", "0")))
        return [{"day": context.partition}]

    @daskflow.asset(partitions=DAYS)
    def daily_totals(events):
        return [{"n": len(events)}]

    @daskflow.asset
    def summary():
        return [{"ok": 1}]
''')


def write_pipeline(tmp_path, name="backfill_pipeline.py"):
    path = tmp_path / name
    path.write_text(PIPELINE)
    return path


class InstantPool:
    """A launcher pool whose 'launchers' record the run in the catalog and exit with ``outcome(launch)``.

    ``outcome`` returns ``(status, materialized_partitions)``; a run stays in flight
    for one reap, so tests see limits being applied.
    """

    def __init__(self, catalog_path, capacity=10, outcome=None, asset_keys=("events", "daily_totals")):
        self.catalog = Catalog(catalog_path)
        self.capacity, self.in_flight, self.started = capacity, {}, []
        self.outcome = outcome or (lambda launch: ("success", launch.partitions))
        self.asset_keys = asset_keys
        self.max_in_flight = 0

    def free_slots(self):
        return max(0, self.capacity - len(self.in_flight))

    def start(self, launch):
        self.in_flight[launch.run_id] = launch
        self.started.append(launch)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        self.catalog.start_run(launch.run_id, pipeline=launch.pipeline, selection=launch.selection,
                               partitions=launch.partitions, tags=launch.tags)

    def reap(self):
        done = []
        for run_id, launch in list(self.in_flight.items()):
            status, materialized = self.outcome(launch)
            for partition in materialized or ():
                for asset in self.asset_keys:
                    self.catalog.record_materialization(run_id, asset, {"path": f"/d/{asset}/{partition}",
                                                                        "format": "json"}, partition=partition)
            self.catalog.finish_run(run_id, status)
            del self.in_flight[run_id]
            done.append((run_id, 0 if status == "success" else 1, f"run {run_id}: {status}"))
        return done
