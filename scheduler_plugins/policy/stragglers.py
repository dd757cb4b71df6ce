"""Stragglers and slow hosts: detect a task running well past its plan, and decide whether to restart it.

Design note
-----------
Pure rules over plain data; ``now`` is an argument (seconds on the caller's
monotonic clock), so every rule is tested with a fake clock.

* **Spread** (:class:`CategorySpread`) — per category the recent
  ``actual / planned`` ratios of finished tasks; its p90 says how far past its
  plan a healthy task of that category may run.
* **Straggler** (:func:`find_stragglers`) — a running task whose elapsed time
  passed ``planned × max(straggler_factor, p90 ratio)``. Elapsed time starts
  when the task could start: when it was sent, or when its worker's previous
  task finished if that is later (the scheduler is not told when compute
  starts).
* **Evidence** — while it runs, a straggler is a *censored* observation of its
  worker's speed (at least ``elapsed / planned`` slower). A lone straggler
  (see *Slow host*) is fed to
  :class:`~scheduler_plugins.policy.speeds.SpeedEstimates` once, as one
  sample; one read as a slowed host moves the host's speed at once, so a
  host that slows mid-run stops getting long work before its slow tasks end.
* **Restart** (:func:`restart_decision`) — restart a straggler on an idle
  worker when its whole planned duration there (plus moving its inputs,
  priced as the placement that will place the copy prices them)
  finishes earlier than the time it is still expected to need where it is
  (at least as long again as it has already overrun, the usual heavy-tail
  rule), by a margin. Never for an asset or a check (``kind`` not
  ``"replay"``): a materialization must not be written twice, and the
  scheduler cannot stop a running Python function, so the old copy keeps
  running (its result is discarded).
* **Slow host** (:func:`reads_as_slow_host`) — a straggler on a host whose
  recent tasks *all* overran (every task that finished there since the
  straggler could start; none is no evidence against) while another host
  finished a task on time meanwhile (not the whole machine slowed) and
  another host finished a task of its category on time, meanwhile or before
  (the category is not under-predicted; stragglers of one category on two
  hosts at once, :func:`categories_on_many_hosts`, are the category's) is read as the host
  having slowed, not the task: the plugin updates that host's speed estimate first
  (:meth:`~scheduler_plugins.policy.speeds.SpeedEstimates.observe_slow_host`),
  then :func:`restart_decision` compares a restart with the time the task
  still needs *at the host's new speed*. A task on a host that finished
  others on time is a lone straggler (censored evidence only).
* **Slowed host from running tasks** (:func:`hosts_overrunning`) — a straggler
  is flagged at 3 × its plan, so a host slowed × 4 under 5 s tasks is read
  15 s later, and long work goes on to it meanwhile. Tasks past
  ``OVERRUN_RATIO`` × their plans on :data:`HOST_OVERRUN_WORKERS` or more of
  one host's workers at once, each passing :func:`reads_as_slow_host` at that
  ratio, and of categories that overrun on no other host, read the host as
  slowed sooner (at least as slow as the least overrun of them).
* **Slowed under a task** (:func:`host_slowed_under`) — a long task placed on
  a host just before (or just after) it slowed is no straggler yet: its
  threshold is a multiple of the *old* plan, so a 40 s task on a host slowed
  × 4 runs 120 s before anything notices it. Its host's other workers say it
  sooner: when one of them, on evidence of a task that finished *after this
  one could start*, now runs at most ``1 / OVERRUN_RATIO`` of the speed this
  task was planned at, the time it still needs is counted with the work done
  at the planned speed until that evidence and at the new speed since
  (:func:`slowed_remaining_s`), and :func:`restart_decision` weighs a
  restart on an idle worker of *another* host against it (``remaining_s``).
  A category seen once can never be read as a slowed host from its own
  stragglers (no on-time sibling elsewhere), so this is the only rule that
  moves such a task.
* **A category's overrun** — stragglers of one category on two hosts at
  once are the category's cost (a model that under-predicts it), which a
  copy pays on any worker: they are restarted only on a clearly faster one
  and are no evidence of their workers' speeds (soykb's first three
  ``alignment_to_reference`` tasks, planned 0.065 s, all at 0.36 s: three
  restarts and speeds of 0.05 on full-speed hosts), until a task of the
  category finishes on its plan (the in-run correction caught up).
* **Once** — a key is restarted at most once (``already_restarted``).
* **Orphans** (:class:`Orphan`, :func:`thread_start_times`) — a restarted
  task keeps its thread (and its memory) on the old worker until it ends:
  it is predicted to run the time the restart decision gave it. Until then
  that worker counts one thread busy, the orphan's predicted peak counts at
  admission, and a task queued behind it could start only when it ends (its
  clock does not run: no false straggler behind a restart).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scheduler_plugins.policy.model import WorkerInfo

__all__ = [
    "CategorySpread",
    "HostActivity",
    "Orphan",
    "RestartDecision",
    "RunningTask",
    "SlowedUnder",
    "Straggler",
    "categories_on_many_hosts",
    "find_stragglers",
    "host_slowed_under",
    "hosts_overrunning",
    "live_orphans",
    "reads_as_slow_host",
    "remaining_here_s",
    "restart_decision",
    "slowed_remaining_s",
    "thread_start_times",
]

#: a restart must be predicted to finish at least this much earlier (fraction of the current estimate)
RESTART_MARGIN = 0.75
#: kinds of task that may be restarted (never an asset or a check: no double materialization)
RESTARTABLE_KINDS = frozenset({"replay"})
#: a finished (or running) task took at least this many times its plan: it overran
OVERRUN_RATIO = 1.5
#: tasks past OVERRUN_RATIO x their plan, running on this many workers of one host at once: the host slowed
HOST_OVERRUN_WORKERS = 2
#: a task within this fraction of its plan has reached it (a speed learned from the task itself: no time left)
ON_PACE_SLACK = 0.02


@dataclass(slots=True)
class CategorySpread:
    """Recent ``actual / planned`` ratios per category (p90 of healthy overruns).

    >>> spread = CategorySpread(window=10)
    >>> for r in [1.0, 1.1, 0.9, 1.2, 1.0, 1.05, 0.95, 1.0, 1.3, 1.0]:
    ...     spread.observe("fit", actual_s=r, planned_s=1.0)
    >>> spread.p90("fit"), spread.p90("never-seen")
    (1.2, None)
    """

    window: int = 64
    ratios: dict[str, deque[float]] = field(default_factory=dict)

    def observe(self, category: str, actual_s: float, planned_s: float) -> None:
        if actual_s > 0 and planned_s > 0:
            self.ratios.setdefault(category, deque(maxlen=self.window)).append(actual_s / planned_s)

    def p90(self, category: str, min_n: int = 5) -> float | None:
        """The 90th percentile ratio (nearest rank), None with fewer than ``min_n`` finished tasks."""
        values = sorted(self.ratios.get(category, ()))
        if len(values) < min_n:
            return None
        return values[min(len(values) - 1, int(0.9 * (len(values) - 1) + 0.5))]


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task processing on a worker, as the straggler rules see it."""

    key: Hashable
    worker: str
    host: str
    category: str
    kind: str
    planned_s: float  # speed-1 seconds
    worker_speed: float  # the speed the plan used for its worker
    could_start_at: float  # when it could start there (caller's monotonic clock)
    input_bytes: int = 0
    data_s: float = 0.0  # the seconds its placement priced for reading its inputs there (inside the task's time)

    @property
    def expected_s(self) -> float:
        """Its planned duration on its worker: ``planned_s`` at the speed the plan used."""
        return self.planned_s / (self.worker_speed if self.worker_speed > 0 else 1.0)

    @property
    def compute_from(self) -> float:
        """When its compute could begin: after it could start and read the inputs its placement priced."""
        return self.could_start_at + max(self.data_s, 0.0)


