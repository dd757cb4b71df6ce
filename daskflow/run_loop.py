"""The run loop: get a client, submit the planned graph, turn completions into events.

Design note
-----------
The loop owns the client side of one run and nothing else: it acquires a
client (given, connected to an address or cluster file, or an embedded
``LocalCluster``), submits the plan's tasks as ONE graph, waits with
``distributed.as_completed`` in batches and classifies every completed node
into an :class:`~daskflow.run_result.AssetRecord` or
:class:`~daskflow.run_result.CheckRecord`, which it hands to its
:class:`~daskflow.listeners.RunListener` (catalog writer, progress bar, ...).
It writes nothing itself.

Failure handling is Dask's own: a task that raises (after its ``retries``)
errs, and Dask errs every dependent without running it. So an errored node
is *failed* when all its in-graph upstreams succeeded, else *skipped*. An
asset counts as materialized only once its worker's
:data:`~daskflow.contracts.MATERIALIZED_TOPIC` event (sent after the data is
durable) reached the client; :class:`MetadataRouter` routes those events by
run id, so runs sharing a client do not see each other's.

Which attempt is recorded (one task attempt, one file, one row): every
execution of an asset task writes its own file and publishes its own event
(:mod:`daskflow.tasks`). The router keeps, per key, every event received, in
order. The loop records a materialization when the key's future finishes,
from the LAST event received for that key (earlier ones are executions whose
result Dask lost; their files are listed as superseded). When Dask later
recomputes a recorded key (the worker holding the result died while
downstream still needed it) the new execution's event arrives after the row
was written: the router queues it as *late*, and after each batch (and once
more at the end) the loop emits ``asset_attempt_replaced``, on which the
catalog writer points the row at the new file and its stats in one
transaction and lists the old file for ``daskflow gc``. A recomputation that
finishes after the run ended leaves an unreferenced file, which
``daskflow gc`` lists once it is older than ``daskflow.storage.gc-grace``.

State (plain data): per task key its status, the records so far, and per
node the number of in-graph upstreams not yet succeeded (for
``asset_started``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback

from daskflow import config
from daskflow.contracts import MATERIALIZED_TOPIC, SCHEDULER_PRELOAD, MaterializedEvent
from daskflow.daskgraph import TaskSpec, submit_graph
from daskflow.errors import StorageError
from daskflow.listeners import AssetStart, RunInfo, RunListener
from daskflow.planning import Plan, PlanNode
from daskflow.run_result import AssetRecord, CheckRecord, RunResult
from daskflow.tasks import BlockingCheckFailed

__all__ = ["MetadataRouter", "RunLoop", "client_for", "router_for"]

#: phase lines for people ("starting embedded cluster ...", "cluster ready, dashboard ..."); the CLI prints them
phase_logger = logging.getLogger("daskflow.run")


# -- metadata events -----------------------------------------------------------
class MetadataRouter:
    """Receives the materialized events of one client and hands them to runs by run id.

    State: per run, per task key, every event received in order; per run the
    attempt token recorded per key and the late events (a recorded key
    executed again).
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.runs: dict[str, dict[str, list[MaterializedEvent]]] = {}
        self.recorded: dict[str, dict[str, str | None]] = {}
        self.late: dict[str, list[MaterializedEvent]] = {}

    def open(self, run_id: str) -> None:
        with self.condition:
            self.runs[run_id], self.recorded[run_id], self.late[run_id] = {}, {}, []

    def close(self, run_id: str) -> None:
        with self.condition:
            for table in (self.runs, self.recorded, self.late):
                table.pop(run_id, None)

    def handle(self, event: tuple[float, MaterializedEvent]) -> None:
        meta = event[1]
        with self.condition:
            run_id = meta.get("run_id")
            run = self.runs.get(run_id)
            if run is not None:
                run.setdefault(meta["key"], []).append(meta)
                recorded = self.recorded[run_id]
                if meta["key"] in recorded and recorded[meta["key"]] != meta.get("attempt"):
                    self.late[run_id].append(meta)
                self.condition.notify_all()

    def wait_for(self, run_id: str, key: str, timeout_s: float) -> list[MaterializedEvent]:
        """Every event of ``key`` so far (the last is the one to record); [] after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self.condition:
            while key not in self.runs[run_id]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self.condition.wait(remaining)
            return list(self.runs[run_id][key])

    def mark_recorded(self, run_id: str, key: str, meta: MaterializedEvent) -> None:
        """The loop recorded ``meta`` for ``key``: later events of other attempts are late."""
        with self.condition:
            self.recorded[run_id][key] = meta.get("attempt")
            newest = self.runs[run_id][key][-1]
            if newest.get("attempt") != meta.get("attempt"):  # arrived while the loop was recording
                self.late[run_id].append(newest)

    def take_late(self, run_id: str) -> list[MaterializedEvent]:
        """The late events of a run since the last call; per key only the newest."""
        with self.condition:
            events, self.late[run_id] = self.late.get(run_id, []), []
            newest: dict[str, MaterializedEvent] = {}
            for meta in events:
                newest[meta["key"]] = meta
                self.recorded[run_id][meta["key"]] = meta.get("attempt")
            return list(newest.values())


_ROUTERS: dict[str, MetadataRouter] = {}
_ROUTERS_LOCK = threading.Lock()


def router_for(client) -> MetadataRouter:
    with _ROUTERS_LOCK:
        router = _ROUTERS.get(client.id)
        if router is None:
            router = _ROUTERS[client.id] = MetadataRouter()
            client.subscribe_topic(MATERIALIZED_TOPIC, router.handle)
        return router


def _fill_from_event(rec: AssetRecord, meta: MaterializedEvent) -> None:
    rec.duration_s, rec.rows, rec.bytes = meta["duration_s"], meta["rows"], meta["bytes"]
    rec.path, rec.worker, rec.host = meta["path"], meta["worker"], meta["host"]
    rec.attempt = meta.get("attempt_number")


# -- clients -------------------------------------------------------------------
def _worker_resources(raw) -> dict[str, float]:
    """``daskflow.execution.worker-resources`` as ``{name: amount}`` (a mapping, or its JSON in the env var)."""
    import json

    from daskflow.errors import DaskflowError

    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            pass  # reported below, as it was given
    if raw is None:
        return {}
    ok = isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                       and v > 0 for k, v in raw.items())
    if not ok:
        raise DaskflowError(f"daskflow.execution.worker-resources must map resource names to positive amounts, got "
                            f"{raw!r}; fix: e.g. {{secure: 1}} (DASK_DASKFLOW__EXECUTION__WORKER_RESOURCES="
                            "'{\"secure\": 1}')")
    return {k: float(v) for k, v in raw.items()}


@contextlib.contextmanager
def client_for(client=None, address: str | None = None, workers: int | None = None):
    """The given client; else one connected to ``address``/the cluster file; else an embedded cluster."""
    if client is not None:
        yield client
        return
    from daskflow.connection import connect, resolve_address

    resolved = resolve_address(address)
    if resolved is not None:
        with _quiet_reconnect():  # a scheduler dying mid-run is reported by the loop in one line
            connected = connect(resolved)
            phase_logger.info("connected to %s, dashboard %s", resolved, _dashboard_link(connected))
            try:
                yield connected
            finally:
                _ROUTERS.pop(connected.id, None)
                connected.close()
        return
    from distributed import Client, LocalCluster

    from daskflow.main_guard import check_main_guard

    check_main_guard()  # worker processes re-import an unguarded script: one clear line instead of "Nanny failed"
    n_workers = int(workers or config.get("execution.workers"))
    threads = int(config.get("execution.threads-per-worker"))
    # e.g. {secure: 1}: lets classified assets (daskflow.policy.rules) and @asset(resources=) run embedded
    resources = _worker_resources(config.get("execution.worker-resources"))
    phase_logger.info("starting embedded cluster (%d workers)\u2026", n_workers)
    # Worker logs are silenced: task failures are recorded (with tracebacks) in the RunResult and catalog.
    with LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL, scheduler_kwargs={"preload": [SCHEDULER_PRELOAD]},
                      **({"resources": resources} if resources else {})) as cluster, \
            Client(cluster) as embedded:
        phase_logger.info("cluster ready, dashboard %s", _dashboard_link(embedded))
        try:
            yield embedded
        finally:
            _ROUTERS.pop(embedded.id, None)


def _dashboard_link(client) -> str:
    try:
        return str(client.dashboard_link)
    except Exception:  # noqa: BLE001 - a scheduler without a dashboard
        return "(none)"


# -- the loop ------------------------------------------------------------------
#: how long the client waits for a finished asset's materialized event
_METADATA_TIMEOUT_S = 30.0


class _ReconnectLogFilter(logging.Filter):
    """Drops distributed's reconnect errors (and the cancelled reconnect's traceback): the loop reports them once."""

    def filter(self, record: logging.LogRecord) -> bool:
        import asyncio

        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            return False
        return "Failed to reconnect to scheduler" not in record.getMessage()


@contextlib.contextmanager
def _quiet_reconnect():
    quiet = _ReconnectLogFilter()
    client_logger = logging.getLogger("distributed.client")
    client_logger.addFilter(quiet)
    try:
        yield
    finally:
        client_logger.removeFilter(quiet)


class RunLoop:
    """Client-side bookkeeping while one plan runs: statuses and records, emitted to ``listener``."""

    def __init__(self, plan: Plan, run: RunInfo, listener: RunListener):
        self.plan, self.run, self.listener = plan, run, listener
        self.status: dict[str, str] = {}
        self.records: list[AssetRecord] = []
        self.checks: list[CheckRecord] = []
        self.waiting_on = {key: len(node.upstream_keys) for key, node in plan.nodes.items()}
        self.order = {ref: node.index for ref, node in plan.asset_nodes.items()}
        self.order.update({(r.asset, r.partition): -1 for r in plan.stale_skipped})
        self.by_key: dict[str, AssetRecord] = {}
        self.ok = True
        self.cluster_lost: str | None = None  # set once the client lost its scheduler mid-run
        self._client = None

    def skip_up_to_date(self) -> None:
        """Announce the asset-partitions planning found up to date."""
        for record in self.plan.stale_skipped:
            self.listener.asset_skipped(self.run, record)
        self.listener.batch_finished(self.run)

    def result(self, duration_s: float, status: str | None = None) -> RunResult:
        """The records so far, in plan order; ``status`` overrides success/failure (an aborted run)."""
        records = sorted(self.records + self.plan.stale_skipped,
                         key=lambda r: self.order.get((r.asset, r.partition), -1))
        checks = sorted(self.checks, key=lambda c: (self.order.get((c.asset, c.partition), -1), c.check))
        status = status or ("success" if self.ok else "failure")
        return RunResult(self.run.run_id, status, records, checks, duration_s)

    def execute(self, client, tasks: list[TaskSpec]) -> None:
        """Submit ``tasks`` and wait until every node completed, emitting events as they do."""
        from distributed import as_completed

        router = router_for(client)
        router.open(self.plan.run_id)
        self._client = client
        futures: dict = {}
        quiet = _quiet_reconnect()
        quiet.__enter__()
        try:
            futures = submit_graph(client, tasks)
            for key, waiting in self.waiting_on.items():
                if waiting == 0:
                    self._started(self.plan.nodes[key])
            pending = {key: len(self.plan.downstream[key]) for key in futures}
            for batch in as_completed(list(futures.values()), with_results=False).batches():
                for future in sorted(batch, key=lambda f: self.plan.nodes[f.key].index):
                    node = self.plan.nodes[future.key]
                    self._finish(node, future, router)
                    for up in node.upstream_keys:  # release values nobody needs any more
                        pending[up] -= 1
                        if pending[up] == 0:
                            futures.pop(up, None)
                self._replace_late_attempts(router)
                self.listener.batch_finished(self.run)
            self._replace_late_attempts(router)
            self.listener.batch_finished(self.run)
        except BaseException:  # interrupted (Ctrl-C, catalog error): do not leave the run's tasks on the cluster
            client.cancel(list(futures.values()))
            raise
        finally:
            quiet.__exit__(None, None, None)
            router.close(self.plan.run_id)

    def _lost_cluster(self) -> bool:
        """Whether the client lost its scheduler (killed or shut down): its futures were all cancelled."""
        status = getattr(self._client, "status", "running")
        return status not in ("running", "newly-created")

    def _replace_late_attempts(self, router: MetadataRouter) -> None:
        """Recorded keys that Dask executed again: point their records (and rows) at the newest attempt."""
        for meta in router.take_late(self.plan.run_id):
            record = self.by_key.get(meta["key"])
            if record is None or record.status != "success":
                continue
            previous = record.path
            _fill_from_event(record, meta)
            self.listener.asset_attempt_replaced(self.run, record, meta, previous)

    def _started(self, node: PlanNode) -> None:
        if node.kind == "asset":
            self.listener.asset_started(self.run, AssetStart(node.asset, node.partition, node.key, node.data_version))

    def _succeeded(self, node: PlanNode) -> None:
        for down in self.plan.downstream[node.key]:
            self.waiting_on[down] -= 1
            if self.waiting_on[down] == 0:
                self._started(self.plan.nodes[down])

    def _failed_upstream(self, node: PlanNode) -> str | None:
        for up in node.upstream_keys:
            if self.status.get(up) != "success":
                upstream = self.plan.nodes[up]
                where = upstream.asset if upstream.partition is None else f"{upstream.asset}[{upstream.partition}]"
                if upstream.kind == "check":
                    return f"blocking check {upstream.check.name!r} of {where} failed"
                return f"upstream {where} did not succeed"
        return None

    def _finish(self, node: PlanNode, future, router: MetadataRouter) -> None:
        if node.kind == "check":
            self._finish_check(node, future)
            return
        rec = AssetRecord(node.asset, node.partition, "success", data_version=node.data_version)
        meta: MaterializedEvent | None = None
        if future.status == "finished":
            events = router.wait_for(self.plan.run_id, node.key, timeout_s=_METADATA_TIMEOUT_S)
            if not events:
                rec.status, rec.error = "failed", "the task finished but its storage metadata never reached the client"
            else:
                meta = events[-1]
                _fill_from_event(rec, meta)
                rec.superseded = [e["path"] for e in events[:-1] if e["path"] != meta["path"]]
        else:
            reason = self._failed_upstream(node)
            if reason is not None:
                rec.status, rec.reason, rec.data_version = "skipped", reason, None
            else:
                rec.status, rec.data_version = "failed", None
                if future.status == "cancelled" and self.cluster_lost is not None:
                    # one line per run, not one per asset: the first lost record carries the error
                    rec.status, rec.reason = "skipped", "not finished: the cluster went away"
                elif future.status == "cancelled" and self._lost_cluster():
                    address = getattr(getattr(self._client, "scheduler", None), "address", None) or "?"
                    self.cluster_lost = rec.error = (
                        f"run {self.plan.run_id}: the scheduler at {address} went away during the run "
                        f"(killed or shut down); unfinished assets are not recorded; "
                        f"rerun them with `daskflow run --resume {self.plan.run_id[:12]}`")
                elif future.status == "cancelled":
                    rec.error = "cancelled: the cluster lost the task (scheduler or client shut down?)"
                else:
                    exc, tb = future.exception(), future.traceback()
                    rec.error = f"{type(exc).__name__}: {exc}"
                    if not isinstance(exc, StorageError):  # a storage fault is one clear line; no traceback
                        rec.traceback = "".join(traceback.format_exception(type(exc), exc, tb))
        self.status[node.key] = rec.status
        self.ok = self.ok and rec.status == "success"
        self.records.append(rec)
        self.by_key[node.key] = rec
        if rec.status == "success":
            self.listener.asset_materialized(self.run, rec, meta)
            router.mark_recorded(self.plan.run_id, node.key, meta)
            self._succeeded(node)
        elif rec.status == "skipped":
            self.listener.asset_skipped(self.run, rec)
        else:
            self.listener.asset_failed(self.run, rec)

    def _finish_check(self, node: PlanNode, future) -> None:
        check = node.check
        if future.status == "finished":
            outcome, status = future.result(), "passed"
        else:
            exc = future.exception() if future.status == "error" else RuntimeError("cancelled")
            reason = self._failed_upstream(node)
            if isinstance(exc, BlockingCheckFailed) and reason is None:
                outcome, status = exc.result, "failed"
            elif reason is not None:
                outcome, status = {"passed": False, "message": reason}, "skipped"
            else:
                outcome, status = {"passed": False, "message": f"{type(exc).__name__}: {exc}"}, "failed"
        if status == "passed" and not outcome["passed"]:
            status = "failed"  # a failed warning check
        self.status[node.key] = "success" if status == "passed" or not check.blocking else "failed"
        if check.blocking and status == "failed":
            self.ok = False
        record = CheckRecord(node.asset, node.partition, check.name, status, check.blocking,
                             outcome.get("message", ""), dict(outcome.get("metadata") or {}))
        self.checks.append(record)
        self.listener.check_evaluated(self.run, record)
        if self.status[node.key] == "success":
            self._succeeded(node)
