"""Replay a trace on the multi-host test bed: data with a location, hosts with speeds.

Design note
-----------
On one host a placement can only win ordering and queueing; on the test bed
(:class:`daskflow.testbed.TestBed`) it can also win locality and speed. A
replayed trace there behaves like a job on an HDFS-like cluster:

* **external inputs** — every task whose declared input is larger than what
  its parents produce reads the difference from a file placed before the run
  on one host (:func:`place_inputs`: round-robin or by a seed), and its
  annotation says where (``input_locations``, in the identity the scheduler
  uses for workers: the host's IP), so the steering policy's storage cost is
  real;
* **outputs** — a task writes its scaled output bytes to the storage
  directory of the host that ran it and returns a small
  :class:`StoredOutput` handle whose ``sizeof`` is those bytes (so stock Dask
  and the policy alike see the data's size, and who holds it);
* **reads** — a task reads each input from its own host's disk, or over the
  network from the producing host's file server (fsspec HTTP) when remote:
  those reads cross the shaped links and take the slot's time; it reports
  per source host the bytes and seconds in its metadata (the steering
  plugin learns per-host-pair read rates from them);
* **replicas** — a remote read leaves a copy in the reading host's storage
  (``replicas/<run>/<source host>/<path>``, sparse, written atomically), and
  later reads of that file on that host are local: as on real Dask, where a
  worker that gathered a dependency holds a replica and ``who_has`` says so.
  Per host, not per worker (a host's workers share its disk and loopback);
  a replica hit is reported as a local read. Reads still go to the
  producing host, not to the nearest replica (the handle names it);
* **speed** — the task then sleeps ``current_duration_s(work)``, the
  emulated duration on its host (known only to the test bed's workers).

Bytes are scaled so that moving the tasks' inputs across one link costs, in
total, about their runtime (:func:`auto_data_scale`, or a fixed ``data_scale``;
each file is capped at :data:`FILE_CAP_BYTES`).
Files are sparse (``truncate``): only the network pays for the bytes.
:func:`hosted_plan` is pure; :func:`hosted_task` runs on workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from daskflow.replay.trace import Trace

__all__ = [
    "HostedPlan",
    "HostedRun",
    "StoredOutput",
    "auto_data_scale",
    "external_input_bytes",
    "hosted_plan",
    "hosted_task",
    "parse_input_placement",
    "place_inputs",
    "testbed_cluster",
]

#: One stored file is at most this big (sparse, but read over the links in full).
FILE_CAP_BYTES = 256 * 2**20
_CHUNK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class StoredOutput:
    """Where a replayed task's output lives: host name, path in its storage, bytes (what ``sizeof`` reports)."""

    host: str
    relpath: str
    nbytes: int

    def __sizeof__(self) -> int:
        return int(self.nbytes)


def external_input_bytes(trace: Trace) -> list[int]:
    """Per task, the declared input bytes its parents do not produce (read from stored files)."""
    output = {task.id: task.output_bytes for task in trace.tasks}
    return [max(0, int(task.input_bytes) - sum(output[p] for p in task.parents)) for task in trace.tasks]


def parse_input_placement(text: str) -> str | int:
    """``round-robin`` or ``seed:N`` → ``"round-robin"`` or ``N``.

    >>> parse_input_placement("round-robin"), parse_input_placement("seed:7")
    ('round-robin', 7)
    """
    if text == "round-robin":
        return text
    if text.startswith("seed:") and text[5:].lstrip("-").isdigit():
        return int(text[5:])
    raise ValueError(f"input placement {text!r}: expected 'round-robin' or 'seed:N' (N an integer)")


