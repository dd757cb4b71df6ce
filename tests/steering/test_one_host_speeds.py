"""On one host, speeds are noise: the model's bias and its per-task error must not read as slow or fast workers.

The single-host benchmark regressed (steer/stock 1.068) because every worker
"learned" the model's bias before the in-run corrector removed it (so plans
were divided by it twice: false stragglers, restarts, holds for a "faster"
worker), and because a worker's few noisy ratios differed from the others'.
"""

from __future__ import annotations

import math
import random

import pytest

from scheduler_plugins.policy import SpeedEstimates, WorkerInfo, relative_speed
from scheduler_plugins.policy.stragglers import CategorySpread, RunningTask, find_stragglers, restart_decision
from tests.steering.fakes import FakeClock
from tests.steering.test_slow_hosts import bed

pytestmark = pytest.mark.timeout(30)


def test_a_bias_every_worker_shares_is_no_speed():
    clock = FakeClock(10.0)
    plugin, _ = bed(clock)
    dispatcher, state = plugin.dispatcher, plugin.state
    for address in ("tcp://h0:1", "tcp://h1:1"):
        state.facts[address] = {"host": "h", "nthreads": 1, "speed": 1.0, "speed_declared": False,
                                "memory_limit_bytes": 2**32}
        for _ in range(8):  # the model predicts 3.7x too long: every worker looks 3.7x fast
            state.speeds.observe(address, "h", actual_s=0.27, planned_s=1.0)
            state.counts["speed_observed"] += 1
    assert state.speeds.speed("tcp://h0:1", "h") > 3.0  # absolute: the bias
    assert [dispatcher.speed_of(a, state.facts[a])[0] for a in ("tcp://h0:1", "tcp://h1:1")] == [1.0, 1.0]


def test_hosts_of_different_speeds_keep_their_ratio():
    assert relative_speed(0.5, 1.0) == 0.5 and relative_speed(2.0, 2.0) == 1.0
    assert relative_speed(0.25 * 3.7, 3.7) == pytest.approx(0.25)


def test_noisy_ratios_do_not_split_the_workers_of_one_host():
    rng = random.Random(7)
    speeds = SpeedEstimates(window=16, pseudo_n=3.0)
    for _ in range(12):
        for worker in range(8):  # per-task error like a sibling model's (median APE ~0.6)
            speeds.observe(f"w{worker}", "h", actual_s=math.exp(rng.gauss(0.0, 0.7)), planned_s=1.0)
    assert speeds.noise_sigma() > 0.4
    assert [speeds.speed(f"w{w}", "h") for w in range(8)] == [1.0] * 8


def test_a_worker_really_twice_as_slow_is_still_seen_among_noisy_ones():
    rng = random.Random(3)
    speeds = SpeedEstimates(window=16, pseudo_n=3.0)
    for _ in range(16):
        for worker in range(8):
            slow = math.log(2.0) if worker == 0 else 0.0
            speeds.observe(f"w{worker}", f"h{worker % 4}", actual_s=math.exp(slow + rng.gauss(0.0, 0.3)), planned_s=1.0)
    assert speeds.speed("w0", "h0") < 0.8
    assert all(speeds.speed(f"w{w}", f"h{w % 4}") == 1.0 for w in (1, 2, 3, 5, 6, 7))


def test_a_lone_straggler_on_a_worker_of_known_speed_is_long_not_slow():
    """Replayed work costs the same on every worker of one host: restarting it only adds the time already run."""
    task = RunningTask("k", "tcp://a:1", "h", "fit", "replay", planned_s=0.5, worker_speed=1.0, could_start_at=0.0)
    [straggler] = find_stragglers([task], now=2.0, spread=CategorySpread(), straggler_factor=3.0)
    idle = [WorkerInfo("tcp://b:1", host="h")]
    assert restart_decision(straggler, idle, 1e8).restart  # no record of the worker: it may be slow (as before)
    kept = restart_decision(straggler, idle, 1e8, worker_speed_known=True)
    assert not kept.restart and kept.reason == "straggler" and kept.finish_there_s == pytest.approx(2.0)
    faster = [WorkerInfo("tcp://c:1", host="g", speed=4.0)]  # a clearly faster idle worker still wins
    assert restart_decision(straggler, faster, 1e8, worker_speed_known=True).restart


