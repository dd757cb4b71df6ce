"""The scheduler-side half of the daskflow dashboard: data, JSON routes, Bokeh apps.

Design note. One :class:`DashboardExtension` per scheduler (stored as the
scheduler extension :data:`daskflow.contracts.DASHBOARD_EXTENSION`) owns the
bounded aggregates (:class:`.state.DashboardState`), the catalog reader
(:class:`.assets.AssetLineageReader`) and a periodic callback of the same
name that folds new
recorder rows into the aggregates so the model-quality series keeps going
while nobody looks. Pages and JSON endpoints read the same aggregates.

How pages reach the dashboard (verified against distributed 2026.8): the
scheduler's HTTP server is a ``RoutingApplication``; it tries its own handlers
first, then each application added with ``add_application``. We add

* tornado handlers for ``/daskflow/`` (index) and ``/daskflow/api/*`` with
  ``http_application.add_handlers``, and
* a second Bokeh server (distributed's ``BokehApplication``, i.e. a
  ``BokehTornado``) with prefix ``/daskflow`` holding the four documents, so
  ``/daskflow/<page>``, its websocket and its ``/daskflow/static`` files are
  served on the dashboard's own port. Relative resource URLs in the page then
  resolve under ``/daskflow/``.

Every scheduler internal used for that (extensions, periodic callbacks, the
HTTP application, the navigation bar) goes through :mod:`scheduler_plugins.compat`.
"""

from __future__ import annotations

import html
import json
import logging
import math
from typing import Any

from tornado import web

from daskflow import config
from daskflow.contracts import DASHBOARD_EXTENSION, RECORDER_PLUGIN, STEERING_PLUGIN, DecisionEvent
from scheduler_plugins import compat
from scheduler_plugins.dashboard.assets import AssetLineageReader
from scheduler_plugins.dashboard.catalog_views import (
    CatalogViews,
    running_asset_partitions,
)
from scheduler_plugins.dashboard.run_timeline import run_ids_of, run_timeline
from scheduler_plugins.dashboard.state import (
    DashboardState,
    recent_decisions,
    steering_summary,
)

logger = logging.getLogger(__name__)

EXTENSION_NAME = DASHBOARD_EXTENSION


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    try:
        return _clean(float(value))  # numpy scalars
    except (TypeError, ValueError):
        return str(value)


def dumps(payload: Any) -> str:
    return json.dumps(_clean(payload))