def place_inputs(external: Sequence[int], n_hosts: int, placement: str | int = "round-robin") -> list[int | None]:
    """The host index holding each task's external input (None: the task has none).

    >>> place_inputs([5, 0, 5, 5], 2)
    [0, None, 1, 0]
    """
    if n_hosts < 1:
        raise ValueError(f"place_inputs: n_hosts must be >= 1, got {n_hosts}")
    rng = random.Random(placement) if placement != "round-robin" else None
    hosts: list[int | None] = []
    count = 0
    for nbytes in external:
        if nbytes <= 0:
            hosts.append(None)
            continue
        hosts.append(rng.randrange(n_hosts) if rng is not None else count % n_hosts)
        count += 1
    return hosts


def auto_data_scale(trace: Trace, bandwidth_bytes_per_s: float, ratio: float = 1.0) -> float:
    """Bytes scale at which moving the tasks' inputs over one link takes ``ratio`` × their runtime, in total.

    ``trace`` is already time-scaled. A task reads its external input and
    its parents' outputs; only tasks that read something count. With no
    bytes at all the scale is 0 (no data).

    >>> from daskflow.replay.trace import trace_from_dict
    >>> t = trace_from_dict({"name": "t", "tasks": [{"id": "a", "category": "c", "runtime_s": 2.0,
    ...     "input_bytes": 100, "output_bytes": 0, "parents": []}]})
    >>> auto_data_scale(t, bandwidth_bytes_per_s=50.0)
    1.0
    """
    external = external_input_bytes(trace)
    output = {task.id: task.output_bytes for task in trace.tasks}
    reads = [external[i] + sum(output[p] for p in task.parents) for i, task in enumerate(trace.tasks)]
    read_bytes = sum(reads)
    runtime = sum(task.runtime_s for task, nbytes in zip(trace.tasks, reads) if nbytes > 0)
    return ratio * runtime * bandwidth_bytes_per_s / read_bytes if read_bytes > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class HostedPlan:
    """Per task of a (time-scaled) trace: its external input (host index, bytes) and its output bytes, scaled."""

    data_scale: float
    external_bytes: list[int]
    external_hosts: list[int | None]
    output_bytes: list[int]

    def input_files(self) -> list[tuple[int, str, int]]:
        """``(host index, relative path, bytes)`` of every external input file to create before the run."""
        return [(host, f"inputs/task-{i}.bin", self.external_bytes[i])
                for i, host in enumerate(self.external_hosts) if host is not None and self.external_bytes[i] > 0]


def hosted_plan(trace: Trace, n_hosts: int, data_scale: float, placement: str | int = "round-robin") -> HostedPlan:
    """Scale the trace's bytes by ``data_scale`` (each file capped) and place its external inputs (pure)."""
    if data_scale < 0:
        raise ValueError(f"data_scale must be >= 0, got {data_scale}")
    external = [min(int(b * data_scale), FILE_CAP_BYTES) for b in external_input_bytes(trace)]
    outputs = [min(int(t.output_bytes * data_scale), FILE_CAP_BYTES) for t in trace.tasks]
    return HostedPlan(data_scale, external, place_inputs(external, n_hosts, placement), outputs)


# --------------------------------------------------------------------------- on the workers


def replica_relpath(source_host: str, relpath: str, scope: str = "") -> str:
    """Where a copy of ``source_host``'s file ``relpath`` lives in the reading host's storage.

    ``scope`` (the run) keeps one run's copies from serving another's (the
    external input files keep their paths across runs).

    >>> replica_relpath("h0", "outputs/ab12/task-3.bin", "ab12")
    'replicas/ab12/h0/outputs/ab12/task-3.bin'
    >>> replica_relpath("h1", "inputs/task-0.bin")
    'replicas/h1/inputs/task-0.bin'
    """
    return "/".join(part for part in ("replicas", scope, source_host, relpath) if part)


def _read_file(path: str) -> int:
    total = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            total += len(chunk)
    return total


def _write_replica(path: str, nbytes: int) -> None:
    """A sparse copy of ``nbytes`` at ``path``, atomically (temp + ``os.replace``): readers see all of it or none.

    The temp name is unique per process and thread, so two tasks of one host
    copying the same file at once each write their own and the last rename
    wins (both copies are the same bytes).
    """
    import threading

    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(temp, "wb") as f:
        f.truncate(int(nbytes))  # sparse, like the outputs: the links pay for the bytes, not the disk
    os.replace(temp, path)


