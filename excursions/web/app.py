"""The QA app: the JSON API and the pages in one FastAPI application.

Every response carries security headers: a Content-Security-Policy that allows nothing but
the app's own style sheets and scripts (files under ``/static``: no inline script or
style, no ``eval``), requests to the app itself (the live status page polls its JSON),
forms posting to the app and no framing (the trend chart is inline SVG with presentation
attributes), plus ``nosniff``, ``Referrer-Policy: same-origin`` and no caching of pages
that show records. Only the live status page has a script; every other page has none.

Other packages add their pages through ``extensions``, called before ``/static`` is
mounted (so that a page's own static files can be mounted below it): the live status page
of ``dashboards.status`` is added this way by the command that builds the app, as
``excursions`` must not import ``dashboards``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from excursions.web.admin_pages import add_admin_pages
from excursions.web.api import Services, create_api
from excursions.web.pages import add_pages

if TYPE_CHECKING:
    from alerts.web import IncidentServices

STATIC: Final = Path(__file__).parent / "static"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self';"
        " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not "no-referrer": with it, Chromium sends "Origin: null" on the app's own form posts,
    # which the origin check must refuse. "same-origin" tells no other site anything.
    "Referrer-Policy": "same-origin",
}


def create_app(
    services: Services,
    *,
    site_name: str = "envmon",
    incidents: IncidentServices | None = None,
    extensions: Sequence[Callable[[FastAPI], None]] = (),
) -> FastAPI:
    """Return the application ``envmon excursions serve`` runs.

    With ``incidents`` (a site with an ``alerting:`` section) it also serves the incidents
    pages and API (``alerts.web``). Each of ``extensions`` adds pages of another package
    (e.g. ``dashboards.status.add_status``) before the static files are mounted.
    """
    app = create_api(services)
    add_pages(app, services, site_name=site_name, incidents_nav=incidents is not None)
    add_admin_pages(app, services, site_name=site_name, incidents_nav=incidents is not None)
    if incidents is not None:
        from alerts.web import add_incidents  # the alerting side is optional

        add_incidents(app, services, incidents, site_name=site_name)
    for extend in extensions:
        extend(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
