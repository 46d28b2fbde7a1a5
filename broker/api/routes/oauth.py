"""The token endpoint (RFC 6749 client credentials, RFC 7523 assertions), the JWKS, and the
authorization server's metadata (RFC 8414), by which an OAuth library finds them.

Errors here follow RFC 6749 section 5.2 (`{"error", "error_description"}`),
not problem details, because OAuth client libraries expect that form. Every
refused attempt is logged (never the secret or assertion) and counted; too
many failures per client id or address within a minute give 429.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from typing import Annotated, Any, Final
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth import clients, tokens
from broker.auth.clients import ROLES, Client
from broker.errors import InvalidClient, RateLimited
from broker.runtime import Runtime
from broker.settings import Settings

router = APIRouter(route_class=StrictJSONRoute, tags=["authentication"])

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FormField = Annotated[str | None, Form()]
_log = logging.getLogger("broker.auth")
_counter_lock = threading.Lock()


AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "private_key_jwt")
JWKS_PATH: Final = "/.well-known/jwks.json"
REFUSED: Final = "Client authentication failed."


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.description, self.reason = status, error, description, reason


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic client credentials, form-decoded as RFC 6749 section 2.3.1 asks."""
    values = request.headers.getlist("authorization")
    basic = [v for v in values if v[:6].lower() == "basic "]
    if not basic:
        return None
    if len(values) != 1:
        raise _OAuthError(400, "invalid_request", "Send one Authorization header.", "headers")
    try:
        decoded = base64.b64decode(basic[0][6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("malformed basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient("malformed basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


def _claimed_id(
    basic: tuple[str, str] | None, client_id: str | None, assertion: str | None
) -> str | None:
    claimed = basic[0] if basic else client_id
    if claimed is None and assertion:
        try:
            claimed = tokens.assertion_issuer(assertion)
        except InvalidClient:
            return None
    return claimed if claimed and clients.is_client_id(claimed) else None


def _authenticate(
    runtime: Runtime, basic: tuple[str, str] | None, client_id: str | None,
    client_secret: str | None, assertion_type: str | None, assertion: str | None,
) -> Client:
    methods = sum((basic is not None, client_secret is not None, assertion is not None))
    if methods > 1:
        raise _OAuthError(400, "invalid_request", "Use exactly one client authentication method.",
                          "several methods")
    if basic is not None:
        return clients.authenticate_secret(runtime, *basic)
    if client_secret is not None:
        if not client_id:
            raise InvalidClient("client_secret without client_id")
        return clients.authenticate_secret(runtime, client_id, client_secret)
    if assertion is not None:
        if assertion_type != ASSERTION_TYPE:
            raise InvalidClient("unsupported client_assertion_type")
        return clients.authenticate_assertion(runtime, assertion, client_id=client_id)
    raise InvalidClient("no client authentication")


def _granted_roles(client: Client, scope: str | None) -> frozenset[str]:
    held = clients.role_set(client.roles)
    if not scope:
        return held
    asked = frozenset(scope.split())
    if not asked <= held:
        raise _OAuthError(400, "invalid_scope", "The scope asks for roles the client lacks.",
                          "scope")
    return asked


def _oauth_error(error: _OAuthError, basic_used: bool) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401 and basic_used:
        headers["WWW-Authenticate"] = 'Basic realm="sluis"'
    return JSONResponse({"error": error.error, "error_description": error.description},
                        status_code=error.status, headers=headers)


def _refusal(settings: Settings, assertion: str | None) -> str:
    """What a refused client is told: never why, but for a client assertion the rules every
    assertion must meet, above all the audience it must name (the token URL, public in the
    metadata), which a client cannot guess when the broker's issuer is not its address.
    The same words for every refused assertion, so they say nothing about this one."""
    if assertion is None:
        return REFUSED
    return (f"{REFUSED} A client assertion must be signed with {tokens.ALGORITHM} by the "
            f"client's registered key, have aud {settings.token_url}, and expire within "
            f"{tokens.MAX_ASSERTION_SECONDS} seconds.")


def _log_refusal(claimed: str | None, remote: str, reason: str, request_id: str | None) -> None:
    _log.warning("token request refused", extra={
        "event": "token_refused", "client_id": claimed, "remote_addr": remote,
        "reason": reason, "request_id": request_id,
    })


@router.post("/oauth/token", responses={400: {}, 401: {}, 429: {}})
def issue_token(
    request: Request,
    runtime: RuntimeDep,
    request_id: RequestIdDep,
    grant_type: FormField = None,
    client_id: FormField = None,
    client_secret: FormField = None,
    client_assertion_type: FormField = None,
    client_assertion: FormField = None,
    scope: FormField = None,
) -> JSONResponse:
    """Client credentials grant: a short-lived ES256 access token (`Cache-Control: no-store`)."""
    remote = request.client.host if request.client else "unknown"
    counter = runtime.token_brake
    basic_used = False
    claimed = None
    try:
        if grant_type is None:
            raise _OAuthError(400, "invalid_request", "grant_type is required.", "no grant_type")
        if grant_type != "client_credentials":
            raise _OAuthError(400, "unsupported_grant_type",
                              "Only client_credentials is supported.", "grant_type")
        basic = _basic_credentials(request)
        basic_used = basic is not None
        claimed = _claimed_id(basic, client_id, client_assertion)
        keys = [f"addr:{remote}"] + ([f"client:{claimed}"] if claimed else [])
        wait = counter.retry_after(keys)
        if wait is not None:
            _log_refusal(claimed, remote, "rate limited", request_id)
            raise RateLimited(wait, "Too many failed attempts; try again later.")
        try:
            client = _authenticate(runtime, basic, client_id, client_secret,
                                   client_assertion_type, client_assertion)
        except InvalidClient as exc:
            counter.fail(keys)
            raise _OAuthError(401, "invalid_client", _refusal(runtime.settings,
                              client_assertion), exc.detail) from None
        roles = _granted_roles(client, scope)
    except InvalidClient as exc:  # malformed Basic credentials, before counting keys
        counter.fail([f"addr:{remote}"])
        _log_refusal(claimed, remote, exc.detail, request_id)
        return _oauth_error(_OAuthError(401, "invalid_client", REFUSED, exc.detail), basic_used)
    except _OAuthError as exc:
        _log_refusal(claimed, remote, exc.reason, request_id)
        return _oauth_error(exc, basic_used)
    issued = tokens.issue_access_token(
        runtime.keys, runtime.settings, client_id=client.id, org=client.org, roles=roles
    )
    _log.info("token issued", extra={
        "event": "token_issued", "client_id": client.id, "token_id": issued.token_id,
        "remote_addr": remote, "request_id": request_id,
    })
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(sorted(roles)),
    }
    return JSONResponse(body, headers=NO_STORE)


@router.get(JWKS_PATH)
def jwks(runtime: RuntimeDep) -> JSONResponse:
    """The public keys access tokens are signed with (RFC 7517); no token needed."""
    return JSONResponse(runtime.keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


def server_metadata(settings: Settings) -> dict[str, Any]:
    """RFC 8414 metadata: the issuer, the token endpoint, its client authentication methods
    and the JWKS, every URL built from `BROKER_ISSUER` (never from the request's Host).

    There is no authorization endpoint (only the client credentials grant), so
    `response_types_supported` is left out: RFC 8414 section 3.2 forbids an empty array,
    and the OAuth working group's reading is to omit it where no grant uses that endpoint.
    """
    base = settings.issuer.rstrip("/")
    return {
        "issuer": settings.issuer,
        "token_endpoint": settings.token_url,
        "jwks_uri": base + JWKS_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": [tokens.ALGORITHM],
        "scopes_supported": sorted(ROLES),
        "service_documentation": base + "/docs",
    }


@router.get("/.well-known/oauth-authorization-server")
def authorization_server(runtime: RuntimeDep) -> JSONResponse:
    """The authorization server's metadata (RFC 8414): token endpoint, client
    authentication methods, JWKS; no token needed."""
    return JSONResponse(server_metadata(runtime.settings),
                        headers={"Cache-Control": "public, max-age=300"})
