"""Placement rules: validation, matching, the translation to Dask restrictions, and Dask honouring it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskflow.placement_rules import (
    PRESENCE_AMOUNT,
    PolicyError,
    Rule,
    allowed_workers,
    check_selection,
    parse_rules,
    rules_by_task,
    rules_for,
    rules_from_config,
    satisfies,
    task_constraints,
)

PII = {"match": {"classification": "pii"}, "allow": {"resources": ["secure"]}}
EU = {"match": {"region": "eu"}, "allow": {"hosts": ["10.0.0.5", "10.0.0.6"]}}
WORKERS = {
    "tcp://10.0.0.5:1": {"host": "10.0.0.5", "resources": {"secure": 1}},
    "tcp://10.0.0.6:1": {"host": "10.0.0.6", "resources": {}},
    "tcp://10.0.0.7:1": {"host": "10.0.0.7", "resources": {"secure": 2, "GPU": 1}},
}


def test_a_pii_asset_may_run_only_on_secure_workers():
    rules = parse_rules([PII, EU])
    assert allowed_workers(rules_for({"classification": "pii"}, rules), WORKERS) == {
        "tcp://10.0.0.5:1", "tcp://10.0.0.7:1"}
    assert allowed_workers(rules_for({"classification": "pii", "region": "eu"}, rules), WORKERS) == {
        "tcp://10.0.0.5:1"}
    assert allowed_workers(rules_for({"classification": "public"}, rules), WORKERS) == set(WORKERS)


def test_the_translation_is_dask_restrictions_that_forbid_other_workers():
    rules = parse_rules([PII, EU])
    assert task_constraints(rules) == {"resources": {"secure": PRESENCE_AMOUNT}, "workers": ["10.0.0.5", "10.0.0.6"],
                                       "allow_other_workers": False}
    assert task_constraints([]) == {}
    counted = parse_rules([{"match": {"a": "1"}, "allow": {"resources": {"GPU": 1}}},
                           {"match": {"b": "1"}, "allow": {"resources": {"GPU": 2}}}])
    assert task_constraints(counted)["resources"] == {"GPU": 2.0}


def test_host_lists_intersect_and_an_empty_intersection_is_an_error():
    rules = parse_rules([EU, {"match": {"x": "y"}, "allow": {"hosts": ["10.0.0.9"]}}])
    with pytest.raises(PolicyError, match=r"rule 0 .* and rule 1 .* no host in common"):
        task_constraints(rules)
    assert allowed_workers(rules, WORKERS) == set()


def test_match_values_may_be_a_list_meaning_any_of():
    [rule] = parse_rules([{"match": {"classification": ["pii", "phi"]}, "allow": {"hosts": ["h"]}}])
    assert rule.matches({"classification": "phi"}) and not rule.matches({"classification": "public"})
    assert not rule.matches({}) and not rule.matches(None)


def test_rules_come_from_dask_config_and_from_json_in_the_environment(monkeypatch):
    import dask.config

    with dask.config.set({"daskflow.policy.rules": [PII]}):
        assert [r.index for r in rules_from_config()] == [0]
    # the env form: dask.config keeps a JSON list it cannot literal_eval as a string
    with dask.config.set({"daskflow.policy.rules": '[{"match": {"classification": "pii"}, '
                                                    '"allow": {"resources": ["secure"], "hosts": null}}]'}):
        assert rules_from_config()[0].resources == (("secure", PRESENCE_AMOUNT),)
    monkeypatch.setenv("DASK_DASKFLOW__POLICY__RULES", '[{"match": {"c": "pii"}, "allow": {"hosts": ["h1"]}}]')
    dask.config.refresh()
    try:
        assert rules_from_config()[0].hosts == ("h1",)
    finally:
        monkeypatch.delenv("DASK_DASKFLOW__POLICY__RULES")
        dask.config.refresh()
    assert rules_from_config() == []


@pytest.mark.parametrize("raw, message", [
    ("[{", r"^daskflow\.policy\.rules: not valid JSON .*; fix: DASK_DASKFLOW__POLICY__RULES="),
    ({"match": {}}, r"single mapping .*fix: put the rule in a list"),
    ([PII, "pii"], r"^daskflow\.policy\.rules\[1\]: a rule must be a mapping"),
    ([{"match": {"c": "pii"}}], r"\[0\]: 'allow' must be a mapping"),
    ([{"match": {}, "allow": {"hosts": ["h"]}}], r"\[0\]: 'match' must be a non-empty mapping"),
    ([{"match": {"c": "pii"}, "allow": {"host": ["h"]}}], r"\[0\]: unknown key\(s\) \['host'\] in 'allow'.*'hosts'"),
    ([{"match": {"c": "pii"}, "allow": {"resources": []}}], r"\[0\]: allow.resources must be a non-empty"),
    ([{"match": {"c": "pii"}, "allow": {"resources": {"GPU": 0}}}], r"\[0\]: resource 'GPU' needs a positive amount"),
    ([{"match": {"c": "pii"}, "allow": {"resources": None, "hosts": None}}], r"\[0\]: 'allow' names no resource"),
    ([{"match": {"c": "pii"}, "allow": {"hosts": ["h"]}, "deny": {}}], r"\[0\]: unknown key\(s\) \['deny'\]"),
])
def test_bad_rules_are_one_line_errors_naming_the_rule_and_the_fix(raw, message):
    with pytest.raises(PolicyError, match=message) as info:
        parse_rules(raw)
    assert "\n" not in str(info.value) and "fix:" in str(info.value)


def test_a_selection_without_an_allowed_worker_fails_naming_asset_rule_and_fix():
    rules = parse_rules([PII])
    public = {"tcp://10.0.0.6:1": WORKERS["tcp://10.0.0.6:1"]}
    error = check_selection({"patients": {"classification": "pii"}, "weather": {}}, rules, public)
    assert isinstance(error, PolicyError)
    text = str(error)
    assert "asset 'patients'" in text and "rule 0 (classification=pii -> resources [secure])" in text
    assert 'dask worker --resources "secure=1"' in text
    assert check_selection({"patients": {"classification": "pii"}}, rules, WORKERS) is None
    assert check_selection({"weather": {}}, rules, {}) is None


def test_a_consumer_obeys_the_rules_of_the_data_it_holds():
    rules = parse_rules([PII, EU])
    by_task = rules_by_task({"patients": {"classification": "pii"}, "counts": {"region": "eu"}, "report": {}},
                            {"counts": ["patients"], "report": ["counts"]}, rules)
    assert [r.index for r in by_task["patients"]] == [0]
    assert [r.index for r in by_task["counts"]] == [0, 1]
    assert [r.index for r in by_task["report"]] == [1]  # holds counts (eu), not patients


# -- property: the allowed set is exactly the workers satisfying every matching rule --------------------
TAGS, VALUES, RESOURCES, HOSTS = ["classification", "region", "team"], ["a", "b", "c"], ["secure", "GPU"], \
    ["10.0.0.1", "10.0.0.2", "10.0.0.3"]

raw_rule = st.fixed_dictionaries({
    "match": st.dictionaries(st.sampled_from(TAGS), st.one_of(st.sampled_from(VALUES),
                             st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)), min_size=1, max_size=2),
    "allow": st.one_of(
        st.fixed_dictionaries({"resources": st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=2)}),
        st.fixed_dictionaries({"resources": st.dictionaries(st.sampled_from(RESOURCES),
                                                            st.sampled_from([0.5, 1, 2]), min_size=1)}),
        st.fixed_dictionaries({"hosts": st.lists(st.sampled_from(HOSTS), min_size=1, max_size=3)}),
        st.fixed_dictionaries({"resources": st.lists(st.sampled_from(RESOURCES), min_size=1),
                               "hosts": st.lists(st.sampled_from(HOSTS), min_size=1)})),
})
workers_strategy = st.dictionaries(
    st.integers(0, 20).map(lambda i: f"tcp://w{i}:1"),
    st.fixed_dictionaries({"host": st.sampled_from(HOSTS),
                           "resources": st.dictionaries(st.sampled_from(RESOURCES), st.sampled_from([0, 0.5, 1, 3]))}),
    max_size=6)


def _rule_allows(rule: Rule, address: str, info: dict) -> bool:
    """The rule read literally, independent of the translation under test."""
    for name, amount in rule.resources:
        have = info["resources"].get(name, 0)
        if (have <= 0) if amount == PRESENCE_AMOUNT else (have < amount):
            return False
    return not rule.hosts or info["host"] in rule.hosts or address in rule.hosts


@settings(max_examples=300, deadline=None)
@given(st.lists(raw_rule, max_size=4), st.dictionaries(st.sampled_from(TAGS), st.sampled_from(VALUES)),
       workers_strategy)
def test_property_allowed_workers_are_exactly_those_satisfying_every_matching_rule(raw, tags, workers):
    rules = parse_rules(raw)
    matching = rules_for(tags, rules)
    expected = {a for a, info in workers.items() if all(_rule_allows(r, a, info) for r in matching)}
    assert allowed_workers(matching, workers) == expected
    error = check_selection({"x": tags}, rules, workers)
    assert (error is None) == bool(expected or not matching)


# -- Dask honours the translation, with no plugin installed -------------------------------------------
def _graph(keys, constraints):
    from dask._task_spec import Task
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
    from distributed import get_worker

    def where(i):
        return get_worker().address

    layers = {k: MaterializedLayer({k: Task(k, where, i)}, annotations=dict(constraints))
              for i, k in enumerate(keys)}
    return HighLevelGraph(layers, {k: set() for k in keys})


def test_dask_runs_restricted_tasks_only_on_allowed_workers_and_leaves_them_waiting_otherwise():
    from distributed.utils_test import gen_cluster

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 2, {"resources": {"secure": 1}}), ("127.0.0.1", 2)])
    async def run(c, s, secure, public):
        keys = [f"pii-{i}" for i in range(12)]
        constraints = task_constraints(parse_rules([PII]))
        placed = await c.gather(c.get(_graph(keys, constraints), keys, sync=False))
        assert set(placed) == {secure.address}
        # restricted to an address: the host form of the translation
        by_address = task_constraints(parse_rules([{"match": {"c": "x"}, "allow": {"hosts": [public.address]}}]))
        placed = await c.gather(c.get(_graph(["eu-0", "eu-1"], by_address), ["eu-0", "eu-1"], sync=False))
        assert set(placed) == {public.address}
        # no worker has the resource: the task waits, it never runs elsewhere
        none = task_constraints(parse_rules([{"match": {"c": "x"}, "allow": {"resources": ["vault"]}}]))
        [future] = c.get(_graph(["vault-0"], none), ["vault-0"], sync=False)
        for _ in range(200):
            if s.tasks.get("vault-0") is not None and s.tasks["vault-0"].state == "no-worker":
                break
            await asyncio.sleep(0.01)
        assert s.tasks["vault-0"].state == "no-worker"
        assert satisfies(none, secure.address, {"host": "127.0.0.1", "resources": dict(secure.state.total_resources)}) is False
        await c.cancel([future])

    run()


def _slow_where(seconds):
    import time as _time

    from distributed import get_worker

    _time.sleep(seconds)
    return get_worker().address


def test_a_restricted_task_whose_allowed_worker_dies_waits_and_never_runs_elsewhere():
    """Stock Dask, no plugin: kill the only secure worker mid-task; the task waits, then runs on a new secure one."""
    from distributed import Worker
    from distributed.utils_test import gen_cluster

    @gen_cluster(client=True, nthreads=[("127.0.0.1", 1, {"resources": {"secure": 1}}), ("127.0.0.1", 1)],
                 config={"distributed.scheduler.allowed-failures": 5})
    async def run(c, s, secure, public):
        constraints = task_constraints(parse_rules([PII]))
        future = c.submit(_slow_where, 0.5, key="pii-slow", pure=False, **constraints)
        for _ in range(500):
            if s.tasks.get("pii-slow") is not None and s.tasks["pii-slow"].state == "processing":
                break
            await asyncio.sleep(0.01)
        assert s.tasks["pii-slow"].processing_on.address == secure.address
        await secure.close()
        for _ in range(500):
            if s.tasks["pii-slow"].state == "no-worker":
                break
            await asyncio.sleep(0.01)
        assert s.tasks["pii-slow"].state == "no-worker"  # waiting, not moved to the public worker
        assert "pii-slow" not in public.state.tasks
        async with Worker(s.address, nthreads=1, resources={"secure": 1}) as replacement:
            assert await future == replacement.address

    run()


def test_policy_checks_give_each_task_its_constraints_and_an_outcome_for_the_audit():
    from daskflow.placement_rules import policy_checks

    rules = parse_rules([PII])
    tasks = {"patients-r": {"kind": "asset", "asset": "patients", "tags": {"classification": "pii"}},
             "patients-r.check": {"kind": "check", "asset": "patients", "tags": {}, "upstream": ["patients-r"]},
             "weather-r": {"kind": "asset", "asset": "weather", "tags": {}}}
    checks = {c["key"]: c for c in policy_checks(tasks, rules, WORKERS, now=3.0)}
    assert checks["patients-r"]["outcome"] == "constrained"
    assert checks["patients-r"]["allowed_workers"] == ["tcp://10.0.0.5:1", "tcp://10.0.0.7:1"]
    assert checks["patients-r.check"]["constraints"] == checks["patients-r"]["constraints"]  # holds the pii value
    assert checks["weather-r"] == {**checks["weather-r"], "outcome": "unrestricted", "constraints": {}, "rules": []}
    refused = policy_checks(tasks, rules, {"tcp://10.0.0.6:1": WORKERS["tcp://10.0.0.6:1"]})
    assert [c["outcome"] for c in refused] == ["refused", "refused", "unrestricted"]
    assert "fix: start a worker" in refused[0]["message"]
