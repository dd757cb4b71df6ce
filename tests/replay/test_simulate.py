"""Pure tests: lower bound, upward ranks and the clairvoyant list schedule."""

from __future__ import annotations

import pytest

from daskflow.replay.simulate import (
    critical_path_ranks,
    critical_path_s,
    list_schedule,
    list_schedule_makespan_s,
    lower_bound_s,
)
from daskflow.replay.trace import trace_from_dict

pytestmark = pytest.mark.timeout(60)


def _trace(spec: dict[str, tuple[float, list[str]]]):
    return trace_from_dict({"name": "t", "tasks": [
        {"id": key, "category": key.rstrip("0123456789"), "runtime_s": d, "parents": parents}
        for key, (d, parents) in spec.items()
    ]})


def test_prefer_critical_path():
    """Two slots; x and y are short and independent, z leads to a long w.

        x(1)   y(1)   z(1)
                       |
                      w(3)

    Upward ranks: z = 4, w = 3, x = y = 1. The list schedule starts z at 0
    (beside x), so w starts at 1 and ends at 4 = the critical path. Starting
    in listed order (x, y first) would end at 5.
    """
    trace = _trace({"x": (1, []), "y": (1, []), "z": (1, []), "w": (3, ["z"])})
    assert critical_path_ranks(trace.durations_s(), trace.parent_indices()) == [1.0, 1.0, 4.0, 3.0]
    schedule = list_schedule(trace.durations_s(), trace.parent_indices(), slots=2)
    assert schedule.makespan_s == 4.0
    assert schedule.start_s == [0.0, 1.0, 0.0, 1.0]
    assert lower_bound_s(trace, 2) == 4.0  # max(critical path 4, work 6 / 2)
    assert list_schedule_makespan_s(trace, 2) == 4.0


def test_work_bound_and_list_schedule_gap():
    """Three independent tasks of 2 s on two slots.

        a(2)  b(2)  c(2)

    Lower bound max(2, 6 / 2) = 3, but no list schedule splits a task: 4.
    """
    trace = _trace({"a": (2, []), "b": (2, []), "c": (2, [])})
    assert lower_bound_s(trace, 2) == 3.0
    assert list_schedule_makespan_s(trace, 2) == 4.0
    assert list_schedule_makespan_s(trace, 3) == 2.0
    assert list_schedule_makespan_s(trace, 1) == 6.0


def test_diamond_with_zero_duration_tasks():
    """A diamond whose join takes no time.

          s(0)
         /    \\
       l(2)   r(5)
         \\    /
          j(0)
    """
    trace = _trace({"s": (0, []), "l": (2, ["s"]), "r": (5, ["s"]), "j": (0, ["l", "r"])})
    assert critical_path_s(trace) == 5.0
    schedule = list_schedule(trace.durations_s(), trace.parent_indices(), slots=1)
    assert schedule.makespan_s == 7.0
    assert schedule.start_s[2] == 0.0  # r (rank 5) before l (rank 2)
    assert list_schedule_makespan_s(trace, 2) == 5.0


def test_ranks_with_keys_and_cycles():
    assert critical_path_ranks({"a": 1.0, "b": 2.0, "c": 0.5}, {"b": ["a"], "c": ["a", "outside"]}) == {
        "a": 3.0, "b": 2.0, "c": 0.5,
    }
    with pytest.raises(ValueError, match="cycle"):
        critical_path_ranks([1.0, 1.0], [[1], [0]])
    with pytest.raises(ValueError, match="slots"):
        lower_bound_s(_trace({"a": (1, [])}), 0)


def test_list_schedule_is_valid_on_a_real_trace(workloads_dir):
    from daskflow.replay.trace import load_trace

    trace = load_trace(workloads_dir / "montage-103tasks-2mass-01d-001.json")
    durations, parents = trace.durations_s(), trace.parent_indices()
    schedule = list_schedule(durations, parents, slots=8)
    bound = lower_bound_s(trace, 8)
    assert bound <= schedule.makespan_s <= 2 * bound  # Graham: a list schedule is within 2x
    for i, task_parents in enumerate(parents):
        for p in task_parents:
            assert schedule.start_s[i] >= schedule.start_s[p] + durations[p] - 1e-9
    # never more than 8 tasks at once on distinct slots
    intervals = sorted((schedule.start_s[i], schedule.start_s[i] + durations[i], schedule.slot[i]) for i in range(len(trace)))
    by_slot: dict[int, float] = {}
    for start, end, slot in intervals:
        assert 0 <= slot < 8
        assert start >= by_slot.get(slot, 0.0) - 1e-9
        by_slot[slot] = end


def test_the_simulator_and_the_steering_policy_rank_with_the_same_function():
    """One definition: the clairvoyant bound is computed by the code the plugin ships."""
    import daskflow.critical_path
    import scheduler_plugins.policy

    assert critical_path_ranks is daskflow.critical_path.critical_path_ranks
    assert scheduler_plugins.policy.critical_path_ranks is daskflow.critical_path.critical_path_ranks
