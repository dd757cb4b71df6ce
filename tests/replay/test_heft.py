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


# --------------------------------------------------------------------------- the bed's links and replicas
#
# Hand-computed schedules. 100 B over a 100 B/s link takes 1 s. A worker at speed 0.1 stands for "the data's own
# host is too slow to run the consumer", so the consumers must read over a link.


def test_two_reads_from_one_host_share_its_out_link():
    """a (0 s, 100 B) on h0; b and c read it on h1's two workers: contended, c's read waits for b's (1-2 s)."""
    args = ([0.0, 1.0, 1.0], [[], [0], [0]], [100, 0, 0], [0.1, 1.0, 1.0], [0, 1, 1], 100.0)
    free = heft_schedule(*args)
    assert free.worker == [0, 1, 2] and free.finish_s == pytest.approx([0.0, 2.0, 2.0])
    busy = heft_schedule(*args, link_contention=True)
    assert busy.finish_s == pytest.approx([0.0, 2.0, 3.0])
    assert busy.transfers == [(0, 1, 0.0, 1.0), (0, 1, 1.0, 2.0)]


def test_two_reads_into_one_host_share_its_in_link():
    """a on h0, b on h1 (each next to its 100 B input); c reads a and d reads b, both on h2: h2's in-link is shared.

    c: w2, read h0 -> h2 at 0-1, compute 1-2.  d: w3, read h1 -> h2 waits for the in-link: 1-2, compute 2-3
    (uncontended: 0-1, 1-2).
    """
    args = ([0.0, 0.0, 1.0, 1.0], [[], [], [0], [1]], [100, 100, 0, 0], [0.1, 0.1, 1.0, 1.0], [0, 1, 2, 2], 100.0)
    where = {"external_bytes": [100, 100, 0, 0], "external_hosts": [0, 1, None, None]}
    assert heft_schedule(*args, **where).makespan_s == pytest.approx(2.0)
    busy = heft_schedule(*args, **where, link_contention=True)
    assert busy.worker == [0, 1, 2, 3]
    assert busy.finish_s == pytest.approx([0.0, 0.0, 2.0, 3.0])
    assert busy.transfers[-1] == (1, 2, 1.0, 2.0)


def test_a_copy_on_the_host_serves_its_later_consumers_for_free():
    """b and c both read a's 100 B on h1: with replicas only b's read crosses the link; c waits for it (until 1 s)."""
    args = ([0.0, 1.0, 1.0], [[], [0], [0]], [100, 0, 0], [0.1, 1.0, 1.0], [0, 1, 1], 100.0)
    again = heft_schedule(*args, link_contention=True)
    assert again.remote_bytes == 200
    copied = heft_schedule(*args, link_contention=True, replicas=True)
    assert copied.remote_bytes == 100 and len(copied.transfers) == 1
    assert copied.start_s == pytest.approx([0.0, 0.0, 0.0]) and copied.finish_s == pytest.approx([0.0, 2.0, 2.0])


def test_a_copy_on_one_host_is_no_copy_on_another():
    """Replicas are per host: a consumer on h2 still reads a's output from h0 (the producer, as on the bed)."""
    args = ([0.0, 1.0, 1.0], [[], [0], [0]], [100, 0, 0], [0.1, 1.0, 1.0], [0, 1, 2], 100.0)
    both = heft_schedule(*args, replicas=True)  # uncontended, so c's own read on h2 (0-1 s) beats queueing on h1
    assert both.worker == [0, 1, 2] and both.remote_bytes == 200
    assert sorted(t[:2] for t in both.transfers) == [(0, 1), (0, 2)]


def test_no_link_is_ever_booked_twice_at_once_on_a_real_trace(workloads_dir):
    from daskflow.replay.trace import load_trace

    trace = load_trace(workloads_dir / "montage-103tasks-2mass-01d-001.json")
    parents = trace.parent_indices()
    heft = heft_schedule(trace.durations_s(), parents, [t.output_bytes for t in trace.tasks],
                         [1, 1, 0.5, 0.5] * 2, [0, 0, 1, 1, 2, 2, 3, 3], 25e6, link_contention=True, replicas=True)
    for i, ps in enumerate(parents):
        assert all(heft.finish_s[p] <= heft.start_s[i] + 1e-9 for p in ps)
    assert heft.transfers
    for end in (0, 1):  # each host's out-link (by source) and in-link (by destination)
        for host in range(4):
            spans = sorted((a, b) for *ends, a, b in heft.transfers if ends[end] == host)
            assert all(spans[k][1] <= spans[k + 1][0] + 1e-9 for k in range(len(spans) - 1))


def test_the_simulation_knows_the_slowdown_each_task_on_the_slowed_host_runs_at_the_speed_of_its_time():
    """A bag of 24 tasks on 2 hosts x 2 workers, host 0 x4 slower from 3 s: every task there is timed piecewise."""
    from daskflow.replay.simulate import piecewise_compute_s

    durations = [1.0 + 0.1 * (i % 5) for i in range(24)]
    args = (durations, [[] for _ in durations], [0] * 24, [1.0, 1.0, 0.5, 0.5], [0, 0, 1, 1], 1e9)
    plain = heft_schedule(*args)
    assert heft_schedule(*args, slowdown=(0, 3.0, 1.0)).finish_s == plain.finish_s  # factor 1: no change
    assert heft_schedule(*args, slowdown=(0, 1e6, 4.0)).finish_s == plain.finish_s  # after the end: no change
    slowed = heft_schedule(*args, slowdown=(0, 3.0, 4.0))
    on_slowed = [i for i, w in enumerate(slowed.worker) if w in (0, 1)]
    assert on_slowed and any(slowed.start_s[i] >= 3.0 for i in on_slowed)
    for i in on_slowed:
        assert slowed.finish_s[i] - slowed.start_s[i] == pytest.approx(piecewise_compute_s(durations[i], 1.0, slowed.start_s[i], 3.0, 4.0))
    # knowing it, the schedule gives the slowed host less work than without the slowdown
    assert len(on_slowed) < sum(1 for w in plain.worker if w in (0, 1))
