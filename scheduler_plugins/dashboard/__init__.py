"""daskflow pages inside the Dask dashboard (same port, under ``/daskflow/``).

``install(scheduler)`` (called by ``scheduler_plugins.preload``) adds:

* ``/daskflow/``: an index linking the pages and JSON endpoints;
* Bokeh pages ``/daskflow/predictions``, ``/daskflow/decisions``,
  ``/daskflow/assets``, ``/daskflow/model`` (see :mod:`.pages`);
* JSON endpoints ``/daskflow/api/{decisions,model,predictions,assets}``.

It is idempotent (a second call does nothing), reads ``daskflow.dashboard.*``
config, and works without the recorder or steering plugin (pages then show
empty plots and a note). Data flow and bounds: :mod:`.extension`, :mod:`.state`.
"""

from __future__ import annotations

import logging
from typing import Any

from daskflow import config
from scheduler_plugins import compat

logger = logging.getLogger(__name__)

__all__ = ["install"]


def install(scheduler: Any) -> None:
    """Add the daskflow pages and JSON endpoints to ``scheduler``'s dashboard (idempotent)."""
    from scheduler_plugins.dashboard.extension import (
        EXTENSION_NAME,
        DashboardExtension,
        add_bokeh_pages,
        add_navigation_link,
        add_routes,
        start_periodic_refresh,
    )

    if not config.get("dashboard.enabled"):
        return
    if compat.extension(scheduler, EXTENSION_NAME) is not None:
        return
    if compat.http_application(scheduler) is None:
        logger.warning("daskflow dashboard: scheduler has no HTTP server; pages not installed")
        return
    extension = DashboardExtension(scheduler)
    compat.set_extension(scheduler, EXTENSION_NAME, extension)
    add_routes(scheduler, extension)
    add_bokeh_pages(scheduler, extension)
    add_navigation_link(scheduler)
    start_periodic_refresh(scheduler, extension)


def dask_setup(scheduler: Any) -> None:
    """Preload hook: ``dask scheduler --preload scheduler_plugins.dashboard`` installs only the pages."""
    install(scheduler)