class DashboardExtension:
    """Aggregates and endpoints of the daskflow pages for one scheduler."""

    def __init__(self, scheduler: Any) -> None:
        from dask.utils import parse_timedelta

        self.scheduler = scheduler
        self.update_interval_s = float(parse_timedelta(config.get("dashboard.update-interval")))
        self.max_decisions = int(config.get("dashboard.max-decisions"))
        self.state = DashboardState(
            max_points=int(config.get("dashboard.max-points")),
            window=int(config.get("dashboard.quality-window")),
            drift_tolerance=float(config.get("dashboard.drift-tolerance")),
        )
        self.lineage = AssetLineageReader(
            recent_runs=int(config.get("dashboard.recent-runs")),
            max_assets=int(config.get("dashboard.max-assets")),
            cache_s=max(1.0, self.update_interval_s),
        )
        self.catalog_views = CatalogViews(
            max_assets=int(config.get("dashboard.max-assets")),
            max_points=int(config.get("dashboard.max-points")),
            cache_s=max(1.0, self.update_interval_s),
        )
        self.http_prefix = compat.http_prefix(scheduler)
        self.url_prefix = f"{self.http_prefix}/daskflow"
        self.refresh_error_count = 0

    # -------------------------------------------------------------- data
    def refresh(self) -> None:
        """Fold new recorder rows into the aggregates; never raises into the scheduler."""
        try:
            self.state.pull(self.scheduler)
        except Exception:
            self.refresh_error_count += 1
            if self.refresh_error_count == 1:
                logger.warning("daskflow dashboard: reading recorder rows failed", exc_info=True)

    def steering(self) -> dict[str, Any]:
        return steering_summary(self.scheduler)

    def decisions(self, limit: int | None = None) -> list[DecisionEvent]:
        return recent_decisions(self.scheduler, min(int(limit or self.max_decisions), self.max_decisions))

    def assets(self) -> dict[str, Any]:
        return self.lineage.payload()

    def running(self) -> set:
        """(asset, partition) of the asset tasks processing on workers now (live status)."""
        try:
            return running_asset_partitions(self.scheduler)
        except Exception:
            logger.debug("daskflow dashboard: reading processing tasks failed", exc_info=True)
            return set()

    def recorded_rows(self) -> dict[str, dict]:
        """The recorder's recent rows by task key (bounded by ``daskflow.recorder.recent-rows``)."""
        recorder = compat.plugin(self.scheduler, RECORDER_PLUGIN)
        return {str(r.get("key")): r for r in list(getattr(recorder, "recent_rows", ()) or ())}

    def asset_catalog(self, pipeline: str | None = None) -> dict[str, Any]:
        payload = self.catalog_views.catalog(pipeline)
        running = {a for a, _ in self.running()}
        assets = [{**a, "status": "running" if a["asset"] in running else a["status"]} for a in payload["assets"]]
        return {**payload, "assets": assets}

    def asset_detail(self, asset_key: str) -> dict[str, Any]:
        return self.catalog_views.asset(asset_key, self.running(), self.recorded_rows())

    def timeline(self, run_id: str | None = None) -> dict[str, Any]:
        rows = list(self.recorded_rows().values())
        runs = run_ids_of(rows)
        run_id = run_id or (runs[0] if runs else None)
        decisions = [d for d in self.decisions() if d.get("run_id") in (run_id, None) and d.get("key") is not None]
        parents = self.catalog_views.run_inputs(run_id) if run_id else {}
        return {"runs": runs, **run_timeline(rows, decisions, run_id, parents, max_tasks=self.state.max_points)}

    def model(self) -> dict[str, Any]:
        steering = self.steering()
        quality = self.state.quality_payload()
        if steering["present"] and not steering["model_version"]:
            drift = quality["drift"]
            drift["message"] = (
                "no trained model loaded: predictions are per-category means or defaults "
                f"(train one with `daskflow model train`). {drift['message']}"
            )
        return {"steering": steering, "quality": quality, "model_events": self.model_events()}

    def model_events(self, limit: int = 20) -> list[dict[str, Any]]:
        """The steering plugin's newest drift alarms and model loads, newest first (also in <models>/events.jsonl)."""
        steering = compat.plugin(self.scheduler, STEERING_PLUGIN)
        events = list(getattr(steering, "model_events", ()) or ())
        return [dict(e) for e in reversed(events[-limit:])]

    def predictions(self, limit: int | None = None) -> dict[str, Any]:
        self.refresh()
        return {"steering": self.steering(), **self.state.predictions_payload(limit)}

    def teardown(self) -> None:
        compat.remove_periodic_callback(self.scheduler, EXTENSION_NAME)


# ------------------------------------------------------------------ tornado
#: the JSON endpoints under /daskflow/api/ (the index lists them)
API_NAMES = ("decisions", "model", "predictions", "assets", "runs", "catalog", "asset", "timeline")


