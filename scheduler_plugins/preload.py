"""Scheduler preload: ``dask scheduler --preload scheduler_plugins.preload``.

Installs every daskflow scheduler extension that is enabled in config: the
task recorder (history for learning), the steering plugin
(``daskflow.steering.mode``) and the dashboard pages. Each part is installed
on its own, so one failing to load never stops the others or the scheduler.
"""

from __future__ import annotations

import importlib
import logging

logger = logging.getLogger(__name__)

# (module, function) pairs; each function takes the scheduler and installs one part.
_INSTALLERS = (
    ("scheduler_plugins.recorder", "install"),
    ("scheduler_plugins.steering", "install"),
    ("scheduler_plugins.dashboard", "install"),
)


def dask_setup(scheduler) -> None:
    for module_name, function_name in _INSTALLERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # part not present in this build
            logger.warning("daskflow: could not import %s: %s", module_name, exc)
            continue
        try:
            getattr(module, function_name)(scheduler)
        except Exception:
            logger.warning("daskflow: installing %s failed; continuing without it", module_name, exc_info=True)
