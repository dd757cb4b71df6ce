"""The speed- and transfer-aware clairvoyant schedule (HEFT-style) of the multi-host test bed."""

from __future__ import annotations

import pytest

from daskflow.replay.simulate import heft_schedule, list_schedule

pytestmark = pytest.mark.timeout(30)


def test_equal_workers_on_one_host_is_the_list_schedule():
    """No transfers and equal speeds: HEFT reaches the critical-path list schedule's makespan."""
    durations = [4.0, 1.0, 1.0, 1.0, 2.0]
    parents = [[], [], [], [], [0, 1]]
    heft = heft_schedule(durations, parents, [10] * 5, [1.0, 1.0], [0, 0], 1.0)
    assert heft.makespan_s == pytest.approx(list_schedule(durations, parents, 2).makespan_s)
    assert heft.remote_bytes == 0


def test_long_work_goes_to_the_fast_worker():
    heft = heft_schedule([8.0, 1.0], [[], []], [0, 0], [0.5, 1.0], [0, 1], 1e9)
    assert heft.worker == [1, 0]
    assert heft.makespan_s == pytest.approx(8.0)


def test_a_child_stays_with_its_data_when_moving_it_costs_more_than_waiting():
    """  a (1 s, 10 MB out)  b (1 s)         a on w0, b on w1 (host 1)
          \\
           c (1 s)                         c: on w0 after a (2 s) beats a 10 s transfer to w1
    """
    heft = heft_schedule([1.0, 1.0, 1.0], [[], [], [0]], [10_000_000, 0, 0], [1.0, 1.0], [0, 1], 1e6)
    assert heft.worker[2] == heft.worker[0]
    assert heft.makespan_s == pytest.approx(2.0)


def test_external_inputs_pull_tasks_to_the_host_that_stores_them():
    heft = heft_schedule([1.0], [[]], [0], [1.0, 1.0], ["h0", "h1"], 1e6,
                         external_bytes=[5_000_000], external_hosts=["h1"])
    assert heft.worker == [1] and heft.remote_bytes == 0
    remote = heft_schedule([1.0], [[]], [0], [1.0], ["h0"], 1e6, external_bytes=[5_000_000], external_hosts=["h1"])
    assert remote.makespan_s == pytest.approx(6.0) and remote.remote_bytes == 5_000_000


def test_schedule_respects_dependencies_on_a_real_trace(workloads_dir):
    from daskflow.replay.trace import load_trace

    trace = load_trace(workloads_dir / "montage-103tasks-2mass-01d-001.json")
    parents = trace.parent_indices()
    heft = heft_schedule(trace.durations_s(), parents, [t.output_bytes for t in trace.tasks],
                         [1, 1, 0.5, 0.5] * 2, [0, 0, 1, 1, 2, 2, 3, 3], 25e6)
    for i, ps in enumerate(parents):
        assert all(heft.finish_s[p] <= heft.start_s[i] + 1e-9 for p in ps)
    assert heft.makespan_s >= max(trace.durations_s())


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        heft_schedule([1.0], [[]], [0], [], [], 1.0)
    with pytest.raises(ValueError):
        heft_schedule([1.0], [[]], [0], [0.0], [0], 1.0)
