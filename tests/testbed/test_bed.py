"""The test bed on real namespaces, links and processes (root only; CI runs as root).

Every test here brings up at most 2 hosts; the shared ``bed`` (2 hosts x 1
worker, 40 Mbit/s links, 5 ms latency, host h1 at half speed) is built once
for the module and torn down by the last test, which asserts nothing is left.
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

from daskflow.testbed import (
    TestBed,
    TestBedError,
    cleanup_stale,
    netns,
    processes,
    unavailable_reason,
)

REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

LINK_MBIT = 40.0  # 5 MB/s
LATENCY_MS = 5.0
REPO = pathlib.Path(__file__).resolve().parents[2]


def leftovers(token: str) -> dict:
    """Everything on this machine that carries ``token``."""
    return {
        "netns": [n for n in netns.list_netns() if n.startswith(token)],
        "links": [link for link in netns.list_links() if link.startswith(token)],
        "pids": processes.processes_with_token(token),
        "temp_dirs": [p.name for p in pathlib.Path(tempfile.gettempdir()).iterdir() if p.name.startswith(token)],
    }


NOTHING = {"netns": [], "links": [], "pids": [], "temp_dirs": []}


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    home = tmp_path_factory.mktemp("daskflow-home")  # the preloaded recorder writes history there
    config = {"distributed.worker.profile.enabled": False, "daskflow.home": str(home)}
    with TestBed(hosts=2, workers_per_host=1, link_mbit=LINK_MBIT, link_latency_ms=LATENCY_MS,
                 host_speeds=[1.0, 0.5], slowdown="1@3600:2", config=config) as bed:  # fmt: skip
        yield bed


@pytest.fixture(scope="module")
def client(bed):
    return bed.client()


def worker_on(client, bed, host_name: str) -> str:
    [address] = [a for a in client.scheduler_info(n_workers=-1)["workers"] if bed.host_of_address(a) == host_name]
    return address


def report_host():
    import distributed

    from daskflow.testbed import current_host, current_speed

    host = current_host()
    return {"address": distributed.get_worker().address, "host": os.environ.get("DASKFLOW_TESTBED_HOST"),
            "storage": os.environ.get("DASKFLOW_TESTBED_STORAGE"), "speed": current_speed(),
            "config_address": host.address if host else None}  # fmt: skip


def test_each_worker_runs_in_its_hosts_namespace(bed, client):
    addresses = {h.name: h.address for h in bed.hosts}
    assert all(a.startswith(("198.18.", "198.19.")) for a in addresses.values())
    assert bed.scheduler_address.split("://")[1].startswith(bed.names.hub_address + ":")
    seen = {}
    for worker in client.scheduler_info(n_workers=-1)["workers"]:
        info = client.submit(report_host, workers=[worker], pure=False).result(timeout=30)
        seen[info["host"]] = info
        assert info["address"] == worker
        assert info["address"].split("://")[1].rsplit(":", 1)[0] == addresses[info["host"]] == info["config_address"]
    assert sorted(seen) == ["h0", "h1"]
    assert seen["h0"]["speed"] == 1.0 and seen["h1"]["speed"] == 0.5
    assert seen["h1"]["storage"] == bed.hosts[1].storage_dir


def test_scheduler_is_never_told_host_speeds(client):
    def testbed_env():
        return sorted(k for k in os.environ if k.startswith("DASKFLOW_TESTBED"))

    assert client.run_on_scheduler(testbed_env) == []
    assert all(env == ["DASKFLOW_TESTBED_CONFIG", "DASKFLOW_TESTBED_HOST", "DASKFLOW_TESTBED_SPEED",
                       "DASKFLOW_TESTBED_STORAGE"] for env in client.run(testbed_env).values())  # fmt: skip


def test_workers_get_the_projects_worker_plugins_and_config(bed, client):
    """The scheduler preload registers the peak-memory worker plugin; the given config reaches workers."""
    import dask.config

    def facts(dask_worker):
        return sorted(dask_worker.plugins), dask.config.get("daskflow.home"), dask.config.get("distributed.worker.profile.enabled")

    for plugins, home, profile in client.run(facts).values():
        assert "daskflow-peak-memory" in plugins
        assert home == bed.config["daskflow.home"] and profile is False


def test_task_on_one_host_reads_another_hosts_storage_over_http(bed, client):
    payload = os.urandom(50_000)
    (pathlib.Path(bed.hosts[1].storage_dir) / "inputs").mkdir()
    (pathlib.Path(bed.hosts[1].storage_dir) / "inputs" / "part-0.bin").write_bytes(payload)

    def read_from(host_name, relpath):
        import fsspec

        from daskflow.testbed import host_url

        with fsspec.open(host_url(host_name, relpath), "rb") as f:
            return f.read()

    data = client.submit(read_from, "h1", "inputs/part-0.bin", workers=[worker_on(client, bed, "h0")], pure=False)
    assert data.result(timeout=30) == payload
    from daskflow.testbed.measure import read_access_log, storage_reads

    def read_by_h0_from_h1():
        logs = {name: read_access_log(path) for name, path in bed.access_logs().items()}
        return storage_reads(logs, {h.address: h.name for h in bed.hosts}).get(("h1", "h0"), 0)

    deadline = time.monotonic() + 10  # the server logs a response just after sending it
    while read_by_h0_from_h1() < len(payload) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_by_h0_from_h1() >= len(payload)


def test_a_gathered_file_is_a_copy_later_reads_on_that_host_are_local(bed, client):
    """The replay body reads h1's output on h0 twice: the first crosses the link and leaves a replica, the second
    reads that replica (nothing more in h1's access log) and reports a local read."""
    from daskflow.replay.hosted import StoredOutput, hosted_task, replica_relpath
    from daskflow.testbed.measure import read_access_log, storage_reads

    nbytes = 300_000
    source = pathlib.Path(bed.hosts[1].storage_dir) / "outputs" / "rep" / "p.bin"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"\1" * nbytes)
    handle = StoredOutput("h1", "outputs/rep/p.bin", nbytes)

    def read_by_h0_from_h1():
        logs = {name: read_access_log(path) for name, path in bed.access_logs().items()}
        return storage_reads(logs, {h.address: h.name for h in bed.hosts}).get(("h1", "h0"), 0)

    def run_and_report(relpath):
        import distributed

        from daskflow.contracts import TRANSFER_METADATA_KEY

        from distributed.worker import thread_state

        hosted_task(0.0, 0, 10, relpath, None, handle, replica_scope="rep")
        task = distributed.get_worker().state.tasks[thread_state.key]
        return [(source, n) for source, n, _ in task.metadata[TRANSFER_METADATA_KEY]]

    def once(relpath):
        return client.submit(run_and_report, relpath, workers=[worker_on(client, bed, "h0")], pure=False).result(30)

    before = read_by_h0_from_h1()
    assert once("outputs/rep/c1.bin") == [(bed.hosts[1].address, nbytes)]
    deadline = time.monotonic() + 10  # the server logs a response just after sending it
    while read_by_h0_from_h1() < before + nbytes and time.monotonic() < deadline:
        time.sleep(0.05)
    after_first = read_by_h0_from_h1()
    assert after_first >= before + nbytes
    replica = pathlib.Path(bed.hosts[0].storage_dir) / replica_relpath("h1", "outputs/rep/p.bin", "rep")
    assert replica.stat().st_size == nbytes
    source.unlink()  # only the copy can answer now
    assert once("outputs/rep/c2.bin") == [(bed.hosts[0].address, nbytes)]  # a local read
    time.sleep(0.5)
    assert read_by_h0_from_h1() == after_first