class _Handler(web.RequestHandler):
    def initialize(self, extension: DashboardExtension) -> None:
        self.extension = extension

    def _limit(self) -> int | None:
        value = self.get_argument("limit", None)
        try:
            return max(1, int(value)) if value is not None else None
        except ValueError:
            raise web.HTTPError(400, reason=f"limit must be an integer, got {value!r}") from None

    def write_json(self, payload: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(dumps(payload))


class DecisionsHandler(_Handler):
    def get(self) -> None:
        decisions = self.extension.decisions(self._limit())
        self.write_json({**self.extension.steering(), "count": len(decisions), "decisions": decisions})


class ModelHandler(_Handler):
    def get(self) -> None:
        self.extension.refresh()
        self.write_json(self.extension.model())


class PredictionsHandler(_Handler):
    def get(self) -> None:
        self.write_json(self.extension.predictions(self._limit()))


class AssetsHandler(_Handler):
    def get(self) -> None:
        self.write_json(self.extension.assets())


class CatalogHandler(_Handler):
    def get(self) -> None:
        self.write_json(self.extension.asset_catalog(self.get_argument("pipeline", None)))


class AssetHandler(_Handler):
    def get(self) -> None:
        key = self.get_argument("key", None)
        if not key:
            raise web.HTTPError(400, reason="pass the asset key: /daskflow/api/asset?key=ASSET")
        self.write_json(self.extension.asset_detail(key))


class TimelineHandler(_Handler):
    def get(self) -> None:
        self.write_json(self.extension.timeline(self.get_argument("run", None)))


class IndexHandler(_Handler):
    def get(self) -> None:
        from scheduler_plugins.dashboard.pages import PAGES

        prefix = self.extension.url_prefix
        steering = self.extension.steering()
        links = "\n".join(f'<li><a id="daskflow-link-{p}" href="{prefix}/{p}">{label}</a></li>' for p, label in PAGES.items())
        apis = "\n".join(f'<li><a href="{prefix}/api/{a}">/daskflow/api/{a}</a></li>' for a in API_NAMES)
        self.write(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>daskflow</title></head>"
            "<body style='font-family: sans-serif; margin: 20px'>"
            "<h1>daskflow</h1>"
            f"<p id='daskflow-index-summary'>steering mode: <b>{html.escape(str(steering['mode']))}</b>, model version: "
            f"<b>{html.escape(str(steering['model_version'] or 'none'))}</b>, "
            f"recorder: <b>{'on' if steering['recorder'] else 'absent'}</b></p>"
            f"<h2>Pages</h2><ul id='daskflow-pages'>{links}</ul>"
            f"<h2>JSON</h2><ul id='daskflow-apis'>{apis}</ul>"
            f"<p><a href='{self.extension.http_prefix}/status'>&larr; Dask dashboard</a></p>"
            "</body></html>"
        )


def add_routes(scheduler: Any, extension: DashboardExtension) -> None:
    """Index and JSON endpoints on the scheduler's HTTP application."""
    from scheduler_plugins.dashboard.runs_page import RunsHandler

    prefix = extension.url_prefix
    kwargs = {"extension": extension}
    compat.add_http_handlers(
        scheduler,
        [
            (rf"{prefix}/?", IndexHandler, kwargs),
            (rf"{prefix}/api/decisions", DecisionsHandler, kwargs),
            (rf"{prefix}/api/model", ModelHandler, kwargs),
            (rf"{prefix}/api/predictions", PredictionsHandler, kwargs),
            (rf"{prefix}/api/assets", AssetsHandler, kwargs),
            (rf"{prefix}/api/runs", RunsHandler, kwargs),
            (rf"{prefix}/api/catalog", CatalogHandler, kwargs),
            (rf"{prefix}/api/asset", AssetHandler, kwargs),
            (rf"{prefix}/api/timeline", TimelineHandler, kwargs),
        ],
    )


def add_bokeh_pages(scheduler: Any, extension: DashboardExtension) -> bool:
    """Serve the Bokeh documents under ``/daskflow/`` on the dashboard port; False without Bokeh."""
    try:
        import distributed.dashboard.core  # noqa: F401 - needs a usable Bokeh
    except ImportError:
        logger.warning("daskflow dashboard: Bokeh is not usable here; only the JSON endpoints are served")
        return False
    from scheduler_plugins.dashboard.pages import APPLICATIONS

    if not compat.has_bokeh_dashboard(scheduler):
        logger.info("daskflow dashboard: the Dask dashboard is off (--no-dashboard); serving only the JSON endpoints")
        return False
    compat.add_bokeh_application(scheduler, APPLICATIONS, extension.url_prefix)
    return True


def add_navigation_link(scheduler: Any) -> None:
    """Add "daskflow" to the Dask dashboard's top navigation bar (best effort)."""
    try:
        compat.add_dashboard_navigation(scheduler, "daskflow/")
    except Exception:
        logger.debug("daskflow dashboard: could not add the navigation link", exc_info=True)


def start_periodic_refresh(scheduler: Any, extension: DashboardExtension) -> None:
    """Refresh the aggregates every ``update-interval`` (started now when installed after start-up)."""
    compat.add_periodic_callback(scheduler, EXTENSION_NAME, extension.refresh, extension.update_interval_s * 1000)
