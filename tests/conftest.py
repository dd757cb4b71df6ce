import os

import pytest


@pytest.fixture
def daskflow_home(tmp_path, monkeypatch):
    """An isolated daskflow home for one test (catalog, data, history, models)."""
    import dask.config

    home = tmp_path / "daskflow-home"
    home.mkdir()
    monkeypatch.setenv("DASKFLOW_HOME", str(home))
    with dask.config.set({"daskflow.home": str(home)}):
        yield home


@pytest.fixture(scope="session")
def workloads_dir():
    """The shared WfCommons traces (../shared/workloads), or skip when absent."""
    import pathlib

    here = pathlib.Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "workloads", pathlib.Path(os.environ.get("DASKFLOW_WORKLOADS", "/nonexistent"))):
        if candidate.is_dir():
            return candidate
    pytest.skip("../shared/workloads not found; set DASKFLOW_WORKLOADS")