def test_the_dispatcher_keeps_a_lone_straggler_on_a_worker_that_finished_on_time():
    clock = FakeClock(10.5)
    plugin, scheduler = bed(clock)
    state = plugin.state
    state.host_activity.finished.clear()  # nothing says h1 slowed: a lone straggler
    for _ in range(4):
        state.speeds.observe("tcp://h1:1", "h1", actual_s=0.15, planned_s=0.15)
    plugin.dispatcher.check_stragglers(scheduler)
    assert scheduler.released == []
    assert [e["action"] for e in state.decisions if e["action"] in ("straggler", "restart")] == ["straggler"]


def test_tasks_shorter_than_speed_min_task_are_no_stragglers():
    clock = FakeClock(10.5)
    plugin, scheduler = bed(clock)
    for key in ("probe-1", "probe-2"):
        prediction = plugin.state.predictions[key]
        plugin.state.predictions[key] = type(prediction)(0.02, 0, "oracle", "oracle", category="probe")
    plugin.dispatcher.check_stragglers(scheduler)
    assert not [e for e in plugin.state.decisions if e["action"] in ("straggler", "restart")]
    assert scheduler.released == []


def _relative_speeds(speeds: SpeedEstimates, workers: dict[str, str]) -> dict[str, float]:
    """What the dispatcher gives placement: each learned speed relative to the workers' upper median."""
    learned = sorted(speeds.speed(w, h) for w, h in workers.items())
    level = learned[len(learned) // 2]
    return {w: relative_speed(speeds.speed(w, h), level) for w, h in workers.items()}


def _speed_held(speeds: SpeedEstimates, workers: dict[str, str]) -> bool:
    """Whether a long task would be held for the busy one of two workers (either way round)."""
    from scheduler_plugins.policy import PolicyConfig, TaskInfo, choose_worker

    relative = _relative_speeds(speeds, workers)
    config = PolicyConfig(lookahead_s=0.05)
    for busy in workers:
        infos = [WorkerInfo(w, host=h, speed=relative[w], n_processing=int(w == busy), backlog_s=0.2 if w == busy else 0.0)
                 for w, h in workers.items()]
        if choose_worker(TaskInfo("long", 2.0), infos, config).reason == "speed":
            return True
    return False


@pytest.mark.parametrize("sigma", [0.3, 0.6])
def test_identical_workers_of_one_host_with_few_noisy_tasks_never_hold_for_speed(sigma):
    """The CI flake: 2 identical worker processes on ONE host, a handful of noisy tasks each -> no speed hold, ever.

    Checked after every finished task (as the plugin does), 200 runs; a model bias every worker shares included.
    """
    workers = {"tcp://127.0.0.1:1": "127.0.0.1", "tcp://127.0.0.1:2": "127.0.0.1"}
    held_runs = 0
    for seed in range(200):
        rng = random.Random(seed)
        speeds = SpeedEstimates(window=16, pseudo_n=3.0)
        bias = rng.gauss(0.0, 0.5)
        for _ in range(12):
            worker = rng.choice(list(workers))
            speeds.observe(worker, workers[worker], actual_s=math.exp(bias + rng.gauss(0.0, sigma)), planned_s=1.0)
            if _speed_held(speeds, workers):
                held_runs += 1
                break
    assert held_runs == 0


def test_a_worker_at_half_speed_with_enough_evidence_is_held_against():
    """Among identical workers of one host, one at half speed is seen from its tasks and a long task waits for a fast one."""
    rng = random.Random(5)
    speeds = SpeedEstimates(window=16, pseudo_n=3.0)
    workers = {f"tcp://h:{i}": "h" for i in range(4)}
    for _ in range(12):
        for worker in workers:
            slow = math.log(2.0) if worker == "tcp://h:0" else 0.0
            speeds.observe(worker, "h", actual_s=math.exp(slow + rng.gauss(0.0, 0.1)), planned_s=1.0)
    relative = _relative_speeds(speeds, workers)
    assert relative["tcp://h:0"] < 0.6 and [relative[w] for w in list(workers)[1:]] == [1.0, 1.0, 1.0]
    two = {"tcp://h:0": "h", "tcp://h:1": "h"}
    assert _speed_held(speeds, two)


def test_a_slow_host_is_still_learned_from_its_first_tasks():
    """Hosts differ from their priors as before (shrunk): the hetero case does not wait for per-worker evidence."""
    speeds = SpeedEstimates(window=16, pseudo_n=3.0)
    for _ in range(4):
        for worker, host, ratio in (("a1", "fast", 1.0), ("a2", "fast", 1.0), ("b1", "slow", 2.0), ("b2", "slow", 2.0)):
            speeds.observe(worker, host, actual_s=ratio, planned_s=1.0)
    assert speeds.speed("b1", "slow") == speeds.speed("b2", "slow") < 0.7
    assert speeds.speed("a1", "fast") == speeds.speed("a2", "fast") == 1.0


def test_a_speed_hold_needs_a_clearly_faster_worker():
    """A busy worker only 1.3x faster that holds the task's input: the gain is locality, not speed.

    4 s of work, 3 s to move its input: 8.2 s on the free worker b, 4.5 s on a once its 0.5 s backlog is done
    (less than 0.7 x 8.2). That wait is what HEFT and stock Dask's own objective (occupancy + transfer) choose;
    it is held for *locality*. Without the input it is placed on b: 1.3x is no speed worth an idle worker.
    """
    from scheduler_plugins.policy import DependencyInfo, PolicyConfig, TaskInfo, choose_worker

    config = PolicyConfig(lookahead_s=0.05)
    task = TaskInfo("long", 4.0, dependencies=(DependencyInfo(300_000_000, frozenset({"a"})),))
    slower = WorkerInfo("b", host="h", speed=1.0 / 1.3)
    faster = WorkerInfo("a", host="h", speed=1.0, n_processing=1, backlog_s=0.5)
    placed = choose_worker(task, [faster, slower], config)
    assert (placed.action, placed.worker, placed.reason) == ("hold", "a", "locality")
    plain = choose_worker(TaskInfo("long", 4.0), [faster, slower], config)
    assert plain.action == "place" and plain.worker == "b"
    twice = WorkerInfo("a", host="h", speed=2.0, n_processing=1, backlog_s=1.0)
    assert choose_worker(TaskInfo("long", 4.0), [twice, WorkerInfo("b", host="h", speed=1.0)], config).reason == "speed"


def test_a_bias_every_host_shares_is_no_speed_even_for_a_host_with_few_tasks():
    """The slowdown benchmark's bwa run: the model under-predicts every task ~3.7x; three hosts learned it from many
    tasks, the fourth (few tasks, within its noise) snapped to its bare prior and read 3.7x *fast* relative to them:
    92 holds for it. Snapped to the prior plus the shift all hosts share, it reads as the others do."""
    rng = random.Random(11)
    speeds = SpeedEstimates(window=16, pseudo_n=3.0)
    bias = math.log(3.7)
    workers = {f"tcp://h{h}:{i}": f"h{h}" for h in range(4) for i in range(2)}
    for _ in range(8):
        for worker, host in workers.items():
            if host != "h0" or rng.random() < 0.15:
                speeds.observe(worker, host, actual_s=math.exp(bias + rng.gauss(0.0, 0.5)), planned_s=1.0)
    assert set(_relative_speeds(speeds, workers).values()) == {1.0}


def test_a_half_speed_host_is_still_seen_under_a_shared_bias():
    rng = random.Random(12)
    speeds = SpeedEstimates(window=16, pseudo_n=3.0)
    bias = math.log(3.7)
    workers = {f"tcp://h{h}:{i}": f"h{h}" for h in range(4) for i in range(2)}
    for _ in range(8):
        for worker, host in workers.items():
            slow = math.log(2.0) if host == "h3" else 0.0
            speeds.observe(worker, host, actual_s=math.exp(bias + slow + rng.gauss(0.0, 0.2)), planned_s=1.0)
    relative = _relative_speeds(speeds, workers)
    assert all(relative[w] < 0.7 for w, h in workers.items() if h == "h3")
    assert all(relative[w] == 1.0 for w, h in workers.items() if h != "h3")