@dataclass(frozen=True, slots=True)
class Straggler:
    task: RunningTask
    elapsed_s: float
    expected_s: float  # planned on its worker: planned_s / worker_speed
    threshold_s: float  # past this it is a straggler

    @property
    def overrun(self) -> float:
        """How many times its expected duration it has run so far."""
        return self.elapsed_s / self.expected_s if self.expected_s > 0 else float("inf")


def find_stragglers(running: Iterable[RunningTask], now: float, spread: CategorySpread, straggler_factor: float,
                    min_planned_s: float = 0.0) -> list[Straggler]:  # fmt: skip
    """Running tasks past ``expected × max(straggler_factor, category p90)``, longest overrun first.

    A task's elapsed time counts from when it could start *less the reads
    its placement priced* (``data_s``): a task that reads its inputs
    over a link inside its own time (stored data, the test bed's replayed
    tasks) spends them before its compute, and that is no overrun. Without
    it, a 0.05 s task reading 0.2 s of remote data is a "4 x straggler", and
    every such read becomes censored evidence that its worker is slow, or
    a slowed host.

    >>> task = RunningTask("k", "w", "h", "fit", "replay", planned_s=1.0, worker_speed=1.0, could_start_at=0.0)
    >>> [s.task.key for s in find_stragglers([task], now=3.5, spread=CategorySpread(), straggler_factor=3.0)]
    ['k']
    >>> find_stragglers([task], now=2.0, spread=CategorySpread(), straggler_factor=3.0)
    []
    >>> reading = RunningTask("r", "w", "h", "fit", "replay", 1.0, 1.0, could_start_at=0.0, data_s=2.0)
    >>> find_stragglers([reading], now=4.5, spread=CategorySpread(), straggler_factor=3.0)  # 2.5 s of compute
    []
    """
    found = []
    for task in running:
        if task.planned_s <= 0 or task.planned_s < min_planned_s:
            continue
        expected = task.expected_s
        factor = max(straggler_factor, spread.p90(task.category) or 0.0)
        elapsed = now - task.compute_from
        if elapsed > expected * factor:
            found.append(Straggler(task, elapsed, expected, expected * factor))
    return sorted(found, key=lambda s: (-s.overrun, str(s.task.key)))


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    worker: str | None
    reason: str  # "straggler-restart", "straggler" (keep it: no better idle worker, or restarted once), "straggler-asset"
    remaining_here_s: float
    finish_there_s: float | None


