"""End to end through the CLI on the embedded cluster: OpenLineage from config, rules, the durable audit.

``daskflow run examples/etl_pipeline.py`` with only environment settings:
OpenLineage on with a file transport, a rule sending ``layer=raw`` assets to
``secure`` workers, and embedded workers started with ``secure=1``. Then, after
the cluster is gone: every event in the file validates against the OpenLineage
schema and pairs START with COMPLETE; ``daskflow audit --run`` tells what ran
where under which rule; the audit holds a decision for every asset task.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = pathlib.Path(__file__).resolve().parents[1]
RAW_SECURE = '[{"match": {"layer": "raw"}, "allow": {"resources": ["secure"]}}]'


def _cli(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "daskflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=str(env["DASKFLOW_HOME"]))


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "OPENLINEAGE"))}
    env.update(PYTHONPATH=str(ROOT), DASKFLOW_HOME=str(home), DASK_DASKFLOW__POLICY__RULES=RAW_SECURE)
    return env


def test_run_exports_lineage_enforces_rules_and_leaves_an_audit(env, tmp_path):
    pytest.importorskip("openlineage.client")
    pytest.importorskip("jsonschema")
    from tests.lineage.test_openlineage import validate_event

    events_file = tmp_path / "lineage.jsonl"
    env.update(DASK_DASKFLOW__OPENLINEAGE__ENABLED="true",
               DASK_DASKFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
                   {"type": "file", "log_file_path": str(events_file), "append": True}),
               DASK_DASKFLOW__EXECUTION__WORKER_RESOURCES='{"secure": 1}')
    run = _cli(["run", str(ROOT / "examples" / "etl_pipeline.py")], env)
    assert run.returncode == 0, run.stderr[-2000:]

    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    assert events, "no OpenLineage event was written"
    kinds: dict[str, list[str]] = {}
    for event in events:
        validate_event(event)
        kinds.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert all(k == ["START", "COMPLETE"] for k in kinds.values()), kinds

    from daskflow.audit import AuditStore
    from daskflow.catalog import Catalog

    catalog = Catalog(str(pathlib.Path(env["DASKFLOW_HOME"]) / "catalog.sqlite"))
    [record] = catalog.runs()
    audit = _cli(["audit", "--run", record.run_id[:12]], env, timeout=60)
    assert audit.returncode == 0, audit.stderr
    assert "policy: constrained by rule 0 (layer=raw -> resources [secure])" in audit.stdout
    assert "placed by stock Dask" in audit.stdout and "Traceback" not in audit.stderr
    report = json.loads(_cli(["audit", "--run", record.run_id, "--json"], env, timeout=60).stdout)
    assets = [t for t in report["tasks"] if t["kind"] == "asset"]
    assert assets and all(t["worker"] and t["decision"] for t in assets)
    store = AuditStore(catalog)
    key = assets[0]["key"]
    assert store.decisions_for(run_id=record.run_id, key=key), "explain's fallback reads decisions by run and key"


def test_a_rule_no_embedded_worker_satisfies_is_one_line_and_runs_nothing(env):
    run = _cli(["run", str(ROOT / "examples" / "etl_pipeline.py")], env)
    assert run.returncode == 2, (run.stdout, run.stderr[-2000:])
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rule 0 (layer=raw -> resources [secure])" in errors[0]
    assert "daskflow.execution.worker-resources" in errors[0] and "Traceback" not in run.stderr
    data = pathlib.Path(env["DASKFLOW_HOME"]) / "data"
    assert not data.exists() or not any(p.is_file() for p in data.rglob("*"))
