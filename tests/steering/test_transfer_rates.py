"""Transfer rates learned from the tasks' own reads: pure estimates, placement by them, the store, the metadata path.

On the test bed a replayed task's value is a small handle whose ``sizeof`` is
its stored bytes, so Dask's measured bandwidth is ~18x the link::

    h0: producer -> writes 100 MB to h0's disk, returns a handle
    h1: consumer reads the 100 MB over a 25 MB/s link (4 s), which Dask priced at ~0.2 s
"""

from __future__ import annotations

import math

import pytest

from scheduler_plugins.policy import PolicyConfig, RoundContext, TaskInfo, WorkerInfo, choose_worker, estimate_finish
from scheduler_plugins.policy.model import DependencyInfo
from scheduler_plugins.policy.placement import plan_dispatch
from scheduler_plugins.policy.transfer import LinkLoad, TransferRates
from scheduler_plugins.speed_store import TRANSFER_SECTION, load_host_speeds, save_host_speeds, speeds_url

pytestmark = pytest.mark.timeout(60)

MB = 1_000_000


def test_rates_are_medians_per_pair_with_the_other_links_as_fallback():
    rates = TransferRates()
    for seconds in (4.0, 4.2, 3.8, 40.0):  # one stalled read does not move the median
        rates.observe("h0", "h1", 100 * MB, seconds)
    rates.observe("h1", "h1", 100 * MB, 0.05)  # a local read
    assert rates.rate("h0", "h1") == pytest.approx(100 * MB / 4.1, rel=0.05)
    assert rates.rate("h2", "h3") == rates.rate("h0", "h1")  # a link never seen: like the others
    assert rates.rate("h1", "h1") == pytest.approx(2000 * MB)
    assert rates.rate("h3", "h3") is None  # a local read never seen: no guess
    assert not rates.observe("h0", "h1", 1000, 1.0)  # latency, not a rate


def test_persisted_rates_are_priors_that_the_run_outweighs():
    rates = TransferRates()
    rates.load_priors({"h0->h1": {"log_rate": math.log(25 * MB)}, "garbage": {"log_rate": 1.0}, "a->b": {"x": 1}})
    assert rates.rate("h0", "h1") == pytest.approx(25 * MB)
    for _ in range(16):
        rates.observe("h0", "h1", 50 * MB, 1.0)
    assert 45 * MB < rates.rate("h0", "h1") <= 50 * MB
    assert set(rates.persisted()) == {"h0->h1"}


def workers():
    return [WorkerInfo("tcp://h0:1", host="h0"), WorkerInfo("tcp://h1:1", host="h1")]


def test_learned_rates_make_moving_a_handle_cost_what_reading_its_bytes_costs():
    consumer = TaskInfo("c", 1.0, dependencies=[DependencyInfo(100 * MB, frozenset({"tcp://h0:1"}))])
    dask_measured = RoundContext(now=0.0, lookahead_s=0.05, bandwidth_bytes_per_s=2e9)  # the handle's "bandwidth"
    assert estimate_finish(consumer, workers()[1], PolicyConfig(), dask_measured).transfer_s == pytest.approx(0.05)
    learned = RoundContext(now=0.0, lookahead_s=0.05, bandwidth_bytes_per_s=2e9, pair_rates={("h0", "h1"): 25 * MB},
                           remote_rate_bytes_per_s=25 * MB, host_of={"tcp://h0:1": "h0", "tcp://h1:1": "h1"})
    assert estimate_finish(consumer, workers()[1], PolicyConfig(), learned).transfer_s == pytest.approx(4.0)
    assert estimate_finish(consumer, workers()[0], PolicyConfig(), learned).transfer_s == 0.0  # on its own host
    # h0 frees in 2 s (open: within a 5 s lookahead); h1 is idle but must read the 100 MB over the link first
    busy_h0 = [WorkerInfo("tcp://h0:1", host="h0", n_processing=1, backlog_s=2.0), workers()[1]]
    wide = {"lookahead_s": 5.0}
    learned_wide = RoundContext(**{**{f: getattr(learned, f) for f in learned.__slots__}, **wide})
    measured_wide = RoundContext(**{**{f: getattr(dask_measured, f) for f in dask_measured.__slots__}, **wide})
    assert choose_worker(consumer, busy_h0, PolicyConfig(), context=learned_wide).worker == "tcp://h0:1"
    assert choose_worker(consumer, busy_h0, PolicyConfig(), context=measured_wide).worker == "tcp://h1:1"


def test_a_read_placed_on_a_link_delays_the_next_one_there_so_the_second_consumer_waits_for_the_data():
    """Two consumers of 100 MB stored on h0 (25 MB/s links: 4 s alone); h0's worker frees in 4.5 s.

    Priced idle, both links look free and each consumer goes to an idle remote worker (5 s < 5.5 s), and the
    two reads then share h0's link (8 s each). With the first read on h0's link, the second one is priced at
    8 s, and it waits for h0 instead."""
    hosts = ("h0", "h1", "h2")
    consumers = [TaskInfo(f"c{i}", 1.0, input_locations=[("h0", 100 * MB)]) for i in range(2)]

    def placed(load):
        pool = {f"tcp://{h}:1": WorkerInfo(f"tcp://{h}:1", host=h, n_processing=1 if h == "h0" else 0,
                                           backlog_s=4.5 if h == "h0" else 0.0) for h in hosts}  # fmt: skip
        context = RoundContext(now=100.0, lookahead_s=5.0, bandwidth_bytes_per_s=1e8,
                               pair_rates={(a, b): 25 * MB for a in hosts for b in hosts if a != b},
                               remote_rate_bytes_per_s=25 * MB, host_of={w: w[6:8] for w in pool}, link_load=load)
        return [(p.key, p.worker) for p in plan_dispatch(consumers, pool, PolicyConfig(), context)]

    assert placed(None) == [("c0", "tcp://h1:1"), ("c1", "tcp://h2:1")]
    load = LinkLoad()
    assert placed(load) == [("c0", "tcp://h1:1"), ("c1", "tcp://h0:1")]
    assert {h: list(r) for h, r in load.by_host.items()} == {"h0": [(100.0, 104.0)], "h1": [(100.0, 104.0)]}  # the one remote read, on both ends