def remaining_here_s(straggler: Straggler, speed_here: float | None = None) -> float:
    """Time the straggler still needs where it runs, at ``speed_here`` (None: the speed its plan used).

    On pace for that speed: what its plan there has left. Past it: at least
    as long again as it has overrun that plan, and at least the plan itself
    (the usual heavy-tail rule). With a speed just learned from this very
    task (a censored bound: its plan equals its elapsed time) that is as long
    again as it has run.

    >>> s = Straggler(RunningTask("k", "w", "h", "c", "replay", 1.0, 1.0, 0.0), elapsed_s=4.0, expected_s=1.0, threshold_s=3.0)
    >>> remaining_here_s(s), remaining_here_s(s, speed_here=0.2), remaining_here_s(s, speed_here=0.25)
    (3.0, 1.0, 4.0)
    """
    task = straggler.task
    if speed_here is None or speed_here <= 0:
        expected = straggler.expected_s
    else:
        expected = task.planned_s / speed_here
    if straggler.elapsed_s < expected * (1.0 - ON_PACE_SLACK):
        return expected - straggler.elapsed_s
    return max(straggler.elapsed_s - expected, expected)


def restart_decision(straggler: Straggler, idle: Sequence[WorkerInfo], bandwidth_bytes_per_s: float,
                     speed_here: float | None = None, already_restarted: bool = False,
                     worker_speed_known: bool = False, data_s: Mapping[str, float] | None = None,
                     remaining_s: float | None = None, reason: str = "straggler-restart") -> RestartDecision:  # fmt: skip
    """Restart on the idle worker that finishes it first, when that beats letting it run (see the module note).

    ``idle`` are workers with a free thread (the straggler's own worker is
    skipped; others on its host count with their own learned speed, so a
    host slowed as a whole does not attract the restart). ``speed_here`` is
    its worker's speed as now estimated (after a slow host was read, its new
    speed): the time it still needs is :func:`remaining_here_s`. A key
    restarted once is never restarted again; an asset or a check never.

    ``worker_speed_known``: its worker's speed is known from tasks that
    finished there, and its host was not read as slowed, or its category
    overran on several hosts at once (:func:`categories_on_many_hosts`,
    until one of its tasks finishes on plan). Then the overrun is
    the task's own cost (a plan too short), which it pays on any worker: a
    copy there needs at least the work already done here
    (``elapsed × its worker's speed``), so a restart pays only on a clearly
    faster worker. With no such record the plan stands (the slowness may
    be the worker's: a 4x slower worker nobody declared).

    ``data_s``: per idle worker, the seconds the *placement* prices for
    bringing the task's dependencies and stored inputs there
    (:func:`~scheduler_plugins.policy.placement.estimate_finish`: learned
    per-host-pair read rates where the tasks reported them). A restarted
    task is placed again by that estimate, so the restart must be weighed
    with the same one: priced at Dask's measured bandwidth instead (far too
    high where a handle's ``sizeof`` is not what is read), a copy "finishes
    in 0.2 s" on a host that would read its inputs for 3 s, and the
    placement then puts it back on the slow host it ran on, losing the
    time it had run. A worker missing from ``data_s`` (or ``data_s`` None)
    is priced at ``input_bytes / bandwidth`` as before.

    ``remaining_s``: the time it still needs where it runs when the caller
    knows it better than :func:`remaining_here_s` (a host that slowed under
    the task: :func:`slowed_remaining_s`); ``reason`` names the restart.

    >>> s = Straggler(RunningTask("k", "w", "h", "c", "replay", 1.0, 1.0, 0.0), elapsed_s=4.0, expected_s=1.0, threshold_s=3.0)
    >>> idle = [WorkerInfo("w2", host="h")]
    >>> restart_decision(s, idle, 1e8).restart, restart_decision(s, idle, 1e8, worker_speed_known=True).restart
    (True, False)
    """
    task = straggler.task
    remaining = remaining_here_s(straggler, speed_here) if remaining_s is None else max(remaining_s, 0.0)
    if task.kind not in RESTARTABLE_KINDS:
        return RestartDecision(False, None, "straggler-asset", remaining, None)
    if already_restarted:
        return RestartDecision(False, None, "straggler", remaining, None)
    work_s = task.planned_s  # speed-1 seconds the copy needs
    if worker_speed_known:
        here = speed_here if speed_here is not None and speed_here > 0 else task.worker_speed
        work_s = max(work_s, straggler.elapsed_s * (here if here > 0 else 1.0))
    best: tuple[float, str] | None = None
    for worker in idle:
        if worker.address == task.worker or worker.n_processing >= worker.nthreads:
            continue
        speed = worker.speed if worker.speed > 0 else 1.0
        moving = data_s.get(worker.address) if data_s is not None else None
        if moving is None:
            moving = task.input_bytes / max(bandwidth_bytes_per_s, 1.0)
        finish = work_s / speed + moving
        if best is None or (finish, worker.address) < best:
            best = (finish, worker.address)
    if best is not None and best[0] < RESTART_MARGIN * remaining:
        return RestartDecision(True, best[1], reason, remaining, best[0])
    return RestartDecision(False, None, "straggler", remaining, None if best is None else best[0])


