"""The durable audit: every steering decision, prediction and policy check, in the catalog file.

Design note
-----------
Steering decisions live in the scheduler's memory (the plugin's bounded deque
and the scheduler's event log); once the cluster stops, ``daskflow explain``
has nothing to read. The client therefore copies them here, into the catalog's
SQLite file, keyed by ``run_id`` and task key:

* ``audit_decisions`` — one row per :class:`~daskflow.contracts.DecisionEvent`
  (priority / place / hold / release / shadow / fallback, and ``stock`` for a
  task the plugin left to Dask, with the worker Dask chose). The prediction it
  acted on (duration, peak memory, quality, model version) has columns of its
  own; the whole event is kept as JSON, so :func:`AuditStore.decisions_for`
  returns exactly the dicts :mod:`daskflow.explain` reads from the scheduler.
* ``audit_policy`` — one row per task of a run: its asset-partition, the
  placement rules it matched, the Dask restrictions put in the graph, the
  workers allowed at submission, and the outcome (``unrestricted``,
  ``constrained``, ``refused``). It is also the run's task list.
* ``audit_runs`` — when each audited run was first seen; retention keeps the
  newest ``daskflow.audit.max-runs`` runs and deletes the rest.

The DDL is ONE idempotent function, :func:`migrate_audit`, shaped as a catalog
migration step (it runs inside the caller's transaction and commits nothing).
:func:`audit_report` joins the audit with the catalog's ``runs``,
``materializations`` and ``lineage`` tables (when present) to say what ran
where, on which data, under which rule, decided by which model version.
Writes are batched: one transaction per call, through the catalog's own
connection mechanics (:class:`~daskflow.catalog_db.CatalogDB`).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, TypedDict

__all__ = ["AuditStore", "PolicyCheck", "audit_report", "format_audit_report", "migrate_audit", "stock_decisions"]

PolicyOutcome = Literal["unrestricted", "constrained", "refused"]
#: decision actions that bind a task to a worker (others leave placement to Dask)
PLACING_ACTIONS = frozenset({"place", "release"})

_AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS audit_runs (
    run_id TEXT PRIMARY KEY, first_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS audit_runs_first ON audit_runs (first_at);
CREATE TABLE IF NOT EXISTS audit_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT,   -- key NULL: a graph-level decision
    action TEXT NOT NULL, reason TEXT, worker TEXT,
    predicted_duration_s REAL, predicted_peak_memory_bytes INTEGER, quality TEXT, model_version TEXT,
    time REAL NOT NULL, event TEXT NOT NULL);                                -- the whole DecisionEvent, JSON
CREATE INDEX IF NOT EXISTS audit_decisions_run ON audit_decisions (run_id, id);
CREATE INDEX IF NOT EXISTS audit_decisions_key ON audit_decisions (key, id);
CREATE TABLE IF NOT EXISTS audit_policy (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL,
    kind TEXT, asset TEXT, partition TEXT, tags TEXT NOT NULL DEFAULT '{}',
    rules TEXT NOT NULL DEFAULT '[]',          -- JSON list of rule descriptions
    constraints TEXT NOT NULL DEFAULT '{}',    -- the Dask restrictions put in the graph
    allowed_workers TEXT,                      -- JSON list at submission, NULL: not checked
    outcome TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS audit_policy_run ON audit_policy (run_id, id);
CREATE INDEX IF NOT EXISTS audit_policy_key ON audit_policy (key, id);
"""


def migrate_audit(conn: sqlite3.Connection) -> None:
    """Create the audit tables if they are missing (idempotent; commits nothing: a migration step).

    >>> conn = sqlite3.connect(":memory:")
    >>> migrate_audit(conn); migrate_audit(conn)
    >>> sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'audit_%' AND type='table'"))
    ['audit_decisions', 'audit_policy', 'audit_runs']
    """
    for statement in _AUDIT_SQL.split(";"):  # not executescript: it would COMMIT the caller's transaction
        if statement.strip():
            conn.execute(statement)


class PolicyCheck(TypedDict, total=False):
    """The policy check of one task at submission (a row of ``audit_policy``)."""

    key: str
    kind: str                      # asset | check
    asset: str | None
    partition: str | None
    tags: dict[str, str]
    rules: list[str]               # Rule.describe() of each matching rule
    constraints: dict[str, Any]    # placement_rules.task_constraints(...)
    allowed_workers: list[str] | None
    outcome: PolicyOutcome
    message: str
    time: float