def _read(host: str, relpath: str, mine, storage_dir: str, scope: str = "") -> tuple[int, bool]:
    """Read one stored file in full; return ``(bytes, local)``.

    Local disk when it is this host's; else this host's replica of it when
    an earlier read here left one (``replicas/<scope>/<host>/<relpath>``);
    else over HTTP from ``host``'s file server, leaving a replica behind — a
    fetched dependency is a copy on the reading host, as a Dask worker that
    gathered it holds it (per host: the host's workers share its disk).
    """
    if mine is None or host == mine.name:
        return _read_file(os.path.join(storage_dir, relpath)), True
    replica = os.path.join(storage_dir, replica_relpath(host, relpath, scope))
    try:
        return _read_file(replica), True
    except FileNotFoundError:
        pass
    import fsspec

    from daskflow.testbed.hostconfig import host_url

    total = 0
    with fsspec.open(host_url(host, relpath, mine.host_urls), "rb", block_size=_CHUNK_BYTES) as f:
        while chunk := f.read(_CHUNK_BYTES):
            total += len(chunk)
    _write_replica(replica, total)
    return total, False


def _host_address(name: str, mine) -> str:
    """A test-bed host's address (the identity the scheduler uses for its workers), from its file server's URL."""
    if mine is None:
        return name
    if name == mine.name:
        return mine.address
    import urllib.parse

    url = mine.host_urls.get(name)
    return (urllib.parse.urlsplit(url).hostname if url else None) or name


def _report_reads(reads: list[list]) -> None:
    """Put this task's own reads into its metadata (:data:`~daskflow.contracts.TRANSFER_METADATA_KEY`).

    The metadata dict travels to the scheduler with the task's result (no
    extra message), where the steering plugin learns per-host-pair read rates
    from it (``scheduler_plugins.policy.transfer``). Outside a worker, or when
    the running task's key is not known, nothing is reported.
    """
    try:
        from distributed import get_worker
        from distributed.worker import thread_state  # the running task's key (set by the worker's executor)

        worker = get_worker()
        key = getattr(thread_state, "key", None)
        task = worker.state.tasks.get(key) if key is not None else None
    except (ValueError, AttributeError, ImportError):
        return
    if task is not None:
        from daskflow.contracts import TRANSFER_METADATA_KEY

        task.metadata[TRANSFER_METADATA_KEY] = reads


def hosted_task(duration_s: float, memory_bytes: int, output_bytes: int, output_relpath: str,
                external: tuple[str, str] | None, *upstream: Any, replica_scope: str = "") -> StoredOutput:  # fmt: skip
    """What a replayed task does on a test-bed worker (see the module note).

    ``external`` is ``(host name, relative path)`` of its external input;
    ``upstream`` are the parents' :class:`StoredOutput` handles (anything
    else is ignored). Outside a test bed everything is local. A remote read
    leaves a replica on this host (``replica_scope``: the run), so later
    reads of it here are local; the metadata reports a replica hit as a read
    from this host, not from the source.
    """
    from daskflow.testbed.hostconfig import current_duration_s, current_host

    mine = current_host()
    storage_dir = mine.storage_dir if mine is not None else os.environ.get("TMPDIR", "/tmp")
    reads: dict[str, list[float]] = {}  # source host address -> [bytes, seconds]
    for item in ([external] if external else []) + [(u.host, u.relpath) for u in upstream if isinstance(u, StoredOutput)]:
        began = time.perf_counter()
        nbytes, local = _read(item[0], item[1], mine, storage_dir, replica_scope)
        source = mine.address if local and mine is not None else _host_address(item[0], mine)
        entry = reads.setdefault(source, [0.0, 0.0])
        entry[0] += nbytes
        entry[1] += time.perf_counter() - began
    if mine is not None and reads:
        _report_reads([[source, int(nbytes), round(seconds, 6)] for source, (nbytes, seconds) in reads.items()])
    start_wall = time.time()
    start = time.perf_counter()
    buffer = None
    if memory_bytes > 0:
        import numpy as np

        buffer = np.empty(int(memory_bytes), dtype=np.uint8)
        buffer[::4096] = 1
    remaining = current_duration_s(float(duration_s), start_wall) - (time.perf_counter() - start)
    if remaining > 0:
        time.sleep(remaining)
    del buffer
    path = os.path.join(storage_dir, output_relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "wb") as f:
        f.truncate(int(output_bytes))  # sparse: the links pay for the bytes, not the disk
    os.replace(temp, path)
    return StoredOutput(mine.name if mine is not None else "", output_relpath, int(output_bytes))


