"""The broker's app with the officer's pages and the disclosure routers, for uvicorn in the
browser tests (`--factory tests.e2e.officer_app:create`), until `broker.app` serves them.

Once the app factory includes them, this adds nothing: it only fills in what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI

from broker import officer
from broker.app import create_app


def route_paths(routes: Sequence[Any]) -> Iterator[str]:
    """Every path served, looking inside included routers (FastAPI includes them lazily)."""
    for route in routes:
        path = getattr(route, "path", None)
        if path is not None:
            yield path
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from route_paths(inner.routes)


def with_officer_pages(app: FastAPI) -> FastAPI:
    """`app` serving the officer's pages (included here unless it already serves them)."""
    if not any(path.startswith("/officer") for path in route_paths(app.routes)):
        app.include_router(officer.router)
    return app


def create() -> FastAPI:
    app = create_app()
    return with_officer_pages(app)