# ------------------------------------------------------------------ slow hosts


@dataclass(slots=True)
class HostActivity:
    """Per host, the recent finished tasks: ``(finished_at, actual / expected there, category)``.

    ``expected`` is the duration the plan expected on that worker (its speed
    at the time counted), so a host known to be slow does not overrun. A
    task observed without a category (None) is evidence for any category.

    >>> activity = HostActivity(window=4)
    >>> activity.observe("h", finished_at=5.0, actual_s=3.0, expected_s=1.0, category="fit")
    >>> activity.since("h", 4.0), activity.since("h", 6.0), activity.since("other", 0.0)
    ([3.0], [], [])
    >>> activity.elsewhere_since("other", 4.0, "fit"), activity.elsewhere_since("other", 4.0, "load")
    ([3.0], [])
    """

    window: int = 32
    finished: dict[str, deque[tuple[float, float, str | None]]] = field(default_factory=dict)

    def observe(self, host: str, finished_at: float, actual_s: float, expected_s: float,
                category: str | None = None) -> None:  # fmt: skip
        if actual_s > 0 and expected_s > 0:
            self.finished.setdefault(host, deque(maxlen=self.window)).append((finished_at, actual_s / expected_s, category))

    def since(self, host: str, after: float, category: str | None = None) -> list[float]:
        """Ratios of the host's tasks that finished after ``after`` (oldest first; of ``category`` when given)."""
        return [ratio for finished_at, ratio, of in self.finished.get(host, ())
                if finished_at > after and (category is None or of is None or of == category)]

    def elsewhere_since(self, host: str, after: float, category: str | None = None) -> list[float]:
        """Ratios of tasks that finished on the *other* hosts after ``after`` (of ``category`` when given)."""
        return [ratio for other in self.finished if other != host for ratio in self.since(other, after, category)]