def test_link_bandwidth_bounds_http_and_worker_transfers(bed, client):
    """Moving N MB across a 40 Mbit/s link takes >= N/rate (loosely: half of it). A setup property."""
    n_bytes = 4_000_000
    theoretical_s = n_bytes * 8 / (LINK_MBIT * 1e6)
    (pathlib.Path(bed.hosts[1].storage_dir) / "big.bin").write_bytes(os.urandom(n_bytes))

    def timed_read(url):
        import time

        import fsspec

        start = time.perf_counter()
        with fsspec.open(url, "rb") as f:
            size = len(f.read())
        return size, time.perf_counter() - start

    h0, h1 = worker_on(client, bed, "h0"), worker_on(client, bed, "h1")
    size, elapsed = client.submit(timed_read, bed.hosts[1].url + "big.bin", workers=[h0], pure=False).result(60)
    assert size == n_bytes and elapsed >= 0.5 * theoretical_s

    from daskflow.testbed import measure

    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    produced = client.submit(os.urandom, n_bytes, workers=[h1], pure=False)
    consumed = client.submit(len, produced, workers=[h0], pure=False)
    assert consumed.result(timeout=60) == n_bytes
    rows = measure.flatten_worker_rows(client.run(measure.incoming_transfers))
    moved = measure.bytes_between_hosts(rows, {h.address: h.name for h in bed.hosts})
    assert moved.get(("h1", "h0"), 0) >= n_bytes
    durations = [e["duration"] for log in client.run(lambda dask_worker: list(dask_worker.transfer_incoming_log)).values()
                 for e in log if e["total"] >= n_bytes]  # fmt: skip
    assert durations and max(durations) >= 0.5 * theoretical_s


