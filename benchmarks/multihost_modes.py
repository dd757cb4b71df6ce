"""Switch one running cluster between stock, steer and oracle (for ``benchmarks/multihost.py``).

The cluster (a test bed or a LocalCluster) starts with no daskflow preload at
all, i.e. stock Dask. A steer or oracle run registers the steering plugin on
the live scheduler for that run (mode ``steer``, the trace's model or the
oracle; its per-host speed file in the benchmark's own directory so runs of
different traces and modes never share learned speeds), and removes it
afterwards (``close()`` first: timers stopped, speeds saved, held tasks
released). The recorder is not installed: nothing in these runs reads history.
"""

from __future__ import annotations

from typing import Any


def attach_steering(client: Any, mode: str, model_url: str | None, speeds_path: str | None) -> None:
    """Register the steering plugin for a ``steer`` (with ``model_url``) or ``oracle`` run."""
    import dask.config

    from scheduler_plugins.steering import PLUGIN_NAME, SteeringPlugin

    if mode not in ("steer", "oracle"):
        raise ValueError(f"attach_steering(mode={mode!r}): expected 'steer' or 'oracle'")
    with dask.config.set({"daskflow.steering.mode": "steer", "daskflow.steering.oracle": mode == "oracle"}):
        plugin = SteeringPlugin(mode="steer", model_url=model_url if mode == "steer" else None, oracle=mode == "oracle")
    plugin.speeds_url = speeds_path if plugin.learn_speeds else None
    client.register_plugin(plugin, name=PLUGIN_NAME)


async def _detach(dask_scheduler=None, name: str = "") -> bool:
    plugin = dask_scheduler.plugins.get(name)
    if plugin is None:
        return False
    try:
        await plugin.close()
    finally:
        dask_scheduler.remove_plugin(name=name)
    return True


def detach_steering(client: Any) -> bool:
    """Close and remove the steering plugin (True when one was there): the cluster is stock Dask again."""
    from scheduler_plugins.steering import PLUGIN_NAME

    return bool(client.run_on_scheduler(_detach, name=PLUGIN_NAME))
