"""The daemon: tick schedules and sensors, launch their runs exactly once.

Design note
-----------
One loop, one process, never on a scheduler's event loop. Each iteration
(:meth:`Daemon.step`) reads ``now`` from the injected clock and:

1. heartbeats the lease (a second daemon on the catalog refuses to start; a
   daemon that lost the lease stops);
2. for every schedule, computes the due ticks (pure: :func:`~daskflow.timeline.ticks.due_ticks`)
   and claims them with its cursor in one transaction;
3. for every sensor whose ``minimum_interval_s`` elapsed, calls it and claims
   its run keys with its cursor in one transaction (a raising sensor is an
   ``error`` tick with one line, and the loop goes on);
4. reconciles claims with the catalog's runs, puts claimed rows on the run
   queue (:mod:`~daskflow.timeline.queue`: global and per-pool limits, and
   the queued chunks of running backfills) and starts what the queue admits
   in launcher processes, at most ``daskflow.timeline.max-launchers`` at once
   (:class:`~daskflow.timeline.launch.LauncherPool`);
5. every few minutes, prunes old launcher logs (:mod:`~daskflow.timeline.logs`);
6. every ``daskflow.models.retrain.daemon-interval`` starts the self-healing
   retrainer (:func:`~daskflow.learning.retrain.maybe_retrain`: trigger, train
   in a subprocess, promote or reject) in a background thread, one at a time,
   so a long training never delays a tick; its outcome is one log line.

Everything that matters is in SQLite before it is acted upon (see
:mod:`daskflow.timeline.store`), so SIGKILL at any point followed by a restart
neither skips a due tick nor launches a run twice. Run ids are derived from
the claim's key (uuid5), so a claim always means the same run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import pathlib
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable

from daskflow import config
from daskflow.catalog import Catalog
from daskflow.errors import CatalogError
from daskflow.timeline.errors import DaemonLeaseError
from daskflow.timeline.launch import LauncherPool
from daskflow.timeline.logs import (
    PRUNE_INTERVAL_S,
    prune_launcher_logs,
    retention_from_config,
)
from daskflow.timeline.queue import QueueRunner, RunQueue, entry_from_launch
from daskflow.timeline.sensors import evaluate_sensor
from daskflow.timeline.specs import SensorContext
from daskflow.timeline.store import LaunchClaim, TimelineStore
from daskflow.timeline.targets import (
    ResolvedSchedule,
    ResolvedSensor,
    Timeline,
    load_timeline,
)
from daskflow.timeline.ticks import cron_times, due_ticks, tick_partitions

__all__ = ["Daemon", "DaemonState", "claim_run_id", "run_daemon"]

UTC = _dt.timezone.utc
logger = logging.getLogger("daskflow.timeline")
_RUN_ID_NAMESPACE = uuid.UUID("6b1f0c52-5d0e-4f57-9c1e-7d2f3a9e0b14")


def claim_run_id(trigger: str, origin: str, key: str) -> str:
    """The run id of a claim: the same key always names the same run."""
    return uuid.uuid5(_RUN_ID_NAMESPACE, f"{trigger}\0{origin}\0{key}").hex


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(UTC)


def _seconds(setting: str) -> float:
    from dask.utils import parse_timedelta

    return float(parse_timedelta(config.get(setting), default="s"))


@dataclasses.dataclass
class DaemonState:
    """Everything the daemon keeps in memory (none of it needed for correctness)."""

    token: str                         # this daemon's lease token
    iterations: int = 0
    launches_started: int = 0
    logs_pruned_at_s: float = float("-inf")  # wall-clock time of the last log pruning
    logs_pruned: int = 0                      # launcher logs removed by this daemon
    retrain_checked_at_s: float | None = None  # wall-clock time the retrainer was last started (first step: set)
    retrains: int = 0                          # retrainer checks started by this daemon
    retrain_outcome: dict | None = None        # the last check's outcome (decision, reason, version)


class Daemon:
    """Ticks one :class:`Timeline` against one catalog. See the module note."""

    def __init__(self, timeline: Timeline, address: str | None = None, catalog: Catalog | str | None = None,
                 clock: Callable[[], _dt.datetime] | None = None):
        catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        self.timeline, self.address = timeline, address
        self.clock = clock or _utcnow
        self.store = TimelineStore(catalog.path)
        self.catalog = Catalog(self.store.path)
        self.tick_interval_s = _seconds("timeline.tick-interval")
        self.lease_timeout_s = _seconds("timeline.lease-timeout")
        self.catchup_grace_s = _seconds("timeline.catchup-grace")
        self.log_dir = pathlib.Path(config.get("timeline.log-dir") or (self.store.path.parent / "timeline-logs"))
        self.log_max_age_s, self.log_max_files = retention_from_config()
        self.pool = LauncherPool(int(config.get("timeline.max-launchers")), str(self.store.path), address,
                                 self.log_dir)
        self.state = DaemonState(token=uuid.uuid4().hex)
        self.queue = RunQueue(self.store)
        self.runner = QueueRunner(self.store, self.pool, runner=self.state.token)
        interval = config.get("models.retrain.daemon-interval")
        self.retrain_interval_s = None if interval is None else _seconds("models.retrain.daemon-interval")
        self.retrain: Callable[[], dict] = _retrain_now
        self._retrain_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Take the lease (raises :class:`DaemonLeaseError` while another daemon holds it)."""
        self.store.acquire_lease(self.state.token, os.getpid(), socket.gethostname(),
                                 self.clock().timestamp(), self.lease_timeout_s)
        logger.info("daemon %s: %d schedule(s), %d sensor(s), catalog %s", self.state.token[:8],
                    len(self.timeline.schedules), len(self.timeline.sensors), self.store.path)

    def stop(self, grace_s: float | None = None, drain: bool = True) -> None:
        """Stop ticking; hand claimed runs to launchers for up to ``grace_s``; release the lease.

        Launchers keep running their runs after the daemon exits; claimed runs
        still waiting for a launcher slot are launched by the next daemon.
        ``drain=False`` (the lease was lost) launches nothing more.
        """
        grace_s = _seconds("timeline.stop-grace") if grace_s is None else grace_s
        deadline = time.monotonic() + grace_s
        try:
            while drain:
                self.launch_pending()
                waiting = [launch for launch in self.store.launches(status="claimed")
                           if launch.run_id not in self.pool.in_flight]
                if not waiting or time.monotonic() >= deadline:
                    break
                time.sleep(min(0.2, self.tick_interval_s))
            self.store.mark_started()
        finally:
            close = getattr(self.pool, "close", None)
            if close is not None:  # warm launchers exit after their runs
                close()
            self.store.release_lease(self.state.token)

    def step(self) -> None:
        """One iteration: heartbeat, schedules, sensors, launches."""
        now = self.clock()
        if not self.store.heartbeat(self.state.token, now.timestamp()):
            raise DaemonLeaseError("the daemon lost the catalog lease to another daemon; stopping")
        for schedule in self.timeline.schedules:
            self.tick_schedule(schedule, now)
        for sensor in self.timeline.sensors:
            self.tick_sensor(sensor, now)
        self.launch_pending()
        self.prune_logs(now.timestamp())
        self.maybe_start_retrain(now.timestamp())
        self.state.iterations += 1

    def maybe_start_retrain(self, now_s: float) -> bool:
        """Start the retrainer in a background thread when its interval elapsed and none is running."""
        if self.retrain_interval_s is None or (self._retrain_thread is not None and self._retrain_thread.is_alive()):
            return False
        checked = self.state.retrain_checked_at_s
        if checked is None:  # the first check one interval after the daemon started
            self.state.retrain_checked_at_s = now_s
            return False
        if now_s - checked < self.retrain_interval_s:
            return False
        self.state.retrain_checked_at_s = now_s
        self.state.retrains += 1
        self._retrain_thread = threading.Thread(target=self._retrain_once, name="daskflow-retrain", daemon=True)
        self._retrain_thread.start()
        return True

    def _retrain_once(self) -> None:
        try:
            outcome = self.retrain()
        except Exception as exc:  # the retrainer never stops the daemon
            outcome = {"decision": "error", "reason": f"{type(exc).__name__}: {exc}"}
        self.state.retrain_outcome = {k: outcome.get(k) for k in ("decision", "reason", "version", "trigger")}
        level = logging.WARNING if outcome.get("decision") == "error" else logging.INFO
        logger.log(level, "retrain: %s - %s", outcome.get("decision"), outcome.get("reason"))

    def prune_logs(self, now_s: float) -> list[str]:
        """Remove launcher logs past their retention, at most every :data:`PRUNE_INTERVAL_S`."""
        if now_s - self.state.logs_pruned_at_s < PRUNE_INTERVAL_S:
            return []
        self.state.logs_pruned_at_s = now_s
        removed = prune_launcher_logs(self.log_dir, now_s, self.log_max_age_s, self.log_max_files,
                                      active=set(self.pool.in_flight))
        self.state.logs_pruned += len(removed)
        if removed:
            logger.info("pruned %d launcher log(s) in %s", len(removed), self.log_dir)
        return removed

    # -- schedules -------------------------------------------------------
    def tick_schedule(self, resolved: ResolvedSchedule, now: _dt.datetime) -> list[LaunchClaim]:
        spec = resolved.spec
        cursor_s = self.store.schedule_cursor(spec.name)
        last = None if cursor_s is None else _dt.datetime.fromtimestamp(cursor_s, UTC)
        plan = due_ticks(spec, last, now, self.catchup_grace_s)
        claims = []
        for tick in plan.launch:
            key = tick.astimezone(UTC).isoformat()
            partitions, reason = tick_partitions(spec, tick, resolved.partitions)
            base = dict(trigger="schedule", origin=spec.name, key=key, tick_time=tick.timestamp(),
                        pipeline=resolved.pipeline, selection=spec.target)
            if reason is not None:
                claims.append(LaunchClaim(**base, run_id=None, status="skipped", message=reason))
                continue
            claims.append(LaunchClaim(
                **base, run_id=claim_run_id("schedule", spec.name, key),
                partitions=partitions if partitions is None or isinstance(partitions, str) else list(partitions),
                tags={**spec.tags, "trigger": "schedule", "schedule": spec.name, "run_key": key,
                      "tick_time": key}))
        for tick in plan.skipped:
            key = tick.astimezone(UTC).isoformat()
            claims.append(LaunchClaim("schedule", spec.name, key, tick.timestamp(), None, resolved.pipeline,
                                      spec.target, status="skipped",
                                      message=f"missed while no daemon ran (catchup={spec.catchup!r})"))
        claims.sort(key=lambda claim: claim.tick_time)
        inserted = self.store.record_schedule_tick(spec.name, claims, plan.evaluated_until.timestamp(),
                                                   self.state.token)
        upcoming = cron_times(spec, max(now, plan.evaluated_until), now + _dt.timedelta(days=400), limit=1)
        self.store.set_next_tick("timeline_schedules", spec.name, upcoming[0].timestamp() if upcoming else None)
        for claim in inserted:
            logger.info("schedule %s: tick %s %s%s", spec.name, claim.key, claim.status,
                        f" ({claim.message})" if claim.message else "")
        return inserted

    # -- sensors ---------------------------------------------------------
    def tick_sensor(self, resolved: ResolvedSensor, now: _dt.datetime) -> list[LaunchClaim] | None:
        spec = resolved.spec
        state = self.store.sensor_state(spec.name)
        if state.last_tick_at is not None and now.timestamp() - state.last_tick_at < spec.minimum_interval_s:
            return None
        last = None if state.last_tick_at is None else _dt.datetime.fromtimestamp(state.last_tick_at, UTC)
        context = SensorContext(spec.name, state.cursor, last, now, self.catalog)
        result = evaluate_sensor(spec, context)
        claims = []
        for index, request in enumerate(result.requests):
            key = request.run_key if request.run_key is not None else f"tick:{now.isoformat()}:{index}"
            selection = request.selection or spec.target
            base = dict(trigger="sensor", origin=spec.name, key=key, tick_time=now.timestamp(),
                        pipeline=resolved.pipeline, selection=selection)
            if selection is None:
                claims.append(LaunchClaim(**base, run_id=None, status="skipped",
                                          message="the RunRequest has no selection and the sensor no target"))
                continue
            partitions = request.partitions
            claims.append(LaunchClaim(
                **base, run_id=claim_run_id("sensor", spec.name, key),
                partitions=partitions if partitions is None or isinstance(partitions, str) else list(partitions),
                tags={**spec.tags, **request.tags, "trigger": "sensor", "sensor": spec.name, "run_key": key}))
        inserted = self.store.record_sensor_tick(spec.name, now.timestamp(), result.status, result.message,
                                                 claims, result.cursor, self.state.token)
        self.store.set_next_tick("timeline_sensors", spec.name, now.timestamp() + spec.minimum_interval_s)
        if result.status == "error":
            logger.warning("%s", result.message)
        for claim in inserted:
            logger.info("sensor %s: run key %s %s", spec.name, claim.key, claim.status)
        return inserted

    # -- launches --------------------------------------------------------
    def launch_pending(self) -> None:
        """Queue claimed rows; reap, admit and launch (the queue also holds running backfills' chunks)."""
        self.store.mark_started()
        self.queue.enqueue([entry_from_launch(launch) for launch in self.store.launches(status="claimed")])
        self.runner.pool = self.pool
        before = self.runner.launched
        for run_id, message in self.runner.step(self.clock().timestamp()):
            self.store.mark_failed(run_id, message)
            logger.warning("launch of run %s failed: %s", run_id, message)
        self.state.launches_started += self.runner.launched - before
        self.store.mark_started()


