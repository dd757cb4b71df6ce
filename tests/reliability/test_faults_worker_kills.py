"""SIGKILL a random worker at a random time, ten runs on one real cluster: every run still completes.

A real ``dask scheduler --preload scheduler_plugins.preload`` and ``dask
worker --nworkers 2 --nthreads 1`` (with nannies, so a killed worker comes
back) in their own sessions; ten ``daskflow run --address`` subprocesses of an
eight-asset pipeline (each asset sleeps 0.2-0.6 s and passes data
downstream). During each run the test SIGKILLs one random worker *process*
(not its nanny) at a random time in [0.2, 2.5] s after the run is recorded
``running``. Dask recomputes lost results, so every run must exit 0 with every
asset ``success``, one row per asset, the final asset's value exact, and the
shared invariants of ``fault_checks`` (rows = files re-read, no temp file,
nothing outside the storage root, no run left ``running``).

The seed is printed in every assertion message; rerun one with
``DASKFLOW_KILL_SEED=<seed>``.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from distributed import Client

from daskflow.catalog import Catalog

from .conftest import write_pipeline
from .fault_checks import assert_catalog_matches_disk, cli_env, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

RUNS = 10
RUN_TIMEOUT_S = 90
ASSETS = ["a", "b", "c", "d", "e", "f", "g", "h"]
PIPELINE = '''
import random, time
from daskflow.definitions import asset


def _work():
    time.sleep(random.uniform(0.2, 0.6))


@asset(io="json")
def a():
    _work()
    return list(range(300))


@asset(io="json")
def b(a):
    _work()
    return [x * 2 for x in a]


@asset(io="json")
def c(a):
    _work()
    return [x + 1 for x in a]


@asset(io="json")
def d(b):
    _work()
    return b[:200]


@asset(io="json")
def e(c):
    _work()
    return c[::2]


@asset(io="json")
def f(b, c):
    _work()
    return [x + y for x, y in zip(b, c)]


@asset(io="json")
def g(d, e):
    _work()
    return d + e


@asset(io="json")
def h(f, g):
    _work()
    return [sum(f), sum(g), len(f), len(g)]
'''


def _expected_h() -> list[int]:
    a = list(range(300))
    b, c = [x * 2 for x in a], [x + 1 for x in a]
    f, g = [x + y for x, y in zip(b, c)], b[:200] + c[::2]
    return [sum(f), sum(g), len(f), len(g)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _kill_group(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _one_run(path: str, address: str, env: dict, client: Client, catalog: Catalog, rng: random.Random,
             where: str) -> dict:
    """One ``daskflow run`` with one worker SIGKILLed; returns what happened (asserts nothing)."""
    until(lambda: len(client.scheduler_info()["workers"]) == 2, 60, f"2 workers before the run ({where})")
    known = {r.run_id for r in catalog.runs(limit=None)}
    delay = rng.uniform(0.2, 2.5)
    proc = subprocess.Popen([sys.executable, "-m", "daskflow.cli", "run", path, "--address", address, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    killed = None
    try:
        until(lambda: proc.poll() is not None or {r.run_id for r in catalog.runs(limit=None)} - known, 60,
              f"the run to be recorded ({where})")
        time.sleep(delay)
        pids = client.run(os.getpid)
        victim = rng.choice(sorted(pids))
        landed = proc.poll() is None
        os.kill(pids[victim], signal.SIGKILL)
        killed = {"worker": victim, "pid": pids[victim], "delay_s": round(delay, 2), "during_run": landed}
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    return {"rc": proc.returncode, "stdout": stdout, "stderr": stderr, "kill": killed}


def test_random_worker_kills_during_ten_runs_all_complete(daskflow_home, tmp_path):
    seed = int(os.environ.get("DASKFLOW_KILL_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    path = write_pipeline(tmp_path, PIPELINE)
    env = cli_env(daskflow_home)
    address = f"tcp://127.0.0.1:{_free_port()}"
    scheduler = workers = None
    outcomes = []
    started = time.monotonic()
    try:
        scheduler = _spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                            address.rsplit(":", 1)[1], "--no-dashboard", "--preload", "scheduler_plugins.preload"],
                           env)
        workers = _spawn(["distributed.cli.dask_worker", address, "--nworkers", "2", "--nthreads", "1",
                          "--host", "127.0.0.1", "--no-dashboard"], env)
        with Client(address, timeout="60s") as client:
            catalog = Catalog()
            for i in range(RUNS):
                where = f"run {i + 1}/{RUNS}, seed {seed}"
                outcomes.append(_one_run(path, address, env, client, catalog, rng, where))
                outcome = outcomes[-1]
                assert outcome["rc"] == 0, (where, outcome)
    finally:
        _kill_group(workers)
        _kill_group(scheduler)
    elapsed = time.monotonic() - started
    print(f"seed {seed}: {RUNS} runs in {elapsed:.1f}s; kills: {[o['kill'] for o in outcomes]}")
    expected = _expected_h()
    catalog = Catalog()
    runs = catalog.runs(limit=None)
    assert len(runs) == RUNS and {r.status for r in runs} == {"success"}, (seed, runs)
    for outcome in outcomes:
        document = json.loads(outcome["stdout"])
        assert {a["asset"]: a["status"] for a in document["assets"]} == dict.fromkeys(ASSETS, "success"), (
            seed, outcome)
        assert "Traceback" not in outcome["stderr"], (seed, outcome)
    rows = assert_catalog_matches_disk(catalog, daskflow_home / "data")
    for run in runs:
        mine = catalog.materializations(run_id=run.run_id)
        assert sorted(m.asset_key for m in mine) == ASSETS, (seed, run.run_id, mine)  # none lost, none doubled
        [h] = [m for m in mine if m.asset_key == "h"]
        assert json.loads(pathlib.Path(h.path).read_text()) == expected, (seed, h)
    assert len(rows) == RUNS * len(ASSETS), seed
    replaced = sum(e.kind == "asset-attempt-replaced" for r in runs for e in catalog.events(r.run_id))
    print(f"seed {seed}: {replaced} recorded attempts replaced by a recomputation")
    assert sum(o["kill"]["during_run"] for o in outcomes) >= RUNS // 2, (seed, [o["kill"] for o in outcomes])