def write_input_files(plan: HostedPlan, storage_dirs: Sequence[str]) -> None:
    """Create the external input files (sparse) in each host's storage directory."""
    for host, relpath, nbytes in plan.input_files():
        path = os.path.join(storage_dirs[host], relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(nbytes)


def build_hosted_specs(trace: Trace, run_id: str, memory_scale: float, plan: HostedPlan,
                       host_names: Sequence[str], host_ips: Sequence[str]):  # fmt: skip
    """The replay graph of ``trace`` on the test bed: :func:`hosted_task` per trace task (see the module note)."""
    from daskflow.contracts import task_annotation
    from daskflow.daskgraph import TaskSpec
    from daskflow.replay.trace import sanitize_category

    run8 = run_id[:8]
    categories = [sanitize_category(task.category) for task in trace.tasks]
    keys = [f"{category}-{run8}-{i}" for i, category in enumerate(categories)]
    key_of = {task.id: key for task, key in zip(trace.tasks, keys)}
    output_of = {task.id: plan.output_bytes[i] for i, task in enumerate(trace.tasks)}
    specs = []
    for i, (task, key, category) in enumerate(zip(trace.tasks, keys, categories)):
        memory = int((task.memory_bytes or 0) * memory_scale)
        host = plan.external_hosts[i]
        external = (host_names[host], f"inputs/task-{i}.bin") if host is not None else None
        locations = [{"host": host_ips[host], "bytes": plan.external_bytes[i]}] if host is not None else []
        annotations = task_annotation(
            run_id=run_id, kind="replay", category=category,
            tags={"trace": trace.name, "trace_category": task.category, "trace_task": task.id},
            input_bytes=plan.external_bytes[i] + sum(output_of[p] for p in task.parents),
            n_inputs=len(task.parents) + (1 if external else 0), input_locations=locations,
            true_duration_s=float(task.runtime_s), true_peak_memory_bytes=memory,
        )  # fmt: skip
        specs.append(TaskSpec(
            key=key, func=hosted_task,
            args=(float(task.runtime_s), memory, plan.output_bytes[i], f"outputs/{run8}/task-{i}.bin", external),
            kwargs={"replica_scope": run8},
            dependencies=tuple(key_of[p] for p in task.parents), annotations=annotations,
        ))  # fmt: skip
    return specs, keys, categories


def heft_makespan_s(trace: Trace, plan: HostedPlan, worker_hosts: Sequence[int], host_speeds: Sequence[float],
                    link_mbit: float | None, *, contended: bool = False, slowdown: Any = None) -> float:  # fmt: skip
    """The speed- and transfer-aware clairvoyant makespan of this hosted replay (see ``simulate.heft_schedule``).

    ``contended``: the bed's links as they are — each host one shaped link
    each way, shared by its concurrent reads, and a file read onto a host is
    a replica there (``link_contention`` and ``replicas``). Without it every
    read runs at the full link rate and every consumer pays again (the
    original number, kept for comparison). ``slowdown``: the bed's
    :class:`~daskflow.testbed.hostconfig.Slowdown` as the run sees it
    (seconds after submit), known to the simulation in advance.
    """
    from daskflow.replay.simulate import heft_schedule

    bandwidth = link_mbit * 1e6 / 8 if link_mbit else 1e15
    return heft_schedule(
        trace.durations_s(), trace.parent_indices(), plan.output_bytes,
        [host_speeds[h] for h in worker_hosts], list(worker_hosts), bandwidth,
        plan.external_bytes, plan.external_hosts,
        link_contention=contended and bool(link_mbit), replicas=contended,
        slowdown=(slowdown.host, slowdown.at_s, slowdown.factor) if slowdown is not None else None,
    ).makespan_s  # fmt: skip


@dataclasses.dataclass
class HostedRun:
    """One replay's test-bed side: the plan, the files, the clock, the bytes measured per run."""

    bed: Any
    trace: Trace
    plan: HostedPlan
    host_names: list[str]
    host_ips: list[str]
    worker_hosts: list[int]  # host index of each connected worker (for the simulation)
    link_bytes_per_s: float | None
    remote_reads: list[int] = dataclasses.field(default_factory=list)
    external_remote_reads: list[int] = dataclasses.field(default_factory=list)
    handle_transfers_between_hosts: list[int] = dataclasses.field(default_factory=list)
    _before: tuple[dict[str, int], int] = ({}, 0)

    @classmethod
    def start(cls, bed, trace: Trace, worker_info: dict, data_scale: float | None,
              placement: str | int = "round-robin") -> HostedRun:  # fmt: skip
        """Plan the data (automatic scale: inputs over one link cost about the tasks' runtime) and write the inputs."""
        link = bed.link_mbit * 1e6 / 8 if bed.link_mbit else None
        if data_scale is None:
            data_scale = auto_data_scale(trace, link) if link else 0.0
        plan = hosted_plan(trace, bed.n_hosts, data_scale, placement)
        write_input_files(plan, [h.storage_dir for h in bed.hosts])
        names = [h.name for h in bed.hosts]
        index_of = {h.name: h.index for h in bed.hosts}
        worker_hosts = [index_of.get(bed.host_of_address(address) or "", 0) for address in sorted(worker_info)]
        return cls(bed, trace, plan, names, [h.address for h in bed.hosts], worker_hosts, link)

    def specs(self, run_id: str, memory_scale: float):
        return build_hosted_specs(self.trace, run_id, memory_scale, self.plan, self.host_names, self.host_ips)

    def _access_rows(self) -> dict[str, list[dict]]:
        from daskflow.testbed.measure import read_access_log

        return {name: read_access_log(path) for name, path in self.bed.access_logs().items()}

    def _handle_transfers(self, client) -> int:
        from daskflow.testbed.measure import (
            bytes_between_hosts,
            flatten_worker_rows,
            incoming_transfers,
        )

        rows = flatten_worker_rows(client.run(incoming_transfers))
        return len([r for r in rows if bytes_between_hosts([r], dict(zip(self.host_ips, self.host_names)))])

    def before_submit(self, client) -> None:
        """Remember the logs' lengths, then restart the test bed's slowdown clock (the run starts now)."""
        self._before = ({name: len(rows) for name, rows in self._access_rows().items()}, self._handle_transfers(client))
        self.bed.restart_clock()

    def after_run(self, client) -> None:
        """Bytes read from another host's storage during this run (access-log rows are written just after a reply)."""
        from daskflow.testbed.measure import storage_reads

        time.sleep(0.2)
        counts, handles = self._before
        new_rows = {name: rows[counts.get(name, 0):] for name, rows in self._access_rows().items()}
        host_by_ip = dict(zip(self.host_ips, self.host_names))
        self.remote_reads.append(sum(storage_reads(new_rows, host_by_ip).values()))
        external_rows = {name: [r for r in rows if "/inputs/" in str(r.get("path"))] for name, rows in new_rows.items()}
        self.external_remote_reads.append(sum(storage_reads(external_rows, host_by_ip).values()))
        self.handle_transfers_between_hosts.append(self._handle_transfers(client) - handles)

    def result(self, simulated_list_s: float, makespan_s: float) -> dict[str, Any]:
        """The keys a test-bed replay adds to the result dict."""
        slowdown = self.bed.slowdown_in_run()
        heft = heft_makespan_s(self.trace, self.plan, self.worker_hosts, self.bed.host_speeds, self.bed.link_mbit,
                               slowdown=slowdown)  # fmt: skip
        contended = heft_makespan_s(self.trace, self.plan, self.worker_hosts, self.bed.host_speeds, self.bed.link_mbit,
                                    contended=True, slowdown=slowdown)  # fmt: skip
        extra: dict[str, Any] = {}
        if slowdown is not None:  # what the simulation gives without the slowdown (the numbers before it knew of it)
            extra["simulated_heft_contended_makespan_s_without_slowdown"] = heft_makespan_s(
                self.trace, self.plan, self.worker_hosts, self.bed.host_speeds, self.bed.link_mbit, contended=True)
        return {
            "hosts": self.bed.describe(),
            "data_scale": self.plan.data_scale,
            "external_input_bytes": int(sum(self.plan.external_bytes)),
            "bytes_between_hosts": statistics.median(self.remote_reads) if self.remote_reads else None,
            "bytes_between_hosts_per_run": list(self.remote_reads),
            "storage_bytes_read_from_other_hosts": (statistics.median(self.external_remote_reads)
                                                    if self.external_remote_reads else None),
            "handles_moved_between_hosts": (statistics.median(self.handle_transfers_between_hosts)
                                            if self.handle_transfers_between_hosts else None),
            "simulated_heft_makespan_s": heft,
            "makespan_over_heft": makespan_s / heft if heft > 0 else None,
            "simulated_heft_contended_makespan_s": contended,
            "makespan_over_heft_contended": makespan_s / contended if contended > 0 else None,
            "simulated_list_makespan_s_one_speed": simulated_list_s,
            **extra,
        }


@contextlib.contextmanager
def testbed_cluster(mode: str = "stock", hosts: int = 4, workers_per_host: int = 2, *, threads_per_worker: int = 1,
                    link_mbit: float | None = 200.0, link_latency_ms: float = 1.0,
                    host_speeds: Sequence[float] | None = None, slowdown: str | None = None,
                    memory_limit: str | int = "auto", history_url: str | None = None, model_url: str | None = None,
                    extra_config: Mapping[str, Any] | None = None) -> Iterator[tuple[Any, Any]]:  # fmt: skip
    """A started, warmed-up :class:`~daskflow.testbed.TestBed` set up for ``mode``; yields ``(bed, client)``.

    The mode's config reaches the scheduler and the workers alike; stock runs
    with no preload at all. Everything is torn down on leaving the block.
    """
    from daskflow.replay import probes
    from daskflow.replay.cluster import PRELOAD, QUIET_CLUSTER, mode_config, warm_graph
    from daskflow.replay.specs import warm_worker
    from daskflow.testbed import TestBed

    config = {**QUIET_CLUSTER, **mode_config(mode, history_url, model_url), **dict(extra_config or {})}
    with TestBed(hosts, workers_per_host, threads_per_worker=threads_per_worker, link_mbit=link_mbit,
                 link_latency_ms=link_latency_ms, host_speeds=host_speeds, slowdown=slowdown,
                 memory_limit=memory_limit, preload=PRELOAD if mode != "stock" else None, config=config) as bed:  # fmt: skip
        client = bed.client(timeout=60, set_as_default=True)  # the harness waits with distributed.wait
        client.wait_for_workers(bed.n_workers, timeout=120)
        client.run(warm_worker)
        client.register_plugin(probes.ReplayWatch(), name=probes.WATCH_NAME)
        if mode != "record":
            warm_graph(client, 4 * bed.n_workers)
        yield bed, client