def _retrain_now() -> dict:
    from daskflow.learning.retrain import maybe_retrain

    return maybe_retrain()


def run_daemon(pipelines: list[str] | Timeline, address: str | None = None,
               clock: Callable[[], _dt.datetime] | None = None, max_iterations: int | None = None,
               stop_event: threading.Event | None = None, catalog: Catalog | str | None = None) -> DaemonState:
    """Run the daemon until SIGTERM/SIGINT, ``stop_event`` or ``max_iterations``; returns its state.

    ``pipelines``: paths or module names (or a resolved :class:`Timeline`).
    Raises :class:`TimelineDefinitionError` / :class:`PipelineLoadError` at
    load time, and :class:`DaemonLeaseError` when another daemon holds the lease.
    """
    timeline = pipelines if isinstance(pipelines, Timeline) else load_timeline(list(pipelines))
    daemon = Daemon(timeline, address=address, catalog=catalog, clock=clock)
    stop = stop_event or threading.Event()
    daemon.start()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    attempts, lost_lease = 0, False
    try:
        while not stop.is_set():
            attempts += 1
            started = time.monotonic()
            try:
                daemon.step()
            except CatalogError as exc:  # a locked or busy catalog: say so, try again next tick
                logger.warning("daemon iteration skipped: %s", " ".join(str(exc).split()))
            except DaemonLeaseError:
                lost_lease = True
                raise
            if max_iterations is not None and attempts >= max_iterations:
                break
            stop.wait(max(0.0, daemon.tick_interval_s - (time.monotonic() - started)))
    finally:
        daemon.stop(drain=not lost_lease)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return daemon.state


if __name__ == "__main__":  # python -m daskflow.timeline.daemon PIPELINE... [--address ...]
    from daskflow.cli.timeline import daemon_command

    daemon_command(prog_name="python -m daskflow.timeline.daemon")
