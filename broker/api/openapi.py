"""The OpenAPI document's authentication: the bearer scheme and the acting-person header.

Our token checks are plain dependencies (`broker.auth.deps`), not FastAPI security
classes, so the generated document would say nothing about them. This reads each
route's dependencies instead: an operation whose dependencies include `authenticated`
or a role check made by `require`/`require_acting` declares `security: [bearer]`; one
guarded by `require_acting` also declares the optional `X-Acting-User` header, which a
system client must send there (a personal client acts as itself).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, Final

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from broker.auth.deps import ACTING_USER_PATTERN, authenticated, require, require_acting

BEARER: Final = "bearer"
BEARER_SCHEME: Final = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "An ES256 access token (RFC 9068 `at+jwt`) from `POST /oauth/token`.",
}
ACTING_USER_PARAMETER: Final = {
    "name": "X-Acting-User",
    "in": "header",
    "required": False,
    "description": (
        "The person acting through a system client; required from system clients on this "
        "operation. A personal client is the person and leaves it out (naming anyone else "
        "is 403). The audit log keeps it only as a keyed tag."
    ),
    "schema": {"type": "string", "pattern": ACTING_USER_PATTERN},
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency callable of a route, at any depth."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _code(call: object) -> object:
    return getattr(call, "__code__", None)


def token_needs(dependant: Dependant) -> tuple[bool, bool]:
    """(needs a token, needs the acting person) for one route, from its dependencies.

    `require` and `require_acting` make a fresh closure per use; every closure one factory
    makes shares that factory's code object, which is what identifies it."""
    role_check, acting_check = _code(require("admin")), _code(require_acting("admin"))
    token = acting = False
    for call in _calls(dependant):
        code = _code(call)
        acting = acting or code is acting_check
        token = token or call is authenticated or code in (role_check, acting_check)
    return token, acting


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API route in the document, as served (an included router's routes carry its
    prefix; FastAPI 0.165 reaches them through route contexts, earlier ones list them)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    routes = contexts(app.routes) if contexts else app.routes
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, APIRoute) and getattr(route, "include_in_schema", False):
            yield route


def _declare(document: dict[str, Any], app: FastAPI) -> None:
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER] = copy.deepcopy(BEARER_SCHEME)
    for route in api_routes(app):
        token, acting = token_needs(route.dependant)
        operations = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods:
            operation = operations.get(method.lower())
            if operation is None:
                continue
            if token:
                operation["security"] = [{BEARER: []}]
            if acting:
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "X-Acting-User" for p in parameters):
                    parameters.append(copy.deepcopy(ACTING_USER_PARAMETER))


def declare_security(app: FastAPI) -> None:
    """Make `app.openapi()` declare the bearer scheme and the acting-person header."""
    generate = app.openapi
    declared: list[dict[str, Any]] = []  # the document last completed (FastAPI caches it)

    def openapi() -> dict[str, Any]:
        document = generate()
        if not declared or declared[0] is not document:
            _declare(document, app)
            declared[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
