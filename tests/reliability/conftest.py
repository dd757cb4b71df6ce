"""Shared pieces of the reliability tests: one real LocalCluster per module, pipeline files.

Module scope, not session: a cluster left running would show up as leaked
subprocesses in later modules' ``gen_cluster`` tests.
"""

from __future__ import annotations

import textwrap

import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="module")
def reliability_cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture
def client(reliability_cluster):
    with Client(reliability_cluster) as client:
        yield client


def write_pipeline(tmp_path, body: str, name: str = "pipeline", **values) -> str:
    """A pipeline file (``body`` formatted with ``markers`` and ``values``: write literal braces as ``{{ }}``)."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body).format(markers=str(markers), **values))
    return str(path)
