"""The app factory: settings in, FastAPI app out. Nothing happens at import time."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from broker import __version__
from broker.api import docs as api_docs
from broker.api import fastlane, observe, routers
from broker.api.middleware import RequestGuard
from broker.api.openapi import declare_security
from broker.api.problems import install_problem_handlers
from broker.api.routes import disclosures
from broker.runtime import Runtime, open_runtime
from broker.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the broker's ASGI app; keys, database and policy are opened in the lifespan."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.thread_limit
        live = runtime or open_runtime(settings)
        app.state.runtime = live
        # What start-up built (routes, models, the pack, SQLAlchemy's metadata) lives as
        # long as the process: out of the collector's way, full collections stay short.
        gc.freeze()
        try:
            yield
        finally:
            if runtime is None:
                live.close()

    app = FastAPI(
        title="Sluis",
        version=__version__,
        summary="Policy-bound information sharing with a verifiable audit log",
        lifespan=lifespan,
        debug=False,
        # Served by broker.api.docs with their own files: the defaults load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    for router in routers():
        app.include_router(router)
    api_docs.install(app)
    declare_security(app)
    fastlane.install(app, disclosures.router, disclosures.LANES)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    observe.install(app)
    return app
