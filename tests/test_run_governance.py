"""Governance wiring without a real cluster: rules into the graph, refusal, decision capture, resources.

::

    patients (classification=pii) --> ages        public
"""

from __future__ import annotations

import dask.config
import pytest

import daskflow
from daskflow.daskgraph import TaskSpec, build_graph
from daskflow.decision_capture import DecisionCapture, capture_for
from daskflow.errors import AssetDefinitionError
from daskflow.graph import build_asset_graph
from daskflow.placement_rules import PolicyError
from daskflow.planning import (
    CatalogFacts,
    build_task_specs,
    plan_run,
    select_run,
    task_facts,
)
from daskflow.run_governance import apply_policy
from daskflow.storage import AssetStore

PII = [{"match": {"classification": "pii"}, "allow": {"resources": ["secure"]}}]


@daskflow.asset(tags={"classification": "pii"})
def patients():
    return [{"id": 1}]


@daskflow.asset
def ages(patients):
    return [{"n": len(patients)}]


@daskflow.asset(resources={"GPU": 1})
def public():
    return [{"x": 1}]


def _plan(tmp_path, selection=None, facts=None):
    graph = build_asset_graph(daskflow.Definitions(assets=[patients, ages, public]))
    chosen = select_run(graph, selection, None)
    plan = plan_run(graph, chosen, "r1", facts or CatalogFacts())
    return plan, build_task_specs(plan, AssetStore(str(tmp_path / "data")), {})


class FakeClient:
    id = "fake-client"

    def __init__(self, workers):
        self.workers = workers
        self.subscribed: dict = {}
        self.asked = 0

    def scheduler_info(self, n_workers=-1):
        self.asked += 1
        return {"workers": self.workers}

    def subscribe_topic(self, topic, handler):
        self.subscribed[topic] = handler

    def unsubscribe_topic(self, topic):
        self.subscribed.pop(topic, None)

    def run_on_scheduler(self, function, *args):
        return [{"key": "ages-r1", "run_id": "r1", "action": "place", "worker": "tcp://a:1", "time": 2.0},
                {"key": "x-r2", "run_id": "r2", "action": "place", "worker": "tcp://a:1", "time": 2.5}]


SECURE = {"tcp://a:1": {"host": "a", "resources": {"secure": 1, "GPU": 1}}, "tcp://b:1": {"host": "b", "resources": {}}}


def test_task_facts_carry_tags_inherited_inputs_and_resources(tmp_path):
    plan, _ = _plan(tmp_path)
    facts = task_facts(plan, {"team": "x"})
    assert facts["patients-r1"]["tags"] == {"team": "x", "classification": "pii"}
    assert facts["ages-r1"]["upstream"] == ["patients-r1"]
    assert facts["public-r1"]["resources"] == {"GPU": 1.0}


def test_an_asset_reading_classified_data_from_an_earlier_run_is_constrained_too(tmp_path):
    from daskflow.catalog_records import Materialization

    latest = Materialization(id=1, run_id="r0", asset_key="patients", partition=None, path="/d/p.json",
                             format="json", rows=1, bytes=1, schema=None, host="h", worker="w", code_version=None,
                             data_version="v", duration_s=0.1, created_at=0.0)
    plan, tasks = _plan(tmp_path, "ages", CatalogFacts.from_latest({("patients", None): latest}))
    facts = task_facts(plan, {})
    assert facts["ages-r1"]["input_tags"] == [{"classification": "pii"}]
    with dask.config.set({"daskflow.policy.rules": PII}):
        _checks, refused = apply_policy(tasks, facts, FakeClient(SECURE), now=1.0)
    assert refused is None and tasks[0].constraints["resources"] == {"secure": 1e-06}


def test_rules_become_dask_restrictions_in_the_submitted_graph(tmp_path):
    plan, tasks = _plan(tmp_path)
    client = FakeClient(SECURE)
    with dask.config.set({"daskflow.policy.rules": PII}):
        checks, refused = apply_policy(tasks, task_facts(plan, {}), client, now=1.0)
    assert refused is None and client.asked == 1
    by_key = {t.key: t for t in tasks}
    assert by_key["patients-r1"].constraints == {"resources": {"secure": 1e-06}, "allow_other_workers": False}
    assert by_key["ages-r1"].constraints["resources"] == {"secure": 1e-06}  # it holds the pii data
    assert by_key["public-r1"].constraints == {"resources": {"GPU": 1.0}, "allow_other_workers": False}
    layers = build_graph(tasks).layers
    assert layers["patients-r1"].annotations["resources"] == {"secure": 1e-06}
    assert layers["patients-r1"].annotations["allow_other_workers"] is False
    assert {c["key"]: c["allowed_workers"] for c in checks}["patients-r1"] == ["tcp://a:1"]


def test_no_rules_no_resources_never_asks_the_scheduler(tmp_path):
    plan, tasks = _plan(tmp_path, "patients")
    client = FakeClient(SECURE)
    checks, refused = apply_policy(tasks, task_facts(plan, {}), client)
    assert refused is None and client.asked == 0 and [c["outcome"] for c in checks] == ["unrestricted"]
    assert "resources" not in (build_graph(tasks).layers["patients-r1"].annotations or {})