def reads_as_slow_host(straggler: Straggler, activity: HostActivity, overrun_ratio: float = OVERRUN_RATIO) -> bool:
    """Whether a straggler says its *host* slowed: all the host's recent tasks overran (see the module note).

    Recent: finished since the straggler could start. Every task that
    finished on its host in that span overran (none at all is no evidence
    against), a task finished on time on *another* host meanwhile — the
    slowness is the host's, not the whole cluster's (a loaded machine slows
    every host: that is no reason to move work) — and a task *of the
    straggler's category* finished on time on another host, meanwhile or
    earlier (within :class:`HostActivity`'s window) — nor the category's (a
    category the model under-predicts overruns on every host at once, while
    short tasks of other categories finish on time: that is drift, which the
    in-run correction fixes, not three slow hosts). The category's evidence
    may be older: a host that slows late in a category's run (soykb's
    ``haplotype_caller``, its last tasks all on the slowed host) has no
    sibling of that category left to finish anywhere meanwhile.

    >>> task = RunningTask("k", "w", "h", "c", "replay", 1.0, 1.0, could_start_at=0.0)
    >>> s = Straggler(task, elapsed_s=4.0, expected_s=1.0, threshold_s=3.0)
    >>> activity = HostActivity()
    >>> reads_as_slow_host(s, activity)  # nothing on time anywhere: maybe the whole machine is loaded
    False
    >>> activity.observe("other", finished_at=1.0, actual_s=1.0, expected_s=1.0, category="other-category")
    >>> reads_as_slow_host(s, activity)  # on time elsewhere, but another category: maybe "c" is under-predicted
    False
    >>> activity.observe("other", finished_at=1.0, actual_s=1.0, expected_s=1.0, category="c")
    >>> reads_as_slow_host(s, activity)
    True
    >>> activity.observe("h", finished_at=2.0, actual_s=1.0, expected_s=1.0)  # another task there was on time
    >>> reads_as_slow_host(s, activity)
    False
    """
    task = straggler.task
    if any(ratio < overrun_ratio for ratio in activity.since(task.host, task.could_start_at)):
        return False
    if not any(ratio < overrun_ratio for ratio in activity.elsewhere_since(task.host, task.could_start_at)):
        return False  # nothing on time anywhere meanwhile: maybe the whole machine is loaded
    category = task.category or None
    return any(ratio < overrun_ratio for ratio in activity.elsewhere_since(task.host, float("-inf"), category))


