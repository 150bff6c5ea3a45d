"""The QA app: the JSON API and the pages in one FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from excursions.web.api import Services, create_api
from excursions.web.pages import add_pages


def create_app(services: Services, *, site_name: str = "envmon") -> FastAPI:
    """Return the application ``envmon excursions serve`` runs."""
    app = create_api(services)
    add_pages(app, services, site_name=site_name)
    return app
