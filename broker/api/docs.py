"""The API documentation pages, `/docs` (Swagger UI) and `/redoc`, served with their own files.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so on a closed network (the
usual place for a broker between agencies) they stay blank. The files come from the
`fastapi-offline` package (Swagger UI, Apache-2.0; ReDoc, MIT) and are served from
`/docs/assets/`; the pages name nothing outside the broker, and their Content-Security-Policy
lets them load nothing from elsewhere either.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL: Final = "/docs"
REDOC_URL: Final = "/redoc"
ASSETS_URL: Final = "/docs/assets"
OAUTH2_REDIRECT_URL: Final = "/docs/oauth2-redirect"
# The pages' own inline start-up scripts and styles, the files above, the OpenAPI
# document; ReDoc runs its search in a worker made from a blob.
POLICY: Final = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS: Final = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff"}


def assets_dir() -> Path:
    """Where the installed `fastapi-offline` keeps Swagger UI's and ReDoc's files."""
    return Path(str(files("fastapi_offline") / "static"))


def _page(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(HEADERS)
    return page


def _root(request: Request) -> str:
    """The path the broker is mounted under behind a proxy (`root_path`), as FastAPI's own
    pages use it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def install(app: FastAPI) -> None:
    """Serve `/docs`, its OAuth2 redirect page, `/redoc` and their files on `app`."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return _page(get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title}: API",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # No badge from the public validator service.
            swagger_ui_parameters={"validatorUrl": None},
        ))

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _page(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return _page(get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title}: API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        ))
