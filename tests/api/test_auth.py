"""The token endpoint, the JWKS, and what a route learns about its caller (roles, acting user)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any
from urllib.parse import quote_plus

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from jose import jwt

from broker.app import create_app
from broker.auth import clients, tokens
from broker.auth.deps import Caller, CallerDep, require, require_acting
from broker.errors import ValidationFailed
from broker.keys import public_jwk
from broker.runtime import Runtime
from broker.settings import Settings
from tests.security.test_tokens import DROP, es256, forge, hs256

Credentials = Callable[..., tuple[str, str]]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# --- an app with probe routes that show what the dependencies produce ------------------------

probes = APIRouter(prefix="/probe")


def _view(caller: Caller) -> dict[str, Any]:
    return {"client_id": caller.client_id, "org": caller.org, "roles": sorted(caller.roles),
            "kind": caller.kind, "acting_user": caller.acting_user, "token_id": caller.token_id}


@probes.get("/any")
def any_caller(caller: CallerDep) -> dict[str, Any]:
    return _view(caller)


@probes.get("/requester")
def requester_only(caller: Annotated[Caller, Depends(require("requester"))]) -> dict[str, Any]:
    return _view(caller)


@probes.get("/acting-contributor")
def acting_contributor(
    caller: Annotated[Caller, Depends(require_acting("contributor"))],
) -> dict[str, Any]:
    return _view(caller)


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    application = create_app(settings, runtime=runtime)
    application.include_router(probes)
    with TestClient(application) as client:
        yield client


def secret_form(client_id: str, secret: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
            **extra}


def login(app: TestClient, client_id: str, secret: str, **extra: str) -> str:
    answer = app.post("/oauth/token", data=secret_form(client_id, secret, **extra))
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def assert_invalid_client(answer: Any, *, assertion: bool = False) -> None:
    """401 `invalid_client`, saying nothing of why; a refused client assertion is told
    the rules every assertion must meet (the same words, whatever it broke)."""
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    description = "Client authentication failed."
    if assertion:
        description += (" A client assertion must be signed with ES256 by the client's "
                        "registered key, have aud https://sluis.example/oauth/token, and "
                        "expire within 300 seconds.")
    assert answer.json() == {"error": "invalid_client", "error_description": description}


# --- client secret ---------------------------------------------------------------------------

def test_token_for_a_secret_in_the_body(
    app: TestClient, runtime: Runtime, credentials: Credentials
) -> None:
    client_id, secret = credentials("politie", ["contributor", "requester"])
    answer = app.post("/oauth/token", data=secret_form(client_id, secret))
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["pragma"] == "no-cache"
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == (
        "Bearer", 600, "contributor requester")
    claims = tokens.verify_access_token(body["access_token"], runtime.keys, runtime.settings)
    assert (claims.client_id, claims.org, claims.roles) == (
        client_id, "politie", frozenset({"contributor", "requester"}))
    assert claims.expires_at - claims.issued_at == 600
    seen = app.get("/probe/any", headers=bearer(body["access_token"])).json()
    assert seen == {"client_id": client_id, "org": "politie",
                    "roles": ["contributor", "requester"], "kind": "system",
                    "acting_user": None, "token_id": claims.token_id}


def test_token_for_http_basic(app: TestClient, credentials: Credentials) -> None:
    client_id, secret = credentials("gemeente", ["requester"])
    answer = app.post("/oauth/token", data={"grant_type": "client_credentials"},
                      headers=basic(client_id, secret))
    assert answer.status_code == 200, answer.text
    assert app.get("/probe/requester",
                   headers=bearer(answer.json()["access_token"])).status_code == 200
    wrong = app.post("/oauth/token", data={"grant_type": "client_credentials"},
                     headers=basic(client_id, secret + "x"))
    assert_invalid_client(wrong)
    assert wrong.headers["www-authenticate"] == 'Basic realm="sluis"'


def test_two_authentication_methods_at_once_are_refused(
    app: TestClient, credentials: Credentials
) -> None:
    client_id, secret = credentials("gemeente", ["requester"])
    answer = app.post("/oauth/token", data=secret_form(client_id, secret),
                      headers=basic(client_id, secret))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_bad_credentials_are_invalid_client(app: TestClient, credentials: Credentials) -> None:
    client_id, secret = credentials("politie", ["requester"])
    other = secret[:-1] + ("B" if secret.endswith("A") else "A")
    attempts: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "wrong-secret": ({"client_id": client_id, "client_secret": other}, {}),
        "unknown-client": ({"client_id": "cl_" + "b" * 24, "client_secret": secret}, {}),
        "odd-client-id": ({"client_id": "../../etc/passwd", "client_secret": secret}, {}),
        "no-secret": ({"client_id": client_id}, {}),
        "no-client-id": ({"client_secret": secret}, {}),
        "empty-secret": ({"client_id": client_id, "client_secret": ""}, {}),
        "long-secret": ({"client_id": client_id, "client_secret": secret * 100}, {}),
        "malformed-basic": ({}, {"Authorization": "Basic !!!"}),
        "basic-without-colon": ({}, {"Authorization": "Basic " + base64.b64encode(
            client_id.encode()).decode()}),
        "nothing": ({}, {}),
    }
    for name, (form, headers) in attempts.items():
        answer = app.post("/oauth/token", data={"grant_type": "client_credentials", **form},
                          headers=headers)
        assert answer.status_code == 401, name
        assert_invalid_client(answer)
    assert app.post("/oauth/token", data=secret_form(client_id, secret)).status_code == 200


def test_grant_type_must_be_client_credentials(app: TestClient, credentials: Credentials) -> None:
    client_id, secret = credentials("politie", ["requester"])
    attempts = [
        ({"client_id": client_id, "client_secret": secret}, "invalid_request"),
        (secret_form(client_id, secret, grant_type="password"), "unsupported_grant_type"),
        (secret_form(client_id, secret, grant_type="authorization_code"),
         "unsupported_grant_type"),
        (secret_form(client_id, secret, grant_type="CLIENT_CREDENTIALS"),
         "unsupported_grant_type"),
    ]
    for form, error in attempts:
        answer = app.post("/oauth/token", data=form)
        assert answer.status_code == 400
        assert answer.json()["error"] == error
        assert secret not in answer.text


def test_json_body_is_not_a_token_request(app: TestClient, credentials: Credentials) -> None:
    client_id, secret = credentials("politie", ["requester"])
    answer = app.post("/oauth/token", json=secret_form(client_id, secret))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_scope_narrows_the_token_to_some_roles(
    app: TestClient, credentials: Credentials
) -> None:
    client_id, secret = credentials("politie", ["contributor", "requester"])
    narrow = app.post("/oauth/token", data=secret_form(client_id, secret, scope="requester"))
    assert narrow.json()["scope"] == "requester"
    token = narrow.json()["access_token"]
    assert app.get("/probe/requester", headers=bearer(token)).status_code == 200
    assert app.get("/probe/acting-contributor",
                   headers=bearer(token, **{"X-Acting-User": "emp-1"})).status_code == 403
    wider = app.post("/oauth/token", data=secret_form(client_id, secret, scope="admin"))
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"


# --- private_key_jwt (RFC 7523) --------------------------------------------------------------

class KeyHolder:
    def __init__(self, runtime: Runtime, client_id: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.client_id, self.key, self.token_url = client_id, key, runtime.settings.token_url

    def assertion(self, *, header: dict[str, Any] | None = None,
                  key: ec.EllipticCurvePrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.client_id, "sub": self.client_id,
                                "aud": self.token_url, "iat": now, "exp": now + 120,
                                "jti": os.urandom(12).hex()}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not DROP}
        head = {"alg": "ES256", "typ": "JWT", **(header or {})}
        head = {k: v for k, v in head.items() if v is not DROP}
        return forge(head, body, es256(key or self.key))


@pytest.fixture
def holder(runtime: Runtime) -> KeyHolder:
    key = ec.generate_private_key(ec.SECP256R1())
    client, secret = clients.create_client(
        runtime, org="belastingdienst", name="keyed", roles=["requester"],
        public_jwk=public_jwk("k1", key.public_key()))
    assert secret is None
    return KeyHolder(runtime, client.id, key)


def assertion_form(assertion: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, **extra}


def test_token_for_a_client_assertion(app: TestClient, holder: KeyHolder) -> None:
    answer = app.post("/oauth/token", data=assertion_form(holder.assertion(header={"kid": "k1"})))
    assert answer.status_code == 200, answer.text
    seen = app.get("/probe/any", headers=bearer(answer.json()["access_token"])).json()
    assert (seen["client_id"], seen["org"]) == (holder.client_id, "belastingdienst")
    with_id = app.post("/oauth/token", data=assertion_form(
        holder.assertion(), client_id=holder.client_id))
    assert with_id.status_code == 200


def _bad_assertions(holder: KeyHolder, now: int) -> dict[str, dict[str, Any]]:
    other = ec.generate_private_key(ec.SECP256R1())
    x_coordinate = public_jwk("k", holder.key.public_key())["x"].encode()
    return {
        "expired": {"assertion": holder.assertion(iat=now - 400, exp=now - 60)},
        "exp-too-far": {"assertion": holder.assertion(exp=now + 400)},
        "exp-string": {"assertion": holder.assertion(exp=str(now + 60))},
        "no-exp": {"assertion": holder.assertion(exp=DROP)},
        "no-jti": {"assertion": holder.assertion(jti=DROP)},
        "jti-not-string": {"assertion": holder.assertion(jti=7)},
        "sub-differs": {"assertion": holder.assertion(sub="cl_" + "c" * 24)},
        "iss-other-client": {"assertion": holder.assertion(iss="cl_" + "c" * 24)},
        "typ-access-token": {"assertion": holder.assertion(header={"typ": "at+jwt"})},
        "other-key": {"assertion": holder.assertion(key=other)},
        "alg-none": {"assertion": holder.assertion(header={"alg": "none"})},
        "hs256-with-public-x": {"assertion": forge(
            {"alg": "HS256", "typ": "JWT"},
            {"iss": holder.client_id, "sub": holder.client_id, "aud": holder.token_url,
             "exp": now + 60, "jti": "h"}, hs256(x_coordinate))},
        "jwk-header": {"assertion": holder.assertion(
            header={"jwk": public_jwk("e", other.public_key())}, key=other)},
        "future-iat": {"assertion": holder.assertion(iat=now + 120, exp=now + 200)},
        "client-id-differs": {"assertion": holder.assertion(), "client_id": "cl_" + "d" * 24},
        "wrong-assertion-type": {"assertion": holder.assertion(),
                                 "client_assertion_type": "urn:example:saml"},
    }


def test_bad_assertions_are_invalid_client(app: TestClient, holder: KeyHolder) -> None:
    for name, case in _bad_assertions(holder, int(time.time())).items():
        form = assertion_form(case.pop("assertion"), **case)
        answer = app.post("/oauth/token", data=form)
        assert answer.status_code == 401, name
        assert_invalid_client(answer, assertion=True)
    assert app.post("/oauth/token", data=assertion_form(holder.assertion())).status_code == 200


def test_keyed_client_has_no_secret_and_secret_client_no_key(
    app: TestClient, holder: KeyHolder, credentials: Credentials
) -> None:
    assert_invalid_client(app.post("/oauth/token", data=secret_form(holder.client_id, "x")))
    client_id, _secret = credentials("politie", ["requester"])
    foreign = KeyHolder.assertion(holder, iss=client_id, sub=client_id)
    assert_invalid_client(app.post("/oauth/token", data=assertion_form(foreign)), assertion=True)


def test_assertion_of_a_revoked_client_is_refused(
    app: TestClient, runtime: Runtime, holder: KeyHolder
) -> None:
    assert app.post("/oauth/token", data=assertion_form(holder.assertion())).status_code == 200
    clients.revoke_client(runtime, holder.client_id)
    assert_invalid_client(app.post("/oauth/token", data=assertion_form(holder.assertion())),
                          assertion=True)


# --- JWKS ------------------------------------------------------------------------------------

def test_jwks_verifies_issued_tokens(
    app: TestClient, runtime: Runtime, credentials: Credentials
) -> None:
    answer = app.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    keys = answer.json()["keys"]
    assert [set(k) for k in keys] == [{"kty", "crv", "x", "y", "kid", "use", "alg"}]
    token = login(app, *credentials("politie", ["requester"]))
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in keys if k["kid"] == kid]
    claims = jwt.decode(token, key, algorithms=["ES256"], audience=runtime.settings.audience,
                        issuer=runtime.settings.issuer)
    assert claims["org"] == "politie"


# --- the caller: bearer header, roles, acting user -------------------------------------------

def test_authorization_header_must_be_one_bearer_token(
    app: TestClient, credentials: Credentials
) -> None:
    token = login(app, *credentials("politie", ["requester"]))
    for form in ("Token {t}", "Bearer", "Bearer ", "Basic {t}", "Bearer {t} extra", "{t}",
                 "Bearer {t}x", "Bearer\t{t}"):
        refused = app.get("/probe/any", headers={"Authorization": form.format(t=token)})
        assert refused.status_code == 401, form
        assert refused.headers["www-authenticate"] == "Bearer"
    assert app.get("/probe/any", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_two_authorization_headers_are_refused(app: TestClient, credentials: Credentials) -> None:
    token = login(app, *credentials("politie", ["requester"]))
    twice = app.get("/probe/any", headers=[("Authorization", f"Bearer {token}"),
                                           ("Authorization", f"Bearer {token}")])
    assert twice.status_code == 401
    assert app.get("/probe/any", headers=bearer(token)).status_code == 200


def test_role_checks(app: TestClient, credentials: Credentials) -> None:
    requester = login(app, *credentials("politie", ["requester"]))
    contributor = login(app, *credentials("politie", ["contributor"]))
    assert app.get("/probe/requester", headers=bearer(requester)).status_code == 200
    refused = app.get("/probe/requester", headers=bearer(contributor))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert app.get("/probe/acting-contributor",
                   headers=bearer(contributor, **{"X-Acting-User": "emp-1"})).status_code == 200
    # Role before acting user: a requester without the header learns it lacks the role.
    assert app.get("/probe/acting-contributor", headers=bearer(requester)).status_code == 403


def test_system_client_must_name_the_acting_user(
    app: TestClient, credentials: Credentials
) -> None:
    token = login(app, *credentials("politie", ["contributor"]))
    missing = app.get("/probe/acting-contributor", headers=bearer(token))
    assert missing.status_code == 400
    assert missing.headers["content-type"] == "application/problem+json"
    named = app.get("/probe/acting-contributor",
                    headers=bearer(token, **{"X-Acting-User": "j.jansen@politie.nl"}))
    assert named.status_code == 200
    assert named.json()["acting_user"] == "j.jansen@politie.nl"
    # Routes that do not ask for an acting user take the request without one.
    assert app.get("/probe/any", headers=bearer(token)).json()["acting_user"] is None


def test_malformed_acting_user_is_400(app: TestClient, credentials: Credentials) -> None:
    token = login(app, *credentials("politie", ["contributor"]))
    for value in ("a" * 65, "emp 1", "emp/1", "emp;1", "emp,1", "<script>", "emp\t1", ""):
        for route in ("/probe/acting-contributor", "/probe/any"):
            answer = app.get(route, headers=bearer(token, **{"X-Acting-User": value}))
            assert answer.status_code == 400, (value, route)
            assert value not in answer.text or not value
    assert app.get("/probe/acting-contributor",
                   headers=bearer(token, **{"X-Acting-User": "a" * 64})).status_code == 200


def test_acting_user_sent_twice_is_400(app: TestClient, credentials: Credentials) -> None:
    token = login(app, *credentials("politie", ["contributor"]))
    answer = app.get("/probe/acting-contributor", headers=[
        ("Authorization", f"Bearer {token}"), ("X-Acting-User", "a"), ("X-Acting-User", "b")])
    assert answer.status_code == 400


def test_personal_client_acts_as_itself(app: TestClient, credentials: Credentials) -> None:
    client_id, secret = credentials("riec", ["contributor"], kind="personal")
    token = login(app, client_id, secret)
    itself = app.get("/probe/acting-contributor", headers=bearer(token))
    assert itself.status_code == 200
    assert itself.json()["acting_user"] == client_id
    assert itself.json()["kind"] == "personal"
    named_itself = app.get("/probe/acting-contributor",
                           headers=bearer(token, **{"X-Acting-User": client_id}))
    assert named_itself.json()["acting_user"] == client_id
    for route in ("/probe/acting-contributor", "/probe/any"):
        # Its acts would be recorded as another person's: refused on every route.
        named = app.get(route, headers=bearer(token, **{"X-Acting-User": "p1"}))
        assert named.status_code == 403
        assert named.json()["code"] == "forbidden"
        assert named.json()["detail"] == ("A personal client acts as itself: leave out "
                                          "X-Acting-User.")


def test_require_names_known_roles_only() -> None:
    with pytest.raises(ValueError, match="roles"):
        require("superuser")
    with pytest.raises(ValueError, match="roles"):
        require_acting()


@pytest.mark.parametrize("roles", [["admin", "requester"], ["admin", "contributor"],
                                   ["privacy_officer", "requester"]])
def test_separated_duties_cannot_share_a_client(runtime: Runtime, roles: list[str]) -> None:
    """Admins cannot read signals or disclosures; privacy officers cannot request them."""
    with pytest.raises(ValidationFailed) as refused:
        clients.create_client(runtime, org="riec", name="x", roles=roles)
    assert refused.value.errors[0].loc == ("body", "roles")
    client, _secret = clients.create_client(runtime, org="riec", name="x", roles=roles[:1])
    assert clients.role_set(client.roles) == {roles[0]}
