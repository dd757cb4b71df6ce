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
* :func:`record_checks` at submission and :func:`record_decisions` after the run, still knowing the client's captured
  decisions (:mod:`daskflow.decision_capture`): the policy checks, the
  steering decisions and a ``stock`` decision for every task that ran without
  one that bound it to a worker, in the catalog's audit tables
  (:mod:`daskflow.audit`). An audit write that fails is one warning: the data
  and the run's catalog rows are already durable.
"""

from __future__ import annotations

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

__all__ = ["apply_policy", "record_checks", "record_decisions"]


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
