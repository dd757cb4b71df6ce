"""The scheduler's HTTP server and Dask dashboard: routes, Bokeh documents, the navigation bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only
    from distributed.scheduler import Scheduler


def http_application(scheduler: Scheduler) -> Any | None:
    """The scheduler's HTTP ``RoutingApplication`` (None without an HTTP server)."""
    return getattr(scheduler, "http_application", None)


def http_prefix(scheduler: Scheduler) -> str:
    """The dashboard prefix (``dask scheduler --dashboard-prefix``), '' by default."""
    for application in getattr(http_application(scheduler), "applications", []):
        prefix = getattr(application, "_prefix", None)
        if isinstance(prefix, str):
            return prefix.rstrip("/")
    return ""


def add_http_handlers(scheduler: Scheduler, handlers: list) -> None:
    """Tornado ``(pattern, handler, kwargs)`` routes, tried before the dashboard's own."""
    scheduler.http_application.add_handlers(r".*", handlers)


def has_bokeh_dashboard(scheduler: Scheduler) -> bool:
    """Whether the scheduler serves Dask's Bokeh dashboard (not ``--no-dashboard``)."""
    from bokeh.server.server import BokehTornado

    return any(isinstance(app, BokehTornado) for app in getattr(http_application(scheduler), "applications", []))


def add_bokeh_application(scheduler: Scheduler, applications: dict, prefix: str) -> None:
    """Serve Bokeh documents (``{name: factory(scheduler, extra, doc)}``) under ``prefix`` on the dashboard port."""
    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    bokeh_app = BokehApplication(applications, scheduler, prefix=prefix)
    scheduler.http_application.add_application(bokeh_app)
    bokeh_app.initialize(IOLoop.current())
    bokeh_app.start()


def add_dashboard_navigation(scheduler: Scheduler, page: str) -> None:
    """Add ``page`` to the Dask dashboard's top navigation bar."""
    from distributed.dashboard.scheduler import template_variables

    pages = template_variables(scheduler)["pages"]
    if page not in pages:
        pages.append(page)