def test_a_classified_asset_without_an_allowed_worker_is_refused_naming_asset_rule_and_fix(tmp_path):
    plan, tasks = _plan(tmp_path, "patients")
    with dask.config.set({"daskflow.policy.rules": PII}):
        _checks, refused = apply_policy(tasks, task_facts(plan, {}), FakeClient({"tcp://b:1": SECURE["tcp://b:1"]}))
    assert isinstance(refused, PolicyError)
    message = str(refused)
    assert "'patients'" in message and "rule 0 (classification=pii -> resources [secure])" in message
    assert 'dask worker --resources "secure=1"' in message and "worker-resources" in message
    assert "\n" not in message and not tasks[0].constraints  # nothing set: nothing runs


def test_an_asset_whose_resources_no_worker_has_is_refused(tmp_path):
    plan, tasks = _plan(tmp_path, "public")
    _, refused = apply_policy(tasks, task_facts(plan, {}), FakeClient({"tcp://b:1": SECURE["tcp://b:1"]}))
    assert "'public'" in str(refused) and "GPU=1" in str(refused)


def test_asset_resources_are_validated():
    with pytest.raises(AssetDefinitionError, match="positive finite amount"):
        daskflow.asset(resources={"GPU": 0}, name="gpu")(lambda: 1)
    with pytest.raises(AssetDefinitionError, match="must be a dict"):
        daskflow.asset(resources=["GPU"], name="gpu")(lambda: 1)


def test_unknown_task_constraints_are_refused():
    with pytest.raises(ValueError, match="unknown constraint 'host'"):
        build_graph([TaskSpec("k", len, constraints={"host": "a"})])


def test_decision_capture_keeps_this_runs_events_and_merges_the_plugin_deque():
    client = FakeClient({})
    capture = capture_for(client, "r1")
    handler = client.subscribed["daskflow-steering"]
    handler((1.0, {"key": "patients-r1", "run_id": "r1", "action": "place", "worker": "tcp://a:1", "time": 1.0}))
    handler((1.1, {"key": "other", "run_id": "r2", "action": "place", "time": 1.1}))       # another run
    handler((1.2, {"key": None, "run_id": None, "action": "fallback", "time": 1.2}))       # graph-wide
    handler((2.0, {"key": "ages-r1", "run_id": "r1", "action": "place", "worker": "tcp://a:1", "time": 2.0}))
    events = capture.close("r1")
    assert [(e["key"], e["action"]) for e in events] == [
        ("patients-r1", "place"), (None, "fallback"), ("ages-r1", "place")]  # the deque's copy is not doubled
    assert "daskflow-steering" not in client.subscribed  # the last run closed: unsubscribed


def test_decision_capture_survives_a_scheduler_that_is_gone():
    class Gone(FakeClient):
        def run_on_scheduler(self, function, *args):
            raise OSError("closed")

    capture = DecisionCapture(Gone({}))
    capture.open("r1")
    capture.handle((1.0, {"key": "k", "run_id": "r1", "action": "hold", "time": 1.0}))
    assert [e["action"] for e in capture.close("r1")] == ["hold"]


def test_waiting_watch_warns_once_per_asset_after_the_wait_with_a_fake_clock():
    from daskflow.run_governance import WaitingWatch

    checks = [{"key": "a-r1-p1", "asset": "a", "constraints": {"resources": {"secure": 1e-6}},
               "rules": ["rule 0 (classification=pii -> resources [secure])"]},
              {"key": "a-r1-p2", "asset": "a", "constraints": {"resources": {"secure": 1e-6}}, "rules": []},
              {"key": "free-r1", "asset": "free", "constraints": {}}]
    watch = WaitingWatch(None, checks, after_s=10.0)
    assert set(watch.checks) == {"a-r1-p1", "a-r1-p2"}  # unconstrained tasks are not watched
    assert watch.observe({"a-r1-p1"}, now=0.0) == []
    assert watch.observe(set(), now=5.0) == []           # it ran again: the clock restarts
    assert watch.observe({"a-r1-p1", "a-r1-p2"}, now=6.0) == []
    with pytest.warns(RuntimeWarning, match="asset 'a' is waiting: no connected worker is allowed by rule 0"):
        [message] = watch.observe({"a-r1-p1", "a-r1-p2"}, now=16.5)
    assert "will not run elsewhere" in message and "\n" not in message
    assert watch.observe({"a-r1-p1", "a-r1-p2"}, now=60.0) == []  # once per asset


def test_unrunnable_keys_lists_tasks_no_worker_can_run():
    from distributed.utils_test import gen_cluster

    from daskflow import compat

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
    async def check(c, s, a):
        import asyncio

        import dask

        with dask.annotate(resources={"secure": 1}):
            future = c.submit(len, [1], key="needs-secure")
        free = c.submit(len, [1, 2], key="free")
        await free
        for _ in range(100):
            if compat.unrunnable_keys(s, ["needs-secure", "free"]):
                break
            await asyncio.sleep(0.01)
        assert compat.unrunnable_keys(s, ["needs-secure", "free"]) == ["needs-secure"]
        del future

    check()
