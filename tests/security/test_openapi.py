"""The OpenAPI document declares how to authenticate: the bearer scheme on every operation
that needs a token, and the `X-Acting-User` header where a system client must send it.

Who needs a token comes from the role matrix (test_role_matrix.py); who must name the
acting person is asked of the app itself: a system client's valid token without the
header is refused with 400 exactly there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from broker.auth.deps import ACTING_USER_PATTERN
from tests.security.conftest import allowed_roles, first_role

Headers = Callable[..., dict[str, str]]
ACTING_REFUSAL = "System clients must name the acting person in X-Acting-User."


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return sorted((method.upper(), path, operation)
                  for path, methods in document["paths"].items()
                  for method, operation in methods.items())


def acting_header(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["name"] == "X-Acting-User"]


def test_the_bearer_scheme_is_declared_on_every_protected_operation(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["components"]["securitySchemes"]["bearer"]["bearerFormat"] == "JWT"
    public, protected = [], []
    for method, path, operation in operations(document):
        if allowed_roles(method, path) is None:
            assert "security" not in operation, (method, path)
            public.append(path)
        else:
            assert operation.get("security") == [{"bearer": []}], (method, path)
            protected.append(path)
    assert {"/oauth/token", "/.well-known/jwks.json", "/.well-known/oauth-authorization-server",
            "/v1/audit/checkpoint-key", "/healthz", "/readyz", "/metrics"} == set(public)
    assert len(protected) >= 25


def test_x_acting_user_is_declared_exactly_where_it_is_required(
    api: TestClient, auth_headers: Headers
) -> None:
    document = api.app.openapi()  # type: ignore[attr-defined]
    made: dict[tuple[str, ...], dict[str, str]] = {}
    declared, required = set(), set()
    for method, path, operation in operations(document):
        roles = first_role(method, path)
        if not roles:
            assert not acting_header(operation), (method, path)
            continue
        if roles not in made:
            made[roles] = auth_headers("gemeente", list(roles), acting_user=None)
        url = re.sub(r"\{[^}]+\}", "0", path)
        answer = api.request(method, url, headers=made[roles], json={})
        if answer.status_code == 400 and answer.json()["detail"] == ACTING_REFUSAL:
            required.add((method, path))
        if header := acting_header(operation):
            assert header == [{
                "name": "X-Acting-User", "in": "header", "required": False,
                "description": header[0]["description"],
                "schema": {"type": "string", "pattern": ACTING_USER_PATTERN},
            }], (method, path)
            declared.add((method, path))
    assert declared == required
    assert ("POST", "/v1/signals") in declared and ("POST", "/v1/disclosures") in declared
    assert ("GET", "/v1/purposes") not in declared


def test_the_served_document_is_the_completed_one(api: TestClient) -> None:
    """`/openapi.json` and `app.openapi()` agree, and a second call changes nothing."""
    first = api.get("/openapi.json").json()
    assert api.app.openapi() == first  # type: ignore[attr-defined]
    assert api.get("/openapi.json").json() == first
    parameters = first["paths"]["/v1/signals"]["post"]["parameters"]
    assert sum(p["name"] == "X-Acting-User" for p in parameters) == 1