def stock_decisions(run_id: str, placements: Mapping[str, str | None], decisions: Iterable[Mapping[str, Any]],
                    now: float) -> list[dict[str, Any]]:
    """``stock`` decisions for the placed tasks that no decision bound to a worker. Pure (time is an argument).

    ``placements``: task key -> the worker it ran on (from the run's records).

    >>> stock_decisions("r", {"a": "tcp://w:1", "b": "tcp://w:2"},
    ...                 [{"key": "a", "action": "place", "worker": "tcp://w:1"}], now=1.0)
    [{'key': 'b', 'run_id': 'r', 'action': 'stock', 'reason': None, 'worker': 'tcp://w:2', 'time': 1.0}]
    """
    placed_by_plugin = {d.get("key") for d in decisions if d.get("action") in PLACING_ACTIONS and d.get("worker")}
    return [{"key": key, "run_id": run_id, "action": "stock", "reason": None, "worker": worker, "time": now}
            for key, worker in placements.items() if key not in placed_by_plugin]


def _max_runs() -> int:
    from daskflow import config

    return max(1, int(config.get("audit.max-runs")))


def _default_path() -> pathlib.Path:
    from daskflow import config

    return pathlib.Path(config.get("catalog.path") or (config.home() / "catalog.sqlite"))


class AuditStore:
    """Audit rows in the catalog SQLite file (``catalog``: a :class:`~daskflow.catalog.Catalog`, a path, or None).

    >>> import tempfile, os
    >>> store = AuditStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"), max_runs=5)
    >>> store.record_decisions("r1", [{"key": "k", "action": "place", "worker": "tcp://w:1", "time": 1.0}])
    1
    >>> [d["worker"] for d in store.decisions_for(run_id="r1")]
    ['tcp://w:1']
    """

    def __init__(self, catalog: Any = None, *, max_runs: int | None = None):
        from daskflow.catalog_db import CatalogDB

        path = getattr(catalog, "path", catalog)
        self.path = pathlib.Path(path if path is not None else _default_path()).expanduser().absolute()
        self.max_runs = int(max_runs) if max_runs is not None else _max_runs()
        # the catalog's own connection mechanics (WAL, busy timeout, per-process connection, its migrations)
        self._db = CatalogDB(self.path)
        self._migrated = False

    def __repr__(self) -> str:
        return f"AuditStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the first also runs :func:`migrate_audit` (a no-op once it is a catalog migration)."""
        with self._db.transaction() as conn:
            if not self._migrated:
                migrate_audit(conn)
            yield conn
        self._migrated = True

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        if not self._migrated:
            with self._write():
                pass
        return self._db.query(sql, params)

    def _register_run(self, conn: sqlite3.Connection, run_id: str, now: float) -> None:
        """Note the run; when it is new, prune the audit of runs beyond the newest ``max_runs``."""
        if conn.execute("INSERT OR IGNORE INTO audit_runs (run_id, first_at) VALUES (?, ?)",
                        (run_id, now)).rowcount:
            old = [r[0] for r in conn.execute("SELECT run_id FROM audit_runs ORDER BY first_at DESC, rowid DESC "
                                              "LIMIT -1 OFFSET ?", (self.max_runs,))]
            for table in ("audit_decisions", "audit_policy", "audit_runs"):
                conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(r,) for r in old])

    # -- writes ---------------------------------------------------------------
    def record_decisions(self, run_id: str, events: Iterable[Mapping[str, Any]]) -> int:
        """Store decision events of one run in one transaction; returns how many were stored."""
        now = time.time()
        rows = []
        for event in events:
            event = {**event, "run_id": event.get("run_id") or run_id}
            if event["run_id"] != run_id:
                continue  # another run's decision (the plugin's deque is shared by runs): not this run's audit
            rows.append((run_id, event.get("key"), str(event.get("action") or "unknown"), event.get("reason"),
                         event.get("worker"), _float(event.get("predicted_duration_s")),
                         _int(event.get("predicted_peak_memory_bytes")), event.get("quality"),
                         event.get("model_version"), float(event.get("time") or now), _json(event)))
        return self._insert_rows(
            run_id, now, rows,
            "INSERT INTO audit_decisions (run_id, key, action, reason, worker, predicted_duration_s, "
            "predicted_peak_memory_bytes, quality, model_version, time, event) VALUES (?,?,?,?,?,?,?,?,?,?,?)")

    def record_policy_checks(self, run_id: str, checks: Iterable[PolicyCheck | Mapping[str, Any]]) -> int:
        """Store the policy check of each task of a run (one transaction); returns how many."""
        now = time.time()
        rows = [(run_id, str(c["key"]), c.get("kind"), c.get("asset"), c.get("partition"), _json(c.get("tags") or {}),
                 _json(list(c.get("rules") or [])), _json(c.get("constraints") or {}),
                 None if c.get("allowed_workers") is None else _json(sorted(c["allowed_workers"])),
                 str(c.get("outcome") or ("constrained" if c.get("rules") else "unrestricted")),
                 str(c.get("message") or ""), float(c.get("time") or now)) for c in checks]
        return self._insert_rows(
            run_id, now, rows,
            "INSERT INTO audit_policy (run_id, key, kind, asset, partition, tags, rules, constraints, "
            "allowed_workers, outcome, message, time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")

    def _insert_rows(self, run_id: str, now: float, rows: list[tuple], sql: str) -> int:
        """Insert ``rows`` of one run with ``sql`` in one transaction (registering the run); returns how many."""
        if not rows:
            return 0
        with self._write() as conn:
            self._register_run(conn, run_id, now)
            conn.executemany(sql, rows)
        return len(rows)

    # -- reads ----------------------------------------------------------------
    def decisions_for(self, run_id: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        """Decision events (the dicts :mod:`daskflow.explain` reads), oldest first, filtered by run and/or key."""
        where, params = _where(run_id=run_id, key=key)
        rows = self.query(f"SELECT event FROM audit_decisions WHERE {where} ORDER BY id", params)
        return [json.loads(r["event"]) for r in rows]

    def policy_checks(self, run_id: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        """Policy-check rows, oldest first."""
        where, params = _where(run_id=run_id, key=key)
        rows = self.query(f"SELECT * FROM audit_policy WHERE {where} ORDER BY id", params)
        out = []
        for row in rows:
            item = dict(row)
            for column in ("tags", "rules", "constraints", "allowed_workers"):
                item[column] = None if item[column] is None else json.loads(item[column])
            item.pop("id")
            out.append(item)
        return out

    def runs(self) -> list[str]:
        """Audited run ids, newest first."""
        return [r[0] for r in self.query("SELECT run_id FROM audit_runs ORDER BY first_at DESC, rowid DESC")]

    def report(self, run_id: str) -> dict[str, Any]:
        """See :func:`audit_report`."""
        return audit_report(run_id, self)


def audit_report(run_id: str, store: AuditStore | Any = None) -> dict[str, Any]:
    """What ran where, on which data, under which rule, decided by which model version.

    ``{"run_id", "run": {...} | None, "tasks": [{key, kind, asset, partition, worker, host, path,
    data_version, inputs: [{asset, partition, path, data_version}], duration_s, rules, constraints,
    policy_outcome, decision: {action, reason, worker, model_version, predicted_duration_s, quality} | None,
    decided_by: "daskflow-steering" | "stock Dask" | None}], "model_versions": [...],
    "counts": {action: n}}``.
    """
    store = store if isinstance(store, AuditStore) else AuditStore(store)
    decisions = store.decisions_for(run_id=run_id)
    checks = store.policy_checks(run_id=run_id)
    query = store.query
    tables = {r[0] for r in query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    run = None
    if "runs" in tables:
        rows = query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        run = {k: rows[0][k] for k in ("pipeline", "status", "started_at", "finished_at")} if rows else None
    materialized: dict[tuple[str | None, str | None], dict] = {}
    if "materializations" in tables:
        for row in query("SELECT * FROM materializations WHERE run_id = ? ORDER BY id", (run_id,)):
            materialized[(row["asset_key"], row["partition"])] = dict(row)
        if "lineage" in tables and materialized:
            ids = [m["id"] for m in materialized.values()]
            inputs: dict[int, list[dict]] = {}
            marks = ",".join("?" * len(ids))
            for row in query(
                    "SELECT l.materialization_id AS mid, m.asset_key, m.partition, m.path, m.data_version "
                    f"FROM lineage l JOIN materializations m ON m.id = l.upstream_id WHERE l.materialization_id "
                    f"IN ({marks}) ORDER BY m.id", ids):
                inputs.setdefault(row["mid"], []).append(
                    {"asset": row["asset_key"], "partition": row["partition"], "path": row["path"],
                     "data_version": row["data_version"]})
            for m in materialized.values():
                m["inputs"] = inputs.get(m["id"], [])
    by_key: dict[str | None, list[dict]] = {}
    for d in decisions:
        by_key.setdefault(d.get("key"), []).append(d)
    keys = list(dict.fromkeys([c["key"] for c in checks] + [k for k in by_key if k is not None]))
    check_of = {c["key"]: c for c in checks}
    tasks = []
    for key in keys:
        check = check_of.get(key, {})
        mat = materialized.get((check.get("asset"), check.get("partition")), {}) if check.get("kind") != "check" else {}
        decision = _deciding(by_key.get(key, []))
        worker = mat.get("worker") or (decision or {}).get("worker")
        tasks.append({
            "key": key, "kind": check.get("kind"), "asset": check.get("asset"), "partition": check.get("partition"),
            "worker": worker, "host": mat.get("host"), "path": mat.get("path"),
            "data_version": mat.get("data_version"), "inputs": mat.get("inputs", []),
            "duration_s": mat.get("duration_s"), "rules": check.get("rules", []),
            "constraints": check.get("constraints", {}), "allowed_workers": check.get("allowed_workers"),
            "policy_outcome": check.get("outcome"),
            "decision": None if decision is None else {
                k: decision.get(k) for k in ("action", "reason", "worker", "model_version", "predicted_duration_s",
                                             "predicted_peak_memory_bytes", "quality")},
            "decided_by": None if decision is None else (
                "stock Dask" if decision.get("action") == "stock" else "daskflow-steering"),
        })
    counts: dict[str, int] = {}
    for d in decisions:
        counts[str(d.get("action"))] = counts.get(str(d.get("action")), 0) + 1
    return {"run_id": run_id, "run": run, "tasks": tasks, "counts": counts,
            "model_versions": sorted({str(d["model_version"]) for d in decisions if d.get("model_version")}),
            "graph_decisions": by_key.get(None, [])}


def format_audit_report(report: Mapping[str, Any]) -> str:
    """The report as text for ``daskflow audit --run RUN_ID`` (``--json`` prints the dict itself).

    >>> print(format_audit_report({"run_id": "r1", "run": None, "tasks": [], "counts": {}, "model_versions": []}))
    run r1: no audit rows (the run is unknown, or older than daskflow.audit.max-runs runs)
    """
    tasks = report.get("tasks") or []
    if not tasks and not report.get("counts"):
        return (f"run {report['run_id']}: no audit rows (the run is unknown, or older than daskflow.audit.max-runs "
                "runs)")
    run = report.get("run") or {}
    head = f"run {report['run_id']}" + (f" ({run.get('pipeline')}, {run.get('status')})" if run else "")
    models = ", ".join(report.get("model_versions") or []) or "none"
    lines = [head, f"decisions: {_counts(report.get('counts') or {})}; model versions: {models}", ""]
    for task in tasks:
        where = task.get("asset") or task["key"]
        if task.get("partition"):
            where += f"[{task['partition']}]"
        decision = task.get("decision") or {}
        by = task.get("decided_by") or "not recorded"
        if decision.get("model_version") and by != "stock Dask":
            by += f" (model {decision['model_version']}, {decision.get('action')}"
            by += f": {decision['reason']})" if decision.get("reason") else ")"
        timing_text = ""
        if decision.get("predicted_duration_s") is not None:
            timing_text = f"; predicted {_secs(decision['predicted_duration_s'])} vs actual {_secs(task.get('duration_s'))}"
        elif task.get("duration_s") is not None:
            timing_text = f"; took {_secs(task['duration_s'])} (no prediction)"
        if task.get("policy_outcome") == "refused":
            placed = "not run: refused by the placement rules"
        elif task.get("worker"):
            placed = f"on {task['worker']}" + (f" / {task['host']}" if task.get("host") else "") + f"; placed by {by}"
        else:
            placed = "no placement recorded (not run, or a check)" if by == "not recorded" else f"placed by {by}"
        lines.append(f"{where} ({task.get('kind') or 'task'}) {placed}{timing_text}")
        if task.get("rules"):
            lines.append(f"  policy: {task.get('policy_outcome')} by {'; '.join(task['rules'])}")
        if task.get("path"):
            lines.append(f"  wrote {task['path']} (data version {task.get('data_version')})")
        for inp in task.get("inputs") or []:
            lines.append(f"  read {inp['path']} ({inp['asset']}" + (f"[{inp['partition']}]" if inp.get("partition")
                                                                    else "") + ")")
    return "\n".join(lines)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "none"


def _secs(value: Any) -> str:
    return "?" if value is None else f"{float(value):.3g} s"


def _deciding(decisions: list[dict]) -> dict | None:
    """The decision that placed a task: the last placing one, else the last one."""
    placing = [d for d in decisions if d.get("action") in PLACING_ACTIONS | {"stock"}]
    return (placing or decisions or [None])[-1]


def _where(**equal: Any) -> tuple[str, list[Any]]:
    conditions = [(c, v) for c, v in equal.items() if v is not None]
    return " AND ".join(f"{c} = ?" for c, _ in conditions) or "1", [v for _, v in conditions]


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
