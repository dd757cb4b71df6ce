"""Replay on the test bed: the pure parts (data plan, placement of inputs, scale) and the task body off a bed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from daskflow.replay.hosted import (
    StoredOutput,
    auto_data_scale,
    build_hosted_specs,
    external_input_bytes,
    hosted_plan,
    hosted_task,
    parse_input_placement,
    place_inputs,
)
from daskflow.replay.trace import trace_from_dict

pytestmark = pytest.mark.timeout(30)

#   a (reads 1000 B from storage, writes 400)   b (reads 200)
#    \
#     c (reads a's 400 + 100 more from storage)
TRACE = trace_from_dict({"name": "tiny", "tasks": [
    {"id": "a", "category": "load", "runtime_s": 2.0, "input_bytes": 1000, "output_bytes": 400, "parents": []},
    {"id": "b", "category": "load", "runtime_s": 1.0, "input_bytes": 200, "output_bytes": 0, "parents": []},
    {"id": "c", "category": "fit", "runtime_s": 1.0, "input_bytes": 500, "output_bytes": 10, "parents": ["a"]},
]})


def test_external_inputs_are_what_the_parents_do_not_produce():
    assert external_input_bytes(TRACE) == [1000, 200, 100]


def test_inputs_are_placed_round_robin_or_by_seed_reproducibly():
    assert place_inputs([1, 0, 1, 1], 3) == [0, None, 1, 2]
    assert place_inputs([1] * 20, 4, 7) == place_inputs([1] * 20, 4, 7)
    assert set(place_inputs([1] * 50, 4, 7)) == {0, 1, 2, 3}
    assert parse_input_placement("seed:3") == 3
    with pytest.raises(ValueError):
        parse_input_placement("random")


def test_auto_scale_makes_moving_the_inputs_cost_the_runtime_in_total():
    scale = auto_data_scale(TRACE, bandwidth_bytes_per_s=100.0)
    # reads: a 1000, b 200, c 100 + a's 400 = 1700 bytes; runtime of readers 4 s at 100 B/s -> 400 / 1700
    assert scale == pytest.approx(400 / 1700)
    plan = hosted_plan(TRACE, 2, 0.2)
    assert plan.external_bytes == [200, 40, 20] and plan.output_bytes == [80, 0, 2]
    assert plan.external_hosts == [0, 1, 0]
    assert [f[:2] for f in plan.input_files()] == [(0, "inputs/task-0.bin"), (1, "inputs/task-1.bin"), (0, "inputs/task-2.bin")]


def test_specs_say_where_external_inputs_live_in_the_schedulers_host_identity():
    plan = hosted_plan(TRACE, 2, 1.0)
    specs, keys, _ = build_hosted_specs(TRACE, "r" * 32, 0.0, plan, ["h0", "h1"], ["198.18.7.10", "198.18.7.11"])
    assert specs[1].annotations["input_locations"] == [{"host": "198.18.7.11", "bytes": 200}]
    assert specs[2].annotations["input_bytes"] == 500 and specs[2].dependencies == (keys[0],)
    assert specs[2].args[4] == ("h0", "inputs/task-2.bin")


def test_the_task_body_reads_its_inputs_writes_its_output_and_reports_its_size(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "x.bin").write_bytes(b"\0" * 10)
    parent = hosted_task(0.0, 0, 100, "outputs/p.bin", None)
    out = hosted_task(0.01, 0, 5000, "outputs/c.bin", ("", "inputs/x.bin"), parent)
    assert isinstance(out, StoredOutput) and out.nbytes == 5000 and out.__sizeof__() == 5000
    assert (tmp_path / "outputs" / "c.bin").stat().st_size == 5000


@pytest.mark.parametrize("args, message", [
    (["--hosts", "2", "--host-speeds", "1,x"], "comma-separated"),
    (["--hosts", "2", "--host-speeds", "1,1,1"], "2 positive factors"),
    (["--hosts", "2", "--slowdown", "5@1:2"], "does not exist"),
    (["--hosts", "2", "--data-scale", "lots"], "'auto' or a number"),
    (["--hosts", "2", "--input-placement", "random"], "round-robin"),
])
def test_bad_test_bed_options_are_one_line_errors(args, message):
    from daskflow.cli.bench import bench

    result = CliRunner().invoke(bench, ["replay", "skewed-bag:1:4", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- replicas: a gathered file is a copy
#
# Two emulated hosts as two storage directories; the "remote" one is read through fsspec with a file:// base URL
# (the same code path as the test bed's HTTP file servers, without a network).


def _two_hosts(tmp_path):
    from daskflow.testbed.hostconfig import HostConfig

    h0, h1 = tmp_path / "h0", tmp_path / "h1"
    for d in (h0, h1):
        d.mkdir()
    urls = {"h0": h0.as_uri() + "/", "h1": h1.as_uri() + "/"}
    mine = HostConfig(name="h1", index=1, address="198.18.7.11", storage_dir=str(h1), url=urls["h1"],
                      host_urls={**urls})  # fmt: skip
    return h0, h1, mine


def _sparse(path, nbytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(nbytes)


def test_a_remote_read_leaves_a_replica_and_the_next_read_there_is_local(tmp_path):
    from daskflow.replay.hosted import _read, replica_relpath

    h0, h1, mine = _two_hosts(tmp_path)
    _sparse(h0 / "outputs" / "r1" / "task-0.bin", 3_000_000)
    assert _read("h0", "outputs/r1/task-0.bin", mine, str(h1), "r1") == (3_000_000, False)
    replica = h1 / replica_relpath("h0", "outputs/r1/task-0.bin", "r1")
    assert replica.stat().st_size == 3_000_000
    assert replica.stat().st_blocks * 512 < 3_000_000  # sparse, like the outputs
    (h0 / "outputs" / "r1" / "task-0.bin").unlink()  # the source is gone: only the copy can answer now
    assert _read("h0", "outputs/r1/task-0.bin", mine, str(h1), "r1") == (3_000_000, True)
    assert [p.name for p in replica.parent.iterdir()] == ["task-0.bin"]  # no temp file left behind


def test_replicas_are_per_run_and_per_source_host(tmp_path):
    from daskflow.replay.hosted import _read

    h0, h1, mine = _two_hosts(tmp_path)
    _sparse(h0 / "inputs" / "task-0.bin", 10)
    assert _read("h0", "inputs/task-0.bin", mine, str(h1), "run-a") == (10, False)
    _sparse(h0 / "inputs" / "task-0.bin", 20)  # the next trace's input at the same path
    assert _read("h0", "inputs/task-0.bin", mine, str(h1), "run-b") == (20, False)
    assert _read("h0", "inputs/task-0.bin", mine, str(h1), "run-b") == (20, True)
    _sparse(h1 / "inputs" / "task-0.bin", 5)  # this host's own file at that path is not a replica of h0's
    assert _read("h1", "inputs/task-0.bin", mine, str(h1), "run-b") == (5, True)


def test_two_tasks_of_one_host_reading_the_same_file_at_once_both_get_all_of_it(tmp_path):
    import threading

    from daskflow.replay.hosted import _read, replica_relpath

    h0, h1, mine = _two_hosts(tmp_path)
    _sparse(h0 / "outputs" / "x.bin", 8 * 2**20)
    results, barrier = [], threading.Barrier(4)

    def reader():
        barrier.wait()
        results.append(_read("h0", "outputs/x.bin", mine, str(h1), "r")[0])

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [8 * 2**20] * 4
    replica = h1 / replica_relpath("h0", "outputs/x.bin", "r")
    assert replica.stat().st_size == 8 * 2**20
    assert [p.name for p in replica.parent.iterdir()] == ["x.bin"]


def test_the_task_reports_a_replica_hit_as_a_local_read(tmp_path, monkeypatch):
    import daskflow.replay.hosted as hosted
    import daskflow.testbed.hostconfig as hostconfig

    h0, h1, mine = _two_hosts(tmp_path)
    monkeypatch.setattr(hostconfig, "current_host", lambda environ=None: mine)
    monkeypatch.setattr(hostconfig, "current_duration_s", lambda work_s, start=None, environ=None: work_s)
    reported = []
    monkeypatch.setattr(hosted, "_report_reads", reported.append)
    _sparse(h0 / "outputs" / "r" / "p.bin", 4000)
    parent = StoredOutput("h0", "outputs/r/p.bin", 4000)
    hosted_task(0.0, 0, 10, "outputs/r/c1.bin", None, parent, replica_scope="r")
    hosted_task(0.0, 0, 10, "outputs/r/c2.bin", None, parent, replica_scope="r")
    first, second = reported
    assert [(source, nbytes) for source, nbytes, _ in first] == [("h0", 4000)]  # h0 has no URL host here: its name
    assert [(source, nbytes) for source, nbytes, _ in second] == [("198.18.7.11", 4000)]  # this host's own address


def test_specs_scope_the_replicas_by_run():
    plan = hosted_plan(TRACE, 2, 1.0)
    specs, _, _ = build_hosted_specs(TRACE, "r" * 32, 0.0, plan, ["h0", "h1"], ["198.18.7.10", "198.18.7.11"])
    assert {s.kwargs["replica_scope"] for s in specs} == {"r" * 8}
