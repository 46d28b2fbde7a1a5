"""Every route of the app × every role: generated from `app.routes`, so no route is forgotten.

A route missing from EXPECTED fails the suite: whoever adds a route decides here who
may call it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.settings import Settings

ROLES = ("contributor", "requester", "privacy_officer", "admin")
ANY = frozenset(ROLES)
PUBLIC = None  # no token needed
PARTNERS_AND_OFFICER = frozenset({"contributor", "requester", "privacy_officer"})

# (method, path) -> roles that may call it; PUBLIC for routes without a token.
EXPECTED: dict[tuple[str, str], frozenset[str] | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # no access token: the metrics token (test_metrics_token.py)
    ("POST", "/oauth/token"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/.well-known/oauth-authorization-server"): PUBLIC,
    ("GET", "/v1/organisations"): ANY,
    ("GET", "/v1/purposes"): ANY,
    ("GET", "/v1/legal-bases"): ANY,
    ("GET", "/v1/categories"): ANY,
    ("GET", "/v1/policy"): ANY,
    ("POST", "/v1/policy/explain"): ANY,
    ("GET", "/v1/policy/history"): frozenset({"privacy_officer", "admin"}),
    ("GET", "/v1/policy/packs/{pack_hash}"): frozenset({"privacy_officer", "admin"}),
    ("GET", "/v1/policy/diff"): frozenset({"privacy_officer", "admin"}),
    ("POST", "/v1/policy/impact"): frozenset({"privacy_officer", "admin"}),
    ("POST", "/v1/signals"): frozenset({"contributor"}),
    ("POST", "/v1/signals/{signal_id}/hold"): frozenset({"privacy_officer"}),
    ("GET", "/v1/signals/{signal_id}/hold"): frozenset({"privacy_officer"}),
    ("DELETE", "/v1/signals/{signal_id}/hold"): frozenset({"privacy_officer"}),
    ("GET", "/v1/legal-holds"): frozenset({"privacy_officer"}),
    ("POST", "/v1/signals/batch"): frozenset({"contributor"}),
    ("GET", "/v1/signals"): frozenset({"contributor"}),
    ("GET", "/v1/signals/{signal_id}"): frozenset({"contributor"}),
    ("DELETE", "/v1/signals/{signal_id}"): frozenset({"contributor"}),
    ("POST", "/v1/admin/clients"): frozenset({"admin"}),
    ("GET", "/v1/admin/clients"): frozenset({"admin"}),
    ("DELETE", "/v1/admin/clients/{client_id}"): frozenset({"admin"}),
    ("POST", "/v1/admin/policy/reload"): frozenset({"admin"}),
    ("POST", "/v1/admin/keys/rotate"): frozenset({"admin"}),
    ("GET", "/v1/audit/entries"): PARTNERS_AND_OFFICER,
    ("GET", "/v1/audit/entries/{seq}"): PARTNERS_AND_OFFICER,
    ("GET", "/v1/audit/entries/{seq}/receipt"): PARTNERS_AND_OFFICER,
    ("GET", "/v1/audit/checkpoint"): ANY,  # checkpoints and proofs serve every witness
    ("GET", "/v1/audit/checkpoint-key"): PUBLIC,
    ("GET", "/v1/audit/proofs/inclusion"): ANY,  # checkpoints and proofs serve every witness
    ("GET", "/v1/audit/proofs/consistency"): ANY,  # checkpoints and proofs serve every witness
    ("GET", "/v1/audit/verify"): frozenset({"privacy_officer"}),
    ("POST", "/v1/audit/subject-report"): frozenset({"privacy_officer"}),
    ("POST", "/v1/disclosures"): frozenset({"requester"}),
    ("POST", "/v1/hits"): frozenset({"requester"}),
    ("POST", "/v1/area-summaries"): frozenset({"requester"}),
    ("POST", "/v1/reidentifications"): frozenset({"requester"}),
    ("GET", "/v1/reidentifications"): frozenset({"privacy_officer"}),
    ("POST", "/v1/reidentifications/{reid_id}/decision"): frozenset({"privacy_officer"}),
    ("GET", "/v1/reidentifications/{reid_id}"): frozenset({"requester", "privacy_officer"}),
    ("GET", "/v1/audit/export"): frozenset({"privacy_officer"}),
}

DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}


def app_routes(settings: Settings) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its own OpenAPI document."""
    paths = create_app(settings).openapi()["paths"]
    found = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path not in DOC_ROUTES
        for method in operations
    ]
    return sorted(found)


def test_every_route_has_an_expectation(sqlite_url: str, key_dir: object) -> None:
    settings = Settings(database_url=sqlite_url)
    routes = app_routes(settings)
    missing = [r for r in routes if r not in EXPECTED]
    assert not missing, f"routes without a role expectation: {missing}"
    stale = [r for r in EXPECTED if r not in routes]
    assert not stale, f"expectations for routes that do not exist: {stale}"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "0" if m.group(0) == "{seq}" else "x-unknown", path)


def _call(api: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    return api.request(method, _concrete(path), headers=headers, json={}).status_code


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(
    api: TestClient, auth_headers: Callable[..., dict[str, str]], role: str
) -> None:
    headers = auth_headers("gemeente", [role])
    checked = 0
    for (method, path), allowed in sorted(EXPECTED.items()):
        if allowed is PUBLIC or (method, path) == ("POST", "/v1/admin/keys/rotate"):
            continue
        status = _call(api, method, path, headers)
        if role in allowed:
            assert status not in (401, 403), f"{role} refused on {method} {path}: {status}"
        else:
            assert status == 403, f"{role} got {status} on {method} {path}"
        checked += 1
    assert checked >= 20


def test_no_token_is_401_on_every_protected_route(api: TestClient) -> None:
    for (method, path), allowed in sorted(EXPECTED.items()):
        if allowed is PUBLIC:
            continue
        answer = api.request(method, _concrete(path), json={})
        assert answer.status_code == 401, f"{method} {path}: {answer.status_code}"
        assert answer.headers.get("www-authenticate", "").startswith("Bearer")