def hosts_overrunning(running: Iterable[RunningTask], now: float, activity: HostActivity, min_planned_s: float = 0.0,
                      excluded: Iterable[str] = (), min_workers: int = HOST_OVERRUN_WORKERS,
                      overrun_ratio: float = OVERRUN_RATIO) -> dict[str, Straggler]:  # fmt: skip
    """Hosts read as slowed from tasks *still running* there: ``overrun_ratio`` × their plan on several workers at once.

    A straggler is flagged at ``straggler_factor`` (3) × its plan, so a host
    slowed × 4 under tasks of 5 s is read only after 15 s of each (the
    slowdown benchmark's srasearch: long work went on to the slowed host at
    speed 1.0 for 6 s after it slowed). Tasks on ``min_workers`` or more of a
    host's workers, each past ``overrun_ratio`` × its plan there, say it
    sooner: one may be a long task, two at once on one host, of categories
    that run on time elsewhere, are the host. Each must also pass
    :func:`reads_as_slow_host` at that lower ratio (nothing finished on
    time on the host since it could start, something on time elsewhere
    meanwhile, its category on time elsewhere), and a category that overruns
    on two or more hosts at once (``excluded``, or seen among the
    overrunning here) is the category's, not a host's.

    Returns per host so read the *least* overrun of its evidence (the
    censored bound: the host is at least that slow); placement then sends it
    no long work before its first slow task finishes.

    >>> def on(worker, host, category="c", started=0.0, planned=1.0):
    ...     return RunningTask(worker, worker, host, category, "replay", planned, 1.0, could_start_at=started)
    >>> activity = HostActivity()
    >>> activity.observe("h1", finished_at=1.0, actual_s=1.0, expected_s=1.0, category="c")
    >>> read = hosts_overrunning([on("w0", "h0"), on("w1", "h0", started=0.4), on("w2", "h1", started=1.5)], 2.0, activity)
    >>> sorted(read), round(read["h0"].overrun, 2)
    (['h0'], 1.6)
    >>> hosts_overrunning([on("w0", "h0"), on("w2", "h1", started=1.5)], 2.0, activity)  # one worker: maybe one long task
    {}
    >>> hosts_overrunning([on("w0", "h0"), on("w1", "h0"), on("w2", "h1")], 2.0, activity)  # "c" overruns on h1 too
    {}
    >>> hosts_overrunning([on("w0", "h0"), on("w1", "h0")], 2.0, activity, excluded={"c"})
    {}
    >>> activity.observe("h0", finished_at=0.5, actual_s=1.0, expected_s=1.0)  # on time there meanwhile
    >>> hosts_overrunning([on("w0", "h0"), on("w1", "h0")], 2.0, activity)
    {}
    """
    over: dict[str, list[Straggler]] = {}
    hosts_of: dict[str, set[str]] = {}
    for task in running:
        expected = task.expected_s
        if task.planned_s <= 0 or task.planned_s < min_planned_s or expected <= 0:
            continue
        elapsed = now - task.compute_from
        if elapsed >= overrun_ratio * expected:
            over.setdefault(task.host, []).append(Straggler(task, elapsed, expected, overrun_ratio * expected))
            hosts_of.setdefault(task.category, set()).add(task.host)
    shared = set(excluded) | {category for category, on in hosts_of.items() if len(on) >= 2}
    read: dict[str, Straggler] = {}
    for host, evidence in over.items():
        passing = [s for s in evidence if s.task.category not in shared
                   and reads_as_slow_host(s, activity, overrun_ratio)]  # fmt: skip
        if len({s.task.worker for s in passing}) >= max(min_workers, 1):
            read[host] = min(passing, key=lambda s: (s.elapsed_s / s.task.planned_s, str(s.task.key)))
    return read


@dataclass(frozen=True, slots=True)
class SlowedUnder:
    """A host that slowed under a running task: its speed now and when that was last seen (caller's clock)."""

    speed_now: float
    seen_at: float


def host_slowed_under(task: RunningTask, siblings: Iterable[tuple[str, float, float | None]],
                      overrun_ratio: float = OVERRUN_RATIO) -> SlowedUnder | None:  # fmt: skip
    """Whether the task's host now runs ``overrun_ratio`` × slower than the task was planned at (see the module note).

    ``siblings``: ``(address, speed now, last finish or None)`` of the
    workers on the task's host. The evidence is those other than the task's
    own that finished a task after this one could start (their speed was
    learned since): the fastest of them is the host's speed now (one sibling
    that did not slow says the host did not), and the latest of those
    finishes is when it was seen.

    >>> task = RunningTask("k", "tcp://h0:1", "h0", "merge", "replay", planned_s=40.0, worker_speed=1.0, could_start_at=10.0)
    >>> host_slowed_under(task, [("tcp://h0:1", 1.0, 9.0), ("tcp://h0:2", 0.3, 14.0)])
    SlowedUnder(speed_now=0.3, seen_at=14.0)
    >>> host_slowed_under(task, [("tcp://h0:2", 0.3, 9.0)]) is None  # learned before the task could start: its plan knew
    True
    """
    speeds, seen = [], []
    for address, speed, finished_at in siblings:
        if address == task.worker or finished_at is None or finished_at <= task.could_start_at:
            continue
        speeds.append(speed)
        seen.append(finished_at)
    if not speeds:
        return None
    speed_now = max(speeds)
    planned = task.worker_speed if task.worker_speed > 0 else 1.0
    if not 0 < speed_now * overrun_ratio <= planned:
        return None
    return SlowedUnder(speed_now, max(seen))


