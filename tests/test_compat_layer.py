"""The readers and helpers added to the compat layer, checked against the installed distributed.

``tests/steering/test_compat.py`` covers holding, pinning and dispatching; this
file covers what the recorder, the dashboard, the replay probes, the cluster
summary and ``explain`` need (``daskflow.compat`` and the rest of
``scheduler_plugins.compat``).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
from distributed import wait
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_test import gen_cluster, inc

import daskflow.compat
from daskflow import compat as client_compat
from daskflow.daskgraph import TaskSpec, submit_graph
from scheduler_plugins import compat

pytestmark = pytest.mark.timeout(60)


def test_docstring_examples_run():
    package_modules = [importlib.import_module(f"{compat.__name__}.{info.name}") for info in pkgutil.iter_modules(compat.__path__)]
    for module in (daskflow.compat, compat, *package_modules):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


def test_startstops_compute_spans_compute_phases_only():
    startstops = [
        {"action": "transfer", "start": 0.0, "stop": 1.0},
        {"action": "compute", "start": 1.0, "stop": 1.5},
        {"action": "compute", "start": 2.0, "stop": 3.0},
    ]
    assert compat.startstops_compute(startstops) == (1.0, 3.0, 1.5)
    assert compat.startstops_compute(None) == (None, None, None)
    assert compat.startstops_compute_start(startstops) == 1.0
    assert compat.startstops_compute_s([{"action": "compute", "start": 2.0, "stop": 2.5}]) == 0.5


@gen_cluster(client=True, nthreads=[("127.0.0.1", 2)])
async def test_plugin_lookup_and_named_periodic_callbacks(c, s, a):
    class Named(SchedulerPlugin):
        name = "named"

    plugin = Named()
    s.add_plugin(plugin, name="named")
    assert compat.plugin(s, "named") is plugin and client_compat.plugin(s, "absent") is None
    assert "named" in compat.plugin_names(s)
    calls = []
    compat.add_periodic_callback(s, "test-tick", lambda: calls.append(1), 10)
    assert compat.is_running(s)
    compat.remove_periodic_callback(s, "test-tick")
    compat.remove_periodic_callback(s, "test-tick")  # a second time: nothing to do
    assert "test-tick" not in s.periodic_callbacks
    first = compat.add_periodic_callback(s, "test-tick", lambda: None, 10)
    second = compat.add_periodic_callback(s, "test-tick", lambda: None, 10)  # replaces (and stops) the first
    assert not first.is_running() and second.is_running()
    compat.remove_periodic_callback(s, "test-tick", first)  # the replaced one's owner closes late
    assert s.periodic_callbacks["test-tick"] is second and second.is_running()
    compat.remove_periodic_callback(s, "test-tick", second)
    assert "test-tick" not in s.periodic_callbacks and not second.is_running()
    assert compat.extension(s, "daskflow-nothing") is None
    compat.set_extension(s, "daskflow-test", 42)
    assert compat.extension(s, "daskflow-test") == 42 and client_compat.has_extension(s, "daskflow-test")
    del s.extensions["daskflow-test"]


@gen_cluster(client=True, nthreads=[("127.0.0.1", 2)])
async def test_readers_of_tasks_and_workers(c, s, a):
    futures = submit_graph(c, [
        TaskSpec("load-1", bytes, (1000,)),
        TaskSpec("use-1", len, dependencies=("load-1",)),
    ])  # fmt: skip
    await wait(list(futures.values()))
    task = compat.task_state(s, "use-1")
    assert compat.dependency_nbytes(task)[0] >= 1000
    assert compat.prefix_name(task) == "use"
    assert compat.worker_threads_and_memory_limit(s, a.address)[0] == 2
    assert compat.worker_threads_and_memory_limit(s, "tcp://nowhere:1") == (None, None)
    assert client_compat.has_task(s, "use-1") and not client_compat.has_task(s, "missing")
    assert client_compat.n_tasks(s) == 2
    [summary] = client_compat.worker_summaries(s)
    assert summary["address"] == a.address and summary["threads"] == 2
    assert compat.set_task_metadata(a, "use-1", "daskflow-test", {"x": 1})
    assert not compat.set_task_metadata(a, "missing", "daskflow-test", {})


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_reset_prefix_duration_forgets_dasks_estimate(c, s, a):
    future = c.submit(inc, 1, key="inc-1")
    await future
    assert compat.prefix_duration_s(compat.task_state(s, "inc-1"), default_s=-1.0) >= 0  # observed
    assert client_compat.reset_prefix_duration(s, "inc")
    assert not client_compat.reset_prefix_duration(s, "never-seen")
    # "inc" has no entry in distributed.scheduler.default-task-durations: back to "unknown"
    assert compat.prefix_duration_s(compat.task_state(s, "inc-1"), default_s=-1.0) == -1.0


def test_make_task_references_dependencies_by_key():
    task = client_compat.make_task("b", divmod, (7,), ["a"], {})
    assert task.dependencies == frozenset({"a"})
    assert task({"a": 2}) == (3, 1)
