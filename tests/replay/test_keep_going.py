"""The replay harness keeps going when a worker is slow to come back: it reports it, it does not abort."""

from __future__ import annotations

import time

import pytest

from daskflow.replay.cluster import wait_for_workers

pytestmark = pytest.mark.timeout(60)


class OneWorkerShortClient:
    """A client whose cluster should have two workers; one never comes back."""

    cluster = None

    def __init__(self) -> None:
        self.waits = 0

    def wait_for_workers(self, n_workers, timeout=None):
        self.waits += 1
        raise TimeoutError(f"Only 1/{n_workers} workers arrived after {timeout}")

    def scheduler_info(self, n_workers=-1):
        return {"workers": {"tcp://127.0.0.1:1": {"nthreads": 1}}}


def test_waiting_for_a_worker_that_does_not_come_back_returns_the_ones_there():
    client = OneWorkerShortClient()
    started = time.monotonic()
    workers, expected = wait_for_workers(client, timeout_s=0.3, expected=2)
    assert list(workers) == ["tcp://127.0.0.1:1"] and expected == 2
    assert client.waits >= 1 and time.monotonic() - started < 30  # bounded, no exception


def test_a_sequence_of_runs_goes_on_with_the_workers_there_and_reports_the_missing_one():
    """The cluster should have 2 workers (say a killed one is being restarted): every run waits a bounded time,
    reports it, and runs on the one that is there."""
    from distributed import Client, LocalCluster

    from daskflow.replay.harness import replay_on_client

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        result = replay_on_client(client, "skewed-bag:1:6", "stock", target_seconds=0.2, repeat=2,
                                  expected_workers=2, worker_timeout_s=0.5)  # fmt: skip
    assert result["workers_slow_to_return"] == 2  # before each of the two runs
    assert len(result["makespans_s"]) == 2 and result["failed_tasks"] == 0 and result["workers"] == 1
    assert result["runs_timed_out"] == 0 and result["runs_not_released"] == 0


def test_no_worker_at_all_is_one_clear_error():
    from daskflow.replay.harness import replay_on_client

    class NoWorkers(OneWorkerShortClient):
        def scheduler_info(self, n_workers=-1):
            return {"workers": {}}

    with pytest.raises(TimeoutError, match="no worker connected to the scheduler"):
        replay_on_client(NoWorkers(), "skewed-bag:1:6", "stock", expected_workers=2, worker_timeout_s=0.2)