def test_link_load_delays_by_overlap_at_most_the_read_per_planned_read_and_forgets_ended_reads():
    load = LinkLoad()
    for start in (0.0, 0.0, 3.0):
        load.add("h0", "h1", start, 2.0)
    load.add("h1", "h1", 0.0, 5.0)  # a local read uses no link
    assert load.delay_s("h0", "h2", 0.0, 1.0) == pytest.approx(2.0)  # two reads fully over it: 1 s each
    assert load.delay_s("h2", "h1", 1.5, 2.0) == pytest.approx(0.5 + 0.5 + 0.5)
    assert load.delay_s("h2", "h3", 0.0, 1.0) == 0.0
    load.prune(now=2.5)
    assert {h: list(r) for h, r in load.by_host.items()} == {"h0": [(3.0, 5.0)], "h1": [(3.0, 5.0)]}


def test_learned_rates_price_stored_inputs_at_the_link_not_at_the_configured_rate():
    reader = TaskInfo("r", 1.0, input_locations=[("h0", 100 * MB)])
    config = PolicyConfig()  # storage_bandwidth_bytes_per_s: 100 MB/s
    learned = RoundContext(now=0.0, lookahead_s=0.05, bandwidth_bytes_per_s=1e8, pair_rates={("h2", "h1"): 25 * MB},
                           remote_rate_bytes_per_s=25 * MB, host_of={})
    assert estimate_finish(reader, workers()[1], config).storage_s == pytest.approx(1.0)
    assert estimate_finish(reader, workers()[1], config, learned).storage_s == pytest.approx(4.0)  # the links' median
    assert estimate_finish(reader, workers()[0], config, learned).storage_s == 0.0


def test_speeds_and_transfer_rates_share_the_file_without_losing_each_other(tmp_path):
    url = speeds_url(str(tmp_path / "models"))
    save_host_speeds(url, {"10.0.0.1": {"log_slowness": 0.7, "n": 20}})
    save_host_speeds(url, {"10.0.0.1->10.0.0.2": {"log_rate": 17.0, "n": 16}}, section=TRANSFER_SECTION)
    save_host_speeds(url, {"10.0.0.2": {"log_slowness": 0.0, "n": 20}})
    assert set(load_host_speeds(url)) == {"10.0.0.1", "10.0.0.2"}
    assert load_host_speeds(url, TRANSFER_SECTION) == {"10.0.0.1->10.0.0.2": {"log_rate": 17.0, "n": 16}}


def test_a_tasks_reported_reads_reach_the_scheduler_in_its_metadata():
    from distributed import SchedulerPlugin
    from distributed.utils_test import gen_cluster

    from daskflow.contracts import TRANSFER_METADATA_KEY
    from daskflow.replay.hosted import _report_reads

    class Capture(SchedulerPlugin):
        def __init__(self):
            self.seen = []

        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "memory" and kwargs.get("metadata"):
                self.seen.append(kwargs["metadata"].get(TRANSFER_METADATA_KEY))

    def reader():
        _report_reads([["198.18.0.10", 5 * MB, 0.2]])
        return 1

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)], timeout=30)
    async def run(c, s, a):
        capture = Capture()
        s.add_plugin(capture, name="capture")
        assert await c.submit(reader) == 1
        assert [[list(read) for read in reads] for reads in capture.seen] == [[["198.18.0.10", 5 * MB, 0.2]]]  # (msgpack: tuples)
        _report_reads([["x", 1, 1.0]])  # outside a task: nothing, no error

    run()


def test_the_dispatcher_learns_pair_rates_from_reported_reads_and_prices_the_round_with_them():
    from tests.steering.fakes import FakeClock
    from tests.steering.test_slow_hosts import bed

    plugin, scheduler = bed(FakeClock(10.0))
    dispatcher, state = plugin.dispatcher, plugin.state
    for worker in scheduler.running:
        dispatcher.facts_of(worker)
    dispatcher.observe_transfers("tcp://h1:1", [["h0", 50 * MB, 2.0], ["bad"], ["h1", 10, 0.1]])
    assert state.transfers.rate("h0", "h1") == pytest.approx(25 * MB)
    context = dispatcher.round_context(scheduler, 10.0)
    assert context.pair_rates == {("h0", "h1"): pytest.approx(25 * MB)}
    assert context.host_of == {"tcp://h0:1": "h0", "tcp://h1:1": "h1"}
    dispatcher.observe_transfers(None, [["h0", 50 * MB, 2.0]])  # no worker: ignored
    dispatcher.observe_transfers("tcp://h1:1", "not a list")
