"""Placement rules: which workers may run (and hold the data of) classified assets.

Pure functions over plain data, except :func:`rules_from_config` (and
:func:`rules_for` called without ``rules=``), which read the config.

Design note
-----------
Assets carry classification tags (``tags={"classification": "pii"}``); rules in
``daskflow.policy.rules`` map tag values to the workers allowed for them::

    daskflow:
      policy:
        rules:
          - match: {classification: pii}          # every key must match; a list value is any-of
            allow: {resources: [secure]}          # workers started with --resources secure=1
          - match: {region: eu}
            allow: {hosts: [10.0.0.5, 10.0.0.6]}  # as the scheduler sees them (IPs or worker addresses)

(or the same list as JSON in ``DASK_DASKFLOW__POLICY__RULES``). A worker is
allowed for a task when it satisfies EVERY rule matching the task's tags: it has
each listed resource (a list names resources that must be present; a mapping
gives minimum amounts) and, where a rule lists hosts, it is on one of them.

Enforcement is not this module's job and not the steering plugin's: the client
turns the matching rules into Dask's own task restrictions
(:func:`task_constraints`: a ``resources`` requirement and/or a ``workers``
host restriction, with ``allow_other_workers=False``) and puts them in the
graph it submits, so they hold with the plugin off, in shadow mode and on
fallback; a task whose allowed workers are all gone waits in ``no-worker``
rather than running elsewhere. Everything else here is derived from that one
translation: :func:`allowed_workers` simulates Dask's restriction check on a
worker table, and :func:`check_selection` refuses a selection before anything
runs when a classified asset has no allowed worker.

A list of resources is a *presence* requirement: Dask counts resources, so each
task asks for :data:`PRESENCE_AMOUNT` of it, which leaves a worker started with
``--resources secure=1`` free to run as many such tasks at once as it has
threads. A mapping (``resources: {GPU: 1}``) is a counted requirement.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from daskflow.errors import PolicyError  # re-exported (it was defined here)

#: what a presence requirement asks of a worker resource (see the module note)
PRESENCE_AMOUNT = 1e-6
_RULE_KEYS = {"match", "allow"}
_ALLOW_KEYS = {"resources", "hosts"}
_EXAMPLE = '[{"match": {"classification": "pii"}, "allow": {"resources": ["secure"]}}]'


class WorkerInfo(TypedDict, total=False):
    """One worker as the rules see it (a subset of ``Client.scheduler_info()["workers"][address]``)."""

    host: str
    resources: dict[str, float]


class TaskConstraints(TypedDict, total=False):
    """Dask task restrictions for one task: the ``dask.annotate`` / ``Client.submit`` keywords of the same names."""

    resources: dict[str, float]
    workers: list[str]
    allow_other_workers: bool


@dataclass(frozen=True)
class Rule:
    """One validated rule; ``index`` is its position in ``daskflow.policy.rules``."""

    index: int
    match: tuple[tuple[str, tuple[str, ...]], ...]  # (tag, allowed values): all tags must match, any value
    resources: tuple[tuple[str, float], ...] = ()    # (resource, minimum amount)
    hosts: tuple[str, ...] = ()                      # empty: any host

    def matches(self, tags: Mapping[str, Any] | None) -> bool:
        """True when every ``match`` tag has one of its values in ``tags``.

        >>> parse_rules([{"match": {"classification": "pii"}, "allow": {"hosts": ["h"]}}])[0].matches(
        ...     {"classification": "pii", "team": "x"})
        True
        """
        tags = tags or {}
        return all(tag in tags and str(tags[tag]) in values for tag, values in self.match)

    def describe(self) -> str:
        """``rule 0 (classification=pii -> resources [secure])``."""
        match = ", ".join(f"{t}={'|'.join(v)}" for t, v in self.match)
        allow = []
        if self.resources:
            allow.append("resources [" + ", ".join(r if a == PRESENCE_AMOUNT else f"{r}>={a:g}"
                                                   for r, a in self.resources) + "]")
        if self.hosts:
            allow.append("hosts [" + ", ".join(self.hosts) + "]")
        return f"rule {self.index} ({match} -> {'; '.join(allow)})"


# -- parsing and validation ----------------------------------------------------
def _fail(index: int | None, problem: str, fix: str) -> PolicyError:
    where = "daskflow.policy.rules" if index is None else f"daskflow.policy.rules[{index}]"
    return PolicyError(f"{where}: {problem}; fix: {fix}")


def _strings(value: Any, index: int, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, (str, int, float, bool)) else value
    if not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(v, (str, int, float, bool)) and str(v) for v in items):
        raise _fail(index, f"{what} must be a non-empty string or list of strings, got {value!r}",
                    f"write {what} as e.g. [secure]")
    return tuple(str(v) for v in items)


def _rule(index: int, raw: Any) -> Rule:
    if not isinstance(raw, Mapping):
        raise _fail(index, f"a rule must be a mapping with 'match' and 'allow', got {type(raw).__name__}",
                    f"write it as {_EXAMPLE[1:-1]}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise _fail(index, f"unknown key(s) {sorted(unknown)}", "use only 'match' and 'allow'")
    match = raw.get("match")
    if not isinstance(match, Mapping) or not match:
        raise _fail(index, f"'match' must be a non-empty mapping of tag: value, got {match!r}",
                    "e.g. match: {classification: pii}")
    allow = raw.get("allow")
    if not isinstance(allow, Mapping) or not allow:
        raise _fail(index, f"'allow' must be a mapping with 'resources' and/or 'hosts', got {allow!r}",
                    "e.g. allow: {resources: [secure]}")
    unknown = set(allow) - _ALLOW_KEYS
    if unknown:
        raise _fail(index, f"unknown key(s) {sorted(unknown)} in 'allow'", "use only 'resources' and 'hosts'")
    resources: list[tuple[str, float]] = []
    raw_resources = allow.get("resources")
    if isinstance(raw_resources, Mapping):
        for name, amount in raw_resources.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
                raise _fail(index, f"resource {name!r} needs a positive amount, got {amount!r}",
                            f"e.g. resources: {{{name}: 1}}, or a list [{name}] for presence")
            resources.append((str(name), float(amount)))
    elif raw_resources is not None:
        resources = [(name, PRESENCE_AMOUNT) for name in _strings(raw_resources, index, "allow.resources")]
    hosts = _strings(allow["hosts"], index, "allow.hosts") if allow.get("hosts") is not None else ()
    if not resources and not hosts:
        raise _fail(index, "'allow' names no resource and no host, so no worker would be allowed",
                    "give allow.resources or allow.hosts")
    return Rule(index, tuple((str(tag), _strings(values, index, f"match.{tag}")) for tag, values in match.items()),
                tuple(sorted(resources)), tuple(dict.fromkeys(hosts)))


def parse_rules(raw: Any) -> list[Rule]:
    """Validate rules given as a list, or as that list in JSON (the env-var form); raise :class:`PolicyError`.

    >>> [r.describe() for r in parse_rules(_EXAMPLE)]
    ['rule 0 (classification=pii -> resources [secure])']
    """
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise _fail(None, f"not valid JSON ({exc})", f"DASK_DASKFLOW__POLICY__RULES='{_EXAMPLE}'") from None
    if isinstance(raw, Mapping):
        raise _fail(None, "a single mapping where a list of rules is expected", "put the rule in a list: [ {...} ]")
    if not isinstance(raw, (list, tuple)):
        raise _fail(None, f"must be a list of rules, got {type(raw).__name__}", f"e.g. {_EXAMPLE}")
    return [_rule(i, r) for i, r in enumerate(raw)]


def rules_from_config() -> list[Rule]:
    """The validated rules of ``daskflow.policy.rules`` (read now, not at import)."""
    from daskflow import config

    return parse_rules(config.get("policy.rules"))


def rules_for(tags: Mapping[str, Any] | None, rules: Iterable[Rule] | None = None) -> list[Rule]:
    """The rules that match ``tags`` (``rules`` default: :func:`rules_from_config`)."""
    return [r for r in (rules_from_config() if rules is None else rules) if r.matches(tags)]


# -- translation to Dask restrictions -------------------------------------------
def task_constraints(rules: Iterable[Rule]) -> TaskConstraints:
    """Dask restrictions satisfying every rule: ``{}`` when no rule applies.

    Resources merge (the largest amount of each); host lists intersect. An empty
    intersection can never be satisfied: :class:`PolicyError` naming the rules.

    >>> task_constraints(parse_rules([{"match": {"c": "pii"}, "allow": {"resources": {"secure": 1}}}]))
    {'resources': {'secure': 1.0}, 'allow_other_workers': False}
    """
    rules = list(rules)
    if not rules:
        return {}
    out = _combine((rule.resources, rule.hosts) for rule in rules)
    if out.get("workers") == []:
        with_hosts = [r for r in rules if r.hosts]
        raise PolicyError(f"{' and '.join(r.describe() for r in with_hosts)} allow no host in common, so no worker "
                          "can satisfy them all; fix: give those rules a shared host in daskflow.policy.rules")
    out["allow_other_workers"] = False
    return out


def _combine(parts: Iterable[tuple[Iterable[tuple[str, float]], Iterable[str] | None]]) -> TaskConstraints:
    """Resources and host lists of ``(resource items, hosts or None)`` parts: largest amount, intersected hosts.

    ``workers`` is absent when no part names hosts and ``[]`` when their hosts do not meet (the callers'
    error, each naming what it combined).
    """
    resources: dict[str, float] = {}
    hosts: list[str] | None = None
    for items, allowed in parts:
        for name, amount in items:
            resources[name] = max(float(amount), resources.get(name, 0.0))
        if allowed:
            allowed = list(allowed)
            hosts = allowed if hosts is None else [h for h in hosts if h in allowed]
    out: TaskConstraints = {}
    if resources:
        out["resources"] = resources
    if hosts is not None:
        out["workers"] = hosts
    return out


def satisfies(constraints: TaskConstraints, address: str, info: WorkerInfo | Mapping[str, Any]) -> bool:
    """Whether Dask would let this worker run a task with these restrictions (its resource and host checks)."""
    have = info.get("resources") or {}
    if any(float(have.get(name, 0.0)) < amount for name, amount in (constraints.get("resources") or {}).items()):
        return False
    hosts = constraints.get("workers")
    return hosts is None or address in hosts or info.get("host") in hosts


def allowed_workers(rules: Iterable[Rule], workers: Mapping[str, WorkerInfo | Mapping[str, Any]]) -> set[str]:
    """The addresses of the workers allowed by every rule in ``rules`` (all workers when there is none).

    >>> rules = parse_rules(_EXAMPLE)
    >>> sorted(allowed_workers(rules, {"tcp://a:1": {"host": "a", "resources": {"secure": 1}},
    ...                                "tcp://b:1": {"host": "b", "resources": {}}}))
    ['tcp://a:1']
    """
    try:
        constraints = task_constraints(rules)
    except PolicyError:
        return set()
    return {address for address, info in workers.items() if satisfies(constraints, address, info)}


def rules_by_task(task_tags: Mapping[str, Mapping[str, Any] | None], upstream: Mapping[str, Iterable[str]],
                  rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    """The rules each task must obey: its own, plus those of its in-graph inputs (it *holds* their data).

    >>> rules = parse_rules(_EXAMPLE)
    >>> by = rules_by_task({"pii": {"classification": "pii"}, "count": {}}, {"count": ["pii"]}, rules)
    >>> [r.index for r in by["count"]]
    [0]
    """
    rules = list(rules)
    own = {key: rules_for(tags, rules) for key, tags in task_tags.items()}
    out = {}
    for key in task_tags:
        merged = {r.index: r for r in own[key]}
        for up in upstream.get(key, ()):
            merged.update({r.index: r for r in own.get(up, ())})
        out[key] = [merged[i] for i in sorted(merged)]
    return out


def check_selection(assets_with_tags: Mapping[str, Mapping[str, Any] | None], rules: Iterable[Rule],
                    workers: Mapping[str, WorkerInfo | Mapping[str, Any]]) -> PolicyError | None:
    """The error for the first classified asset no worker may run (None when every asset has one).

    Called before anything runs; the message names the asset, the rule(s) and the fix.
    """
    rules = list(rules)
    for asset in sorted(assets_with_tags):
        matching = rules_for(assets_with_tags[asset], rules)
        if not matching:
            continue
        try:
            constraints = task_constraints(matching)
        except PolicyError as exc:
            return PolicyError(f"asset {asset!r}: {exc}")
        if any(satisfies(constraints, a, info) for a, info in workers.items()):
            continue
        return PolicyError(f"asset {asset!r} matches {' and '.join(r.describe() for r in matching)}, but none of "
                           f"the cluster's {len(workers)} worker(s) is allowed; fix: {_fix(constraints)}, or change "
                           "daskflow.policy.rules")
    return None


def _fix(constraints: TaskConstraints) -> str:
    parts = []
    resources = constraints.get("resources") or {}
    if resources:
        flags = " ".join(f"{name}={1 if amount == PRESENCE_AMOUNT else f'{amount:g}'}" for name, amount in resources.items())
        embedded = ", ".join(f"{name}: {1 if amount == PRESENCE_AMOUNT else f'{amount:g}'}"
                             for name, amount in resources.items())
        parts.append(f"start a worker with `dask worker --resources \"{flags}\"` (embedded cluster: "
                     f"daskflow.execution.worker-resources: {{{embedded}}})")
    if constraints.get("workers"):
        parts.append(f"on one of the hosts {', '.join(constraints['workers'])}")
    return " ".join(parts)


def merge_constraints(*parts: Mapping[str, Any] | None) -> TaskConstraints:
    """One set of Dask restrictions satisfying all ``parts``: resources take the largest amount, host lists intersect.

    An empty host intersection raises :class:`PolicyError` (no worker could satisfy it).

    >>> merge_constraints({"resources": {"GPU": 1.0}}, {"resources": {"secure": 1e-06}, "workers": ["h"],
    ...                                                  "allow_other_workers": False})
    {'resources': {'GPU': 1.0, 'secure': 1e-06}, 'workers': ['h'], 'allow_other_workers': False}
    """
    out = _combine((((part or {}).get("resources") or {}).items(), (part or {}).get("workers")) for part in parts)
    if out.get("workers") == []:
        raise PolicyError("the placement restrictions allow no host in common; fix: give the rules a shared host "
                          "in daskflow.policy.rules")
    if out:
        out["allow_other_workers"] = False
    return out


class TaskFacts(TypedDict, total=False):
    """What :func:`policy_checks` needs of one task of the graph."""

    kind: str                 # asset | check
    asset: str | None
    partition: str | None
    tags: dict[str, str]      # the asset's tags (a check: its asset's)
    upstream: list[str]       # in-graph dependency keys (the task holds their data)
    input_tags: list[dict[str, str]]  # tags of the assets it reads from earlier runs (it holds that data too)
    resources: dict[str, float]       # Dask resources the asset itself asks for (``@asset(resources=...)``)


def policy_checks(tasks: Mapping[str, TaskFacts], rules: Iterable[Rule],
                  workers: Mapping[str, WorkerInfo | Mapping[str, Any]] | None = None,
                  now: float = 0.0) -> list[dict[str, Any]]:
    """One policy check per task, in the shape :class:`daskflow.audit.PolicyCheck` stores.

    Each carries ``constraints`` (:func:`task_constraints` of the task's rules, own,
    inherited from its in-graph inputs and from the assets it reads, merged with the
    asset's own ``resources``; ``{}`` when none) for the graph, the workers allowed
    now (None when ``workers`` is None) and the outcome ``unrestricted``,
    ``constrained`` or ``refused`` (no allowed worker; ``message`` says why and the fix).
    Pure: ``now`` is an argument.

    >>> checks = policy_checks({"p": {"asset": "p", "tags": {"classification": "pii"}}}, parse_rules(_EXAMPLE),
    ...                        {"tcp://a:1": {"host": "a", "resources": {}}})
    >>> checks[0]["outcome"], checks[0]["constraints"]["allow_other_workers"]
    ('refused', False)
    """
    rules = list(rules)
    by_task = rules_by_task({k: t.get("tags") or {} for k, t in tasks.items()},
                            {k: t.get("upstream") or [] for k, t in tasks.items()}, rules)
    out = []
    for key, task in tasks.items():
        merged = {r.index: r for r in by_task[key]}
        for tags in task.get("input_tags") or ():
            merged.update({r.index: r for r in rules_for(tags, rules)})
        matching = [merged[i] for i in sorted(merged)]
        own_resources = dict(task.get("resources") or {})
        check: dict[str, Any] = {
            "key": key, "kind": task.get("kind"), "asset": task.get("asset"), "partition": task.get("partition"),
            "tags": dict(task.get("tags") or {}), "rules": [r.describe() for r in matching], "constraints": {},
            "allowed_workers": None if workers is None else sorted(workers), "outcome": "unrestricted",
            "message": "", "time": now}
        if matching or own_resources:
            check["outcome"] = "constrained"
            try:
                check["constraints"] = merge_constraints(task_constraints(matching), {"resources": own_resources})
            except PolicyError as exc:
                check.update(outcome="refused", message=str(exc), allowed_workers=[] if workers is not None else None)
            else:
                if workers is not None:
                    allowed = sorted(a for a, info in workers.items() if satisfies(check["constraints"], a, info))
                    check["allowed_workers"] = allowed
                    if not allowed:
                        by = (" and ".join(r.describe() for r in matching) if matching else
                              "its resources " + ", ".join(f"{n}={a:g}" for n, a in own_resources.items()))
                        check.update(outcome="refused", message=(
                            f"no worker allowed by {by}; fix: {_fix(check['constraints'])}"
                            + (", or change daskflow.policy.rules" if matching else
                               ", or change the asset's resources=")))
        out.append(check)
    return out


def refusal(checks: Iterable[Mapping[str, Any]]) -> PolicyError | None:
    """The error for the first refused check (None when none is): one line naming the asset and the fix.

    >>> print(refusal([{"key": "k", "asset": "p", "partition": None, "outcome": "refused", "message": "no worker"}]))
    asset 'p': no worker; nothing was run
    """
    for check in checks:
        if check.get("outcome") == "refused":
            where = check.get("asset") or check.get("key")
            if check.get("partition"):
                where = f"{where}[{check['partition']}]"
            what = "check of asset" if check.get("kind") == "check" else "asset"
            return PolicyError(f"{what} {where!r}: {check.get('message')}; nothing was run")
    return None
