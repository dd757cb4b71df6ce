"""Governance around one run: placement rules into the graph before it runs, the audit after.

Design note
-----------
Two steps of :func:`daskflow.execution.materialize`, kept out of the run loop:

* :func:`apply_policy` — before anything runs: judge every task against
  ``daskflow.policy.rules`` and the asset's own ``resources``
  (:func:`daskflow.placement_rules.policy_checks`, pure), look at the
  cluster's workers only when some task is constrained, refuse the run with
  one line when a task has no allowed worker, and put each task's
  restrictions in its :class:`~daskflow.daskgraph.TaskSpec` (so Dask itself
  enforces them, with the steering plugin off, in shadow mode and on
  fallback; the plugin leaves such tasks to Dask, see
  ``scheduler_plugins.compat.restricted_by_client``).
* :class:`WaitingWatch` — while the run waits: a restricted task whose allowed
  workers are all gone sits in Dask's ``no-worker`` state (it never runs
  elsewhere); once one has waited ``daskflow.policy.wait-warning``, one warning
  per asset names it, its rules and the fix.
* :func:`record_checks` at submission and :func:`record_decisions` after the run, still knowing the client's captured
  decisions (:mod:`daskflow.decision_capture`): the policy checks, the
  steering decisions and a ``stock`` decision for every task that ran without
  one that bound it to a worker, in the catalog's audit tables
  (:mod:`daskflow.audit`). An audit write that fails is one warning: the data
  and the run's catalog rows are already durable.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from daskflow.daskgraph import TaskSpec
from daskflow.placement_rules import (
    PolicyError,
    policy_checks,
    refusal,
    rules_from_config,
)

__all__ = ["WaitingWatch", "apply_policy", "record_checks", "record_decisions"]


def _workers(client: Any) -> dict[str, dict[str, Any]]:
    info = client.scheduler_info(n_workers=-1)
    return {address: {"host": w.get("host"), "resources": dict(w.get("resources") or {})}
            for address, w in (info.get("workers") or {}).items()}


def apply_policy(tasks: list[TaskSpec], facts: Mapping[str, Mapping[str, Any]], client: Any,
                 now: float | None = None) -> tuple[list[dict[str, Any]], PolicyError | None]:
    """Check the tasks against the rules and the cluster; set their constraints; return (checks, refusal).

    ``refusal``: the :class:`~daskflow.placement_rules.PolicyError` to raise before
    anything runs when a task has no allowed worker (then no constraint is set).
    Malformed rules raise it at once.
    """
    now = time.time() if now is None else now
    rules = rules_from_config()
    checks = policy_checks(facts, rules, None, now)
    if any(c["outcome"] != "unrestricted" for c in checks):
        checks = policy_checks(facts, rules, _workers(client), now)
    error = refusal(checks)
    if error is None:
        by_key = {c["key"]: c for c in checks}
        for task in tasks:
            check = by_key.get(task.key)
            if check is not None:
                task.constraints = dict(check["constraints"])
    return checks, error


def record_checks(catalog: Any, run_id: str, checks: Iterable[Mapping[str, Any]]) -> None:
    """Store the run's policy checks at submission (one warning if that fails)."""
    from daskflow.audit import AuditStore

    try:
        AuditStore(catalog).record_policy_checks(run_id, checks)
    except Exception as exc:  # noqa: BLE001 - auditing never fails the run
        _warn(run_id, exc)


def record_decisions(catalog: Any, run_id: str, decisions: list[Mapping[str, Any]],
                     placements: Mapping[str, str | None]) -> None:
    """Store the run's decisions and a ``stock`` one per task placed by Dask itself (one warning if that fails)."""
    from daskflow.audit import AuditStore, stock_decisions

    try:
        stock = stock_decisions(run_id, {k: w for k, w in placements.items() if w}, decisions, time.time())
        AuditStore(catalog).record_decisions(run_id, [*decisions, *stock])
    except Exception as exc:  # noqa: BLE001 - the run's data and catalog rows are durable already
        _warn(run_id, exc)


def _warn(run_id: str, exc: Exception) -> None:
    warnings.warn(f"daskflow: the audit of run {run_id} could not be written ({type(exc).__name__}: {exc}); "
                  "`daskflow audit`/`explain` will not know it. Fix: check the catalog file's disk and "
                  "permissions", RuntimeWarning, stacklevel=3)


def _unrunnable(keys: list[str], dask_scheduler: Any = None) -> list[str]:
    from daskflow import compat

    return compat.unrunnable_keys(dask_scheduler, keys)


class WaitingWatch:
    """Warns once per asset when its restricted tasks wait in ``no-worker`` (no allowed worker is connected).

    State: the constrained checks by key, when each key was first seen waiting, the assets warned about.
    A daemon thread polls the scheduler every ``interval_s``; :meth:`stop` ends it.
    """

    def __init__(self, client: Any, checks: Iterable[Mapping[str, Any]], after_s: float | None = None,
                 interval_s: float | None = None):
        from dask.utils import parse_timedelta

        from daskflow import config

        self.client = client
        self.checks = {c["key"]: c for c in checks if c.get("constraints")}
        self.after_s = float(after_s if after_s is not None else parse_timedelta(config.get("policy.wait-warning")))
        self.interval_s = interval_s if interval_s is not None else max(0.05, min(1.0, self.after_s / 4))
        self.waiting_since: dict[str, float] = {}
        self.warned: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WaitingWatch:
        if self.checks:
            self._thread = threading.Thread(target=self._watch, name="daskflow-policy-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        keys = sorted(self.checks)
        while not self._stop.wait(self.interval_s):
            try:
                waiting = set(self.client.run_on_scheduler(_unrunnable, keys))
            except Exception:  # noqa: BLE001 - a closing client: the run is ending anyway
                return
            self.observe(waiting, time.monotonic())

    def observe(self, waiting: set[str], now: float) -> list[str]:
        """Record which keys wait now; return (and warn) the new messages. Pure apart from ``warnings``."""
        for key in list(self.waiting_since):
            if key not in waiting:
                del self.waiting_since[key]
        new = []
        for key in sorted(waiting):
            since = self.waiting_since.setdefault(key, now)
            check = self.checks.get(key, {})
            asset = check.get("asset") or key
            if now - since < self.after_s or any(f"asset {asset!r}" in m for m in self.warned):
                continue
            rules = " and ".join(check.get("rules") or []) or f"its resources {check.get('constraints')}"
            message = (f"daskflow: asset {asset!r} is waiting: no connected worker is allowed by {rules} "
                       f"(the allowed ones left); it will not run elsewhere. Fix: start an allowed worker, "
                       "or stop the run (Ctrl-C) and change daskflow.policy.rules")
            self.warned.append(message)
            new.append(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return new
