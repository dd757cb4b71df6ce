"""The steering plugin leaves tasks the client restricted (resources, hosts, workers) to Dask.

A loose pin falls back to every worker and ignores resource restrictions; a pin
does not narrow a host-restricted task; unpin would clear the client's own
worker restrictions. So placement rules hold only when the plugin never
touches such tasks: the long (oracle 1 s) restricted tasks below are neither
held nor placed, and each runs where its restriction says.
"""

from __future__ import annotations

import pytest
from distributed.utils_test import gen_cluster

from daskflow.daskgraph import TaskSpec, submit_graph
from scheduler_plugins import compat
from tests.steering.test_plugin import NO_SPILL, events, steer, timed_sleep

pytestmark = pytest.mark.timeout(60)


def restricted(key: str, constraints: dict) -> TaskSpec:
    annotations = {"run_id": "test-run", "kind": "replay", "category": key.split("-")[0],
                   "true_duration_s": 1.0, "true_peak_memory_bytes": 0}
    return TaskSpec(key, timed_sleep, (0.05,), annotations=annotations, constraints=constraints)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.1", 1, {"resources": {"secure": 1}})],
             config=NO_SPILL)
async def test_resource_and_worker_restricted_tasks_are_left_to_dask(c, s, a, b):
    await steer(s)
    specs = [restricted(f"secure-{i}", {"resources": {"secure": 1e-6}, "allow_other_workers": False})
             for i in range(3)]
    specs += [restricted(f"pinned-{i}", {"workers": [a.address], "allow_other_workers": False}) for i in range(2)]
    specs += [restricted("free-0", {})]
    futures = submit_graph(c, specs)
    await c.gather(list(futures.values()))
    assert compat.restricted_by_client(s.tasks["secure-0"]) and compat.restricted_by_client(s.tasks["pinned-0"])
    touched = {e["key"] for e in await events(c) if e["action"] in ("hold", "place", "release")}
    assert "free-0" in touched  # the plugin is steering: the same long task unrestricted is placed by it
    assert not touched & ({f"secure-{i}" for i in range(3)} | {"pinned-0", "pinned-1"})
    where = await c.run(lambda dask_worker: sorted(str(k) for k in dask_worker.data))
    assert {k for k in where[b.address] if k.startswith("secure")} == {"secure-0", "secure-1", "secure-2"}
    assert {k for k in where[a.address] if k.startswith("pinned")} == {"pinned-0", "pinned-1"}