def slowed_remaining_s(task: RunningTask, now: float, slowed: SlowedUnder) -> float:
    """Seconds the task still needs: work done at its planned speed until ``slowed.seen_at``, at the new speed since.

    Counting the old speed up to when the slowdown was *seen* (it began
    earlier) credits the task with more work than it did, so the estimate
    errs toward leaving it. Its reads (``data_s``) come before its compute.
    Past its whole work even so: 0 (the straggler rules take it from there).

    >>> task = RunningTask("k", "w", "h0", "merge", "replay", planned_s=40.0, worker_speed=1.0, could_start_at=10.0)
    >>> slowed_remaining_s(task, now=20.0, slowed=SlowedUnder(speed_now=0.25, seen_at=14.0))  # (40 - 4 - 1.5) / 0.25
    138.0
    """
    start = task.compute_from
    speed_now = slowed.speed_now if slowed.speed_now > 0 else 1.0
    done = max(0.0, min(slowed.seen_at, now) - start) * max(task.worker_speed, 0.0)
    done += max(0.0, now - max(slowed.seen_at, start)) * speed_now
    return max(task.planned_s - done, 0.0) / speed_now


def categories_on_many_hosts(stragglers: Iterable[Straggler]) -> set[str]:
    """Categories whose stragglers run on two or more hosts at once: the category overruns, not a host.

    >>> def on(host, category):
    ...     return Straggler(RunningTask("k", "w", host, category, "replay", 1.0, 1.0, 0.0), 4.0, 1.0, 3.0)
    >>> sorted(categories_on_many_hosts([on("h1", "map"), on("h2", "map"), on("h0", "fit"), on("h0", "fit")]))
    ['map']
    """
    hosts: dict[str, set[str]] = {}
    for straggler in stragglers:
        hosts.setdefault(straggler.task.category, set()).add(straggler.task.host)
    return {category for category, on in hosts.items() if len(on) >= 2}


# --------------------------------------------------------------------- orphans


@dataclass(frozen=True, slots=True)
class Orphan:
    """A restarted task still running on its old worker (its result will be discarded)."""

    key: Hashable
    worker: str
    restarted_at: float
    ends_at: float  # predicted: the restart time + the time the restart decision said it still needed
    peak_memory_bytes: int = 0


def live_orphans(orphans: Iterable[Orphan], now: float, last_finish_at: float = float("-inf"),
                 nthreads: int = 1) -> list[Orphan]:  # fmt: skip
    """The orphans still predicted to run at ``now``, soonest end first.

    On a one-thread worker any task that finished there after a restart ran
    behind the orphan, so the orphan has ended (``last_finish_at``).

    >>> o = Orphan("k", "w", restarted_at=1.0, ends_at=3.0)
    >>> [x.key for x in live_orphans([o], now=2.0)], live_orphans([o], now=3.5), live_orphans([o], 2.0, last_finish_at=2.5)
    (['k'], [], [])
    """
    live = [o for o in orphans if o.ends_at > now and not (nthreads == 1 and last_finish_at > o.restarted_at)]
    return sorted(live, key=lambda o: (o.ends_at, str(o.key)))


def thread_start_times(sent_at: Sequence[float], nthreads: int, last_finish_at: float,
                       orphan_ends_at: Sequence[float] = ()) -> list[float]:  # fmt: skip
    """When each of a worker's first ``nthreads`` tasks (in sending order) could start.

    A thread is free since the worker's last finished task, or — when an
    orphan holds it — when the orphan is predicted to end; each task takes
    the earliest free thread, and starts no earlier than it was sent.

    >>> thread_start_times([1.0, 2.0], nthreads=1, last_finish_at=0.5)
    [1.0]
    >>> thread_start_times([1.0, 2.0], nthreads=2, last_finish_at=0.5, orphan_ends_at=[4.0])
    [1.0, 4.0]
    """
    busy = sorted(orphan_ends_at)[:nthreads]
    free = sorted([last_finish_at] * (nthreads - len(busy)) + list(busy))
    starts = []
    for sent in sorted(sent_at)[:nthreads]:
        starts.append(max(sent, free.pop(0)))
    return starts
