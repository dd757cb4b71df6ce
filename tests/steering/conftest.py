import dask
import pytest


@pytest.fixture(autouse=True)
def _no_persisted_speeds():
    """Learned speeds persist per host in the model dir; tests must neither read nor write the real one."""
    with dask.config.set({"daskflow.steering.persist-speeds": False}):
        yield
