import pytest


@pytest.fixture(autouse=True)
def _no_persisted_speeds(monkeypatch):
    """Learned speeds persist per host in the model dir; tests must neither read nor write the real one.

    (Patched, not configured: distributed's test utilities can swap dask.config out from under a config.set.)
    """
    monkeypatch.setattr("scheduler_plugins.steering.speeds_url", lambda model_url: None)
