"""Client administration: register, list and revoke, over the API and the command line; audited."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.audit.tables import audit_entry
from broker.auth.clients import CLIENTS
from broker.cli import main as broker_main
from broker.core.entry import Entry, decode_entry
from broker.db import make_engine
from broker.keys import public_jwk
from broker.runtime import Runtime
from broker.settings import Settings
from tests.security.test_tokens import es256, forge

Headers = Callable[..., dict[str, str]]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("riec", ["admin"], kind="personal", acting_user=None)


def entries(runtime: Runtime, action: str) -> list[Entry]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(audit_entry.c.bytes).where(audit_entry.c.action == action)
                            .order_by(audit_entry.c.seq)).all()
    return [decode_entry(row.bytes) for row in rows]


def token_with_secret(api: TestClient, client_id: str, secret: str) -> Any:
    return api.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})


def test_create_client_returns_the_secret_once(
    api: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    answer = api.post("/v1/admin/clients", headers=admin, json={
        "org": "gemeente", "name": "Gemeente systeem", "kind": "system",
        "roles": ["requester", "contributor"]})
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    secret = body.pop("client_secret")
    assert len(secret) >= 43
    assert body.pop("created_at").endswith("Z")
    client_id = body.pop("id")
    assert body == {"org": "gemeente", "name": "Gemeente systeem", "kind": "system",
                    "roles": ["contributor", "requester"], "authentication": "client_secret",
                    "revoked_at": None}
    assert token_with_secret(api, client_id, secret).status_code == 200
    listed = api.get("/v1/admin/clients", headers=admin, params={"org": "gemeente"}).json()
    assert [c["id"] for c in listed["items"]] == [client_id]
    assert "client_secret" not in listed["items"][0]
    with runtime.engine.connect() as conn:
        stored = conn.execute(select(CLIENTS.c.secret_hash).where(CLIENTS.c.id == client_id))
        secret_hash = stored.scalar_one()
    assert secret_hash.startswith("scrypt$16384$8$1$")
    assert secret not in secret_hash
    (entry,) = entries(runtime, "client_created")[-1:]
    assert entry.outcome == "granted"
    assert entry.objects["client_id"] == client_id
    assert entry.actor.org == "riec"
    assert secret not in json.dumps(entry.model_dump())


def test_create_client_with_a_public_key(
    api: TestClient, runtime: Runtime, admin: dict[str, str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    answer = api.post("/v1/admin/clients", headers=admin, json={
        "org": "politie", "name": "Politie systeem", "roles": ["contributor"],
        "public_jwk": public_jwk("k1", key.public_key())})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["client_secret"] is None
    assert (body["authentication"], body["kind"]) == ("private_key_jwt", "system")
    now = int(time.time())
    assertion = forge({"alg": "ES256", "typ": "JWT"}, {
        "iss": body["id"], "sub": body["id"], "aud": runtime.settings.token_url,
        "iat": now, "exp": now + 60, "jti": "one"}, es256(key))
    issued = api.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion})
    assert issued.status_code == 200, issued.text


def _valid_body() -> dict[str, Any]:
    return {"org": "politie", "name": "x", "kind": "system", "roles": ["requester"]}


def test_invalid_client_bodies_are_422_without_echo(
    api: TestClient, admin: dict[str, str]
) -> None:
    jwk = public_jwk("k1", ec.generate_private_key(ec.SECP256R1()).public_key())
    with_d = {**jwk, "d": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U"}
    off_curve = {**jwk, "y": jwk["x"]}
    bodies: dict[str, dict[str, Any]] = {
        "extra-field": {**_valid_body(), "secret_hash": "scrypt$1"},
        "unknown-org": {**_valid_body(), "org": "mi5"},
        "org-pattern": {**_valid_body(), "org": "../Politie"},
        "unknown-role": {**_valid_body(), "roles": ["superuser"]},
        "no-roles": {**_valid_body(), "roles": []},
        "roles-string": {**_valid_body(), "roles": "requester"},
        "separated-duties": {**_valid_body(), "roles": ["admin", "requester"]},
        "kind": {**_valid_body(), "kind": "robot"},
        "empty-name": {**_valid_body(), "name": ""},
        "blank-name": {**_valid_body(), "name": "   "},
        "long-name": {**_valid_body(), "name": "n" * 201},
        "private-key": {**_valid_body(), "public_jwk": with_d},
        "p384": {**_valid_body(), "public_jwk": {**jwk, "crv": "P-384"}},
        "rsa": {**_valid_body(), "public_jwk": {**jwk, "kty": "RSA"}},
        "off-curve": {**_valid_body(), "public_jwk": off_curve},
        "short-x": {**_valid_body(), "public_jwk": {**jwk, "x": jwk["x"][:20]}},
        "alg-hs256": {**_valid_body(), "public_jwk": {**jwk, "alg": "HS256"}},
        "missing-org": {k: v for k, v in _valid_body().items() if k != "org"},
    }
    for name, body in bodies.items():
        answer = api.post("/v1/admin/clients", headers=admin, json=body)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        for echoed in ("mi5", "superuser", "robot", "c2VjcmV0", "scrypt$1"):
            assert echoed not in answer.text, name
    assert api.post("/v1/admin/clients", headers=admin, json=_valid_body()).status_code == 201
    assert api.post("/v1/admin/clients", headers=admin,
                    json={**_valid_body(), "public_jwk": jwk}).status_code == 201


def test_revoke_client(
    api: TestClient, runtime: Runtime, admin: dict[str, str], auth_headers: Headers
) -> None:
    partner = auth_headers("politie", ["requester"])
    listed = api.get("/v1/admin/clients", headers=admin, params={"org": "politie"}).json()
    (client_id,) = [c["id"] for c in listed["items"]]
    assert api.get("/v1/organisations", headers=partner).status_code == 200
    revoked = api.delete(f"/v1/admin/clients/{client_id}", headers=admin)
    assert revoked.status_code == 204
    assert revoked.content == b""
    assert api.get("/v1/organisations", headers=partner).status_code == 401
    again = api.delete(f"/v1/admin/clients/{client_id}", headers=admin)
    assert again.status_code == 404
    (shown,) = api.get("/v1/admin/clients", headers=admin,
                       params={"org": "politie"}).json()["items"]
    assert shown["revoked_at"] is not None
    (entry,) = entries(runtime, "client_revoked")
    assert entry.objects == {"client_id": client_id}
    assert entry.actor.org == "riec"
    for unknown in ("cl_" + "z" * 24, "nonsense", "..%2F..%2Fetc", "cl_" + "a" * 90):
        assert api.delete(f"/v1/admin/clients/{unknown}", headers=admin).status_code == 404
    assert len(entries(runtime, "client_revoked")) == 1


def test_list_clients_pages_by_cursor(api: TestClient, admin: dict[str, str]) -> None:
    for org in ("politie", "gemeente", "belastingdienst"):
        assert api.post("/v1/admin/clients", headers=admin,
                        json={**_valid_body(), "org": org}).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/admin/clients", headers=admin, params=params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4  # three partners and the admin itself
    assert seen == sorted(seen)
    assert api.get("/v1/admin/clients", headers=admin,
                   params={"cursor": "not-a-cursor"}).status_code == 422


# --- command line ----------------------------------------------------------------------------

@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BROKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROKER_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("BROKER_POLICY_DIR", str(settings.policy_dir))
    return settings


def _client_row(settings: Settings, client_id: str) -> Any:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(CLIENTS).where(CLIENTS.c.id == client_id)).one()
    finally:
        engine.dispose()


def test_cli_create_and_revoke(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert broker_main(["clients", "create", "--org", "politie", "--name", "Politie systeem",
                        "--roles", "contributor,requester", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["client_secret"]
    assert created["roles"] == ["contributor", "requester"]
    assert _client_row(cli_env, created["client_id"]).revoked_at is None

    jwk_file = tmp_path / "key.json"
    jwk_file.write_text(json.dumps(public_jwk("k", ec.generate_private_key(
        ec.SECP256R1()).public_key())))
    assert broker_main(["clients", "create", "--org", "riec", "--name", "Analist",
                        "--roles", "requester", "--kind", "personal",
                        "--jwk", str(jwk_file)]) == 0
    text = capsys.readouterr().out
    assert "client_id:" in text
    assert "client_secret" not in text

    assert broker_main(["clients", "revoke", created["client_id"]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert _client_row(cli_env, created["client_id"]).revoked_at is not None
    assert broker_main(["clients", "revoke", created["client_id"]]) == 1
    assert "No such active client" in capsys.readouterr().err


def test_cli_refuses_bad_input(
    cli_env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert broker_main(["clients", "create", "--org", "mi5", "--name", "x",
                        "--roles", "requester"]) == 1
    assert "org" in capsys.readouterr().err
    assert broker_main(["clients", "create", "--org", "politie", "--name", "x",
                        "--roles", "admin,requester"]) == 1
    assert "roles" in capsys.readouterr().err
    assert broker_main(["clients", "create", "--org", "politie", "--name", "x",
                        "--roles", "requester", "--jwk", str(tmp_path / "absent.json")]) == 2
    with pytest.raises(SystemExit) as usage:
        broker_main(["clients", "create", "--org", "politie"])
    assert usage.value.code == 2