def test_file_server_adds_link_latency(bed, client):
    (pathlib.Path(bed.hosts[1].storage_dir) / "tiny.txt").write_text("x")

    def timed_small_reads(url, n):
        import time
        import urllib.request

        start = time.perf_counter()
        for _ in range(n):
            urllib.request.urlopen(url, timeout=10).read()
        return (time.perf_counter() - start) / n

    per_read_s = client.submit(timed_small_reads, bed.hosts[1].url + "tiny.txt", 5,
                               workers=[worker_on(client, bed, "h0")], pure=False).result(30)  # fmt: skip
    assert per_read_s >= 0.5 * 4 * LATENCY_MS / 1000  # two links, there and back


def test_slowdown_clock_is_shared_with_the_hosts(bed):
    epoch = bed.restart_clock(1234.5)
    from daskflow.testbed.hostconfig import read_clock

    assert read_clock(bed.hosts[0].config.clock_path) == epoch == 1234.5


def test_teardown_leaves_no_namespace_link_or_process(bed, client):
    started = [p.pid for p in bed.state.processes]
    children = [c.pid for pid in started for c in psutil.Process(pid).children(recursive=True)]
    assert children, "each worker nanny should have spawned a worker process"
    assert leftovers(bed.token)["netns"]
    bed.close()
    bed.close()  # idempotent
    assert leftovers(bed.token) == NOTHING
    assert not any(processes.pid_alive(pid) for pid in started + children)
    assert not any(bed.names.hub_address == a.split("/")[0] for a in _root_addresses())


def _root_addresses():
    import json

    out = subprocess.run(["ip", "-json", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return [i["local"] for e in json.loads(out) for i in e.get("addr_info", [])]


def test_two_test_beds_at_once_do_not_collide():
    with TestBed(hosts=1, workers_per_host=0, scheduler=False) as first, \
            TestBed(hosts=1, workers_per_host=0, scheduler=False) as second:
        assert first.token != second.token
        assert first.names.network != second.names.network
        assert first.hosts[0].netns != second.hosts[0].netns
        for one in (first, second):
            (pathlib.Path(one.hosts[0].storage_dir) / "who").write_text(one.token)
        import urllib.request

        for one in (first, second):  # each server answers on its own address with its own storage
            assert urllib.request.urlopen(one.hosts[0].url + "who", timeout=10).read().decode() == one.token
        first.close()
        assert leftovers(first.token) == NOTHING
        assert urllib.request.urlopen(second.hosts[0].url + "who", timeout=10).read().decode() == second.token
    assert leftovers(second.token) == NOTHING


def test_failure_during_startup_tears_down_what_was_built():
    bed = TestBed(hosts=2, workers_per_host=1, preload="daskflow_no_such_preload_module", start_timeout_s=30)
    with pytest.raises(TestBedError, match="scheduler"):
        bed.start()
    assert leftovers(bed.token) == NOTHING


_OWNER = textwrap.dedent("""
    import sys, time
    from daskflow.testbed import TestBed
    beds = [TestBed(hosts=1, workers_per_host=0, scheduler=sys.argv[1] == "scheduler").start()
            for _ in range(int(sys.argv[2]))]
    print(" ".join(bed.token for bed in beds), flush=True)
    time.sleep(60)
""")


def _owner_process(with_scheduler=False, n_beds=1):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-c", _OWNER, "scheduler" if with_scheduler else "network-only", str(n_beds)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    tokens = proc.stdout.readline().split()
    assert len(tokens) == n_beds, "the owner process did not start its test beds"
    assert all(leftovers(token)["netns"] for token in tokens)
    return proc, tokens


@pytest.mark.parametrize(("signum", "n_beds"), [(signal.SIGINT, 2), (signal.SIGTERM, 1)])
def test_a_signal_to_the_owner_tears_everything_down(signum, n_beds):
    """Ctrl-C with two beds in one process: the handlers chain, both are torn down, then it re-raises."""
    proc, tokens = _owner_process(n_beds=n_beds)
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert proc.returncode != 0  # the signal was re-raised after cleaning up
    for token in tokens:
        assert leftovers(token) == NOTHING


def test_cleanup_stale_removes_what_a_killed_owner_left():
    proc, [token] = _owner_process(with_scheduler=True)
    proc.kill()
    proc.wait(timeout=10)
    left = leftovers(token)
    assert left["netns"] and left["pids"]  # SIGKILL: no chance to clean up; the scheduler is orphaned
    deadline = time.monotonic() + 10
    report = cleanup_stale()
    assert token in report.tokens and report.netns
    while leftovers(token) != NOTHING and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(token) == NOTHING
