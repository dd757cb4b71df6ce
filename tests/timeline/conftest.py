import dask.config
import pytest


@pytest.fixture(autouse=True)
def _no_background_retrain():
    """Daemons in these tests never start the real retrainer (tests that want it set the interval)."""
    with dask.config.set({"daskflow.models.retrain.daemon-interval": None}):
        yield
