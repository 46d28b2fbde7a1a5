"""A partner's integrator with an off-the-shelf OAuth library (authlib) against a served
broker: discovery through the RFC 8414 metadata, then a token with each client
authentication method the metadata names (`client_secret_basic`, `client_secret_post`,
`private_key_jwt` with ES256), and a refused assertion that names the audience expected."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata, get_well_known_url
from jose import jwt
from joserfc.jwk import ECKey

from tests.e2e.conftest import ServedBroker, run_broker, served_broker_in

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
    """authlib's `private_key_jwt` with assertions that live two minutes (authlib's own
    default is an hour; the broker takes at most five minutes, docs/api.md)."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        assertion: str = private_key_jwt_sign(auth.client_secret, client_id=auth.client_id,
                                              token_endpoint=token_endpoint, alg=self.alg,
                                              expires_in=120)
        return assertion


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBroker]:
    """A seeded broker whose issuer is its loopback URL."""
    with served_broker_in(tmp_path_factory.mktemp("oauth-broker")) as served:
        yield served


@pytest.fixture(scope="module")
def metadata(broker: ServedBroker) -> AuthorizationServerMetadata:
    """What the integrator's code discovers from the issuer alone."""
    url = get_well_known_url(broker.url, external=True)
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    return AuthorizationServerMetadata(answer.json())


@pytest.fixture(scope="module")
def keyed_client(broker: ServedBroker, tmp_path_factory: pytest.TempPathFactory,
                 ) -> tuple[str, ECKey]:
    """A municipality client registered with an EC P-256 public key."""
    key = ECKey.generate_key("P-256")
    public = {name: key.as_dict(private=False)[name] for name in ("kty", "crv", "x", "y")}
    jwk_file = tmp_path_factory.mktemp("jwk") / "key.jwk"
    jwk_file.write_text(json.dumps(public))
    created = json.loads(run_broker(broker.env, "clients", "create", "--org", "gemeente",
                                    "--name", "Gemeente (sleutel)", "--roles", "requester",
                                    "--jwk", str(jwk_file), "--json").stdout)
    return str(created["client_id"]), key


def test_the_metadata_describes_the_token_endpoint(
    broker: ServedBroker, metadata: AuthorizationServerMetadata
) -> None:
    assert dict(metadata) == {
        "issuer": broker.url,
        "token_endpoint": broker.url + "/oauth/token",
        "jwks_uri": broker.url + "/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["admin", "contributor", "privacy_officer", "requester"],
        "service_documentation": broker.url + "/docs",
    }
    # authlib's own checks of every member, but response_types_supported: with no
    # authorization endpoint it is left out (RFC 8414 section 3.2 forbids an empty array).
    for key in metadata.REGISTRY_KEYS:
        if key != "response_types_supported":
            getattr(metadata, f"validate_{key}")()
    assert "response_types_supported" not in metadata
    assert "authorization_endpoint" not in metadata


def test_the_jwks_uri_holds_the_key_access_tokens_are_signed_with(
    broker: ServedBroker, metadata: AuthorizationServerMetadata
) -> None:
    client = broker.client("Gemeente")
    with OAuth2Client(client["client_id"], client["client_secret"],
                      token_endpoint_auth_method="client_secret_post") as oauth:
        token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    kids = {key["kid"] for key in httpx.get(metadata["jwks_uri"], timeout=10).json()["keys"]}
    assert jwt.get_unverified_header(token["access_token"])["kid"] in kids


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_token_with_a_client_secret(
    broker: ServedBroker, metadata: AuthorizationServerMetadata, method: str
) -> None:
    assert method in metadata["token_endpoint_auth_methods_supported"]
    client = broker.client("Gemeente")
    with OAuth2Client(client["client_id"], client["client_secret"],
                      token_endpoint_auth_method=method) as oauth:
        token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "contributor requester"
        purposes = oauth.get(broker.url + "/v1/purposes", timeout=10)
    assert purposes.status_code == 200
    assert "integrale-controle" in {p["id"] for p in purposes.json()["items"]}


def test_a_token_with_a_private_key_jwt(
    broker: ServedBroker, metadata: AuthorizationServerMetadata,
    keyed_client: tuple[str, ECKey],
) -> None:
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == ["ES256"]
    client_id, key = keyed_client
    with OAuth2Client(client_id, key, token_endpoint_auth_method="private_key_jwt") as oauth:
        oauth.register_client_auth_method(
            ShortLivedPrivateKeyJWT(metadata["token_endpoint"], alg="ES256"))
        token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["scope"] == "requester"
        assert oauth.get(broker.url + "/v1/purposes", timeout=10).status_code == 200


EXPECTED_REFUSAL = ("Client authentication failed. A client assertion must be signed with "
                    "ES256 by the client's registered key, have aud {token_url}, and expire "
                    "within 300 seconds.")


def _assertion(key: ECKey, client_id: str, audience: str) -> str:
    signed: str = private_key_jwt_sign(key, client_id=client_id, token_endpoint=audience,
                                       alg="ES256", expires_in=120)
    return signed


def _refused(broker: ServedBroker, form: dict[str, str]) -> dict[str, Any]:
    answer = httpx.post(broker.url + "/oauth/token", data=form, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def test_a_refused_assertion_names_the_audience_expected_and_nothing_else(
    broker: ServedBroker, keyed_client: tuple[str, ECKey],
) -> None:
    client_id, key = keyed_client
    token_url = broker.url + "/oauth/token"
    expected = {"error": "invalid_client",
                "error_description": EXPECTED_REFUSAL.format(token_url=token_url)}
    wrong_audience = _assertion(key, client_id, "https://sluis.example/oauth/token")
    refused = _refused(broker, {"grant_type": "client_credentials",
                                "client_assertion_type": ASSERTION_TYPE,
                                "client_assertion": wrong_audience})
    assert refused == expected
    # Whatever else is wrong (another key, an unknown client, an expired assertion), the
    # words are the same: they tell the rules, not which one this assertion broke.
    stranger = ECKey.generate_key("P-256")
    expired: str = private_key_jwt_sign(key, client_id=client_id, token_endpoint=token_url,
                                        alg="ES256", issued_at=int(time.time()) - 600,
                                        expires_in=120)
    for assertion in (_assertion(stranger, client_id, token_url),
                      _assertion(stranger, "cl_" + "a" * 24, token_url), expired):
        assert _refused(broker, {"grant_type": "client_credentials",
                                 "client_assertion_type": ASSERTION_TYPE,
                                 "client_assertion": assertion}) == expected
    # A client secret's refusal says nothing about assertions.
    assert _refused(broker, {"grant_type": "client_credentials", "client_id": client_id,
                             "client_secret": "wrong"}) == {
        "error": "invalid_client", "error_description": "Client authentication failed."}
    fine = _assertion(key, client_id, token_url)
    accepted = httpx.post(token_url, data={"grant_type": "client_credentials",
                                           "client_assertion_type": ASSERTION_TYPE,
                                           "client_assertion": fine}, timeout=10)
    assert accepted.status_code == 200


def test_the_metadata_is_built_from_the_issuer_not_the_host_header(
    broker: ServedBroker,
) -> None:
    answer = httpx.get(broker.url + "/.well-known/oauth-authorization-server",
                       headers={"Host": "attacker.example"}, timeout=10)
    assert answer.status_code == 200
    assert "attacker" not in answer.text
    assert answer.json()["token_endpoint"] == broker.url + "/oauth/token"
