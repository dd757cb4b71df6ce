"""Resume and retries (#14.4), and caller-given run ids: one real run each on a shared LocalCluster.

Pipeline for resume::

    a ---> b (fails while the flag file exists) ---> c
    d
"""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from daskflow import RetryPolicy
from daskflow.catalog import Catalog
from daskflow.cli import main
from daskflow.errors import AssetDefinitionError, CatalogError, SelectionError
from daskflow.execution import materialize

from .conftest import write_pipeline

pytestmark = pytest.mark.timeout(180)

RESUMABLE = '''
import os
from daskflow.definitions import asset

FLAG = os.path.join("{markers}", "fail-b")


def _ran(name):
    with open(os.path.join("{markers}", name + "-ran"), "a") as f:
        f.write("x")


@asset(io="json")
def a():
    _ran("a")
    return [1, 2]


@asset(io="json")
def b(a):
    _ran("b")
    if os.path.exists(FLAG):
        raise RuntimeError("b is broken today")
    return [x * 10 for x in a]


@asset(io="json")
def c(b):
    _ran("c")
    return sum(b)


@asset(io="json")
def d():
    _ran("d")
    return "independent"
'''

FLAKY = '''
import os, time
from daskflow.definitions import asset, RetryPolicy


@asset(io="json", retry_policy=RetryPolicy(max_retries=3, delay_s=0.2, backoff=2.0))
def flaky(context):
    log = os.path.join("{markers}", "attempts")
    with open(log, "a") as f:
        f.write(f"{{context.attempt}} {{time.time()}}\\n")
    if context.attempt < 3:
        raise ConnectionError(f"service unavailable (attempt {{context.attempt}})")
    return {{"attempt": context.attempt}}


@asset(io="json", retry_policy=RetryPolicy(max_retries=1, delay_s=0.0))
def hopeless():
    raise ValueError("always broken")


@asset(io="json", retries=1)
def dask_retried(context):
    marker = os.path.join("{markers}", "dask-retried")
    first = not os.path.exists(marker)
    open(marker, "a").close()
    if first:
        raise RuntimeError("first try fails")
    return "ok"
'''


def _count(tmp_path, name: str) -> int:
    path = tmp_path / "markers" / f"{name}-ran"
    return len(path.read_text()) if path.exists() else 0


def test_resume_reruns_only_the_failed_and_skipped_asset_partitions(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, RESUMABLE)
    (tmp_path / "markers" / "fail-b").write_text("1")
    first = materialize(path, client=client, progress=False)
    assert {r.asset: r.status for r in first.records} == {"a": "success", "b": "failed", "c": "skipped",
                                                          "d": "success"}
    a_first = first.record("a").materialization_id
    (tmp_path / "markers" / "fail-b").unlink()

    cli = CliRunner().invoke(main, ["run", path, "--address", client.scheduler.address, "--json",
                                    "--resume", first.run_id[:12]], catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    resumed = json.loads(cli.stdout)
    statuses = {r["asset"]: r["status"] for r in resumed["assets"]}
    assert statuses == {"a": "stale-skipped", "b": "success", "c": "success", "d": "stale-skipped"}
    assert (_count(tmp_path, "a"), _count(tmp_path, "b"), _count(tmp_path, "c"), _count(tmp_path, "d")) == (1, 2, 1, 1)
    catalog = Catalog()
    run = catalog.get_run(resumed["run_id"])
    assert run.resumed_from == first.run_id and run.status == "success"
    b_row = catalog.latest_materialization("b")
    assert catalog.upstream_ids(b_row.id) == [a_first]  # b read the resumed run's materialization of a
    assert json.loads(open(catalog.latest_materialization("c").path).read()) == 30

    nothing = CliRunner().invoke(main, ["run", path, "--resume", resumed["run_id"]], catch_exceptions=False)
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.stderr
    with pytest.raises(SelectionError, match="re-uses that run's selection"):
        materialize(path, selection="b", resume=first.run_id, client=client, progress=False)
    with pytest.raises(CatalogError, match="no run"):
        materialize(path, resume="ffffffffffff", client=client, progress=False)


def test_retry_policy_retries_with_backoff_and_sets_the_attempt(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, FLAKY)
    result = materialize(path, client=client, progress=False)
    flaky = result.record("flaky")
    assert flaky.status == "success" and flaky.attempt == 3
    assert json.loads(open(flaky.path).read()) == {"attempt": 3}
    lines = [line.split() for line in (tmp_path / "markers" / "attempts").read_text().splitlines()]
    assert [int(n) for n, _ in lines] == [1, 2, 3]
    times = [float(t) for _, t in lines]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4  # delay, then doubled (lower bounds only)
    assert result.record("hopeless").status == "failed" and "always broken" in result.record("hopeless").error
    assert result.record("dask_retried").status == "success"  # plain retries= still works


def test_retry_policy_validation_and_delays():
    policy = RetryPolicy(max_retries=4, delay_s=1.0, backoff=3.0, jitter=0.5)
    assert policy.delay_before(1, 0.5) == 1.0 and policy.delay_before(3, 0.5) == 9.0
    assert policy.delay_before(1, 0.0) == 0.5 and policy.delay_before(1, 0.999999) == pytest.approx(1.5, abs=1e-5)
    assert RetryPolicy(max_retries=1000, delay_s=86400, backoff=100).delay_before(1000) == 86400.0
    for bad in (dict(max_retries=-1), dict(max_retries=10**12), dict(delay_s=-1), dict(backoff=0.5),
                dict(jitter=2), dict(max_retries=True)):
        with pytest.raises(AssetDefinitionError, match="RetryPolicy"):
            RetryPolicy(**bad)
    from daskflow.definitions import asset

    with pytest.raises(AssetDefinitionError, match="retry_policy must be a daskflow.RetryPolicy"):
        asset(name="x", retry_policy=3)(lambda: 1)
    with pytest.raises(AssetDefinitionError, match="retries must be"):
        asset(name="x", retries=10**12)(lambda: 1)


def test_wait_off_thread_outside_a_worker_just_sleeps():
    from daskflow.tasks import wait_off_thread

    started = time.monotonic()
    wait_off_thread(0.01)
    wait_off_thread(0)
    assert time.monotonic() - started >= 0.01


def test_a_caller_given_run_id_is_used_validated_and_never_reused(client, daskflow_home, tmp_path):
    path = write_pipeline(tmp_path, RESUMABLE)
    run_id = "0123456789abcdef0123456789abcdef"
    result = materialize(path, selection="d", run_id=run_id, client=client, progress=False)
    assert result.run_id == run_id and Catalog().get_run(run_id).status == "success"
    assert Catalog().latest_materialization("d").path.split("/")[-1].startswith(run_id + "-")
    with pytest.raises(CatalogError, match="already exists"):
        materialize(path, selection="d", run_id=run_id, client=client, progress=False)
    for bad in ("", "has space", "../escape", "x" * 65, "-leading"):
        with pytest.raises(SelectionError, match="run id"):
            materialize(path, selection="d", run_id=bad, client=client, progress=False)
    named = materialize(path, selection="d", run_id="daily-2024-01-01", client=client, progress=False)
    assert named.ok and Catalog().get_run("daily-2024-01-01") is not None
