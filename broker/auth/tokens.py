"""Every JWT the broker issues or accepts goes through this one module (python-jose, strictly).

python-jose's defaults accept bad tokens (any `alg` in the header, a PEM as
HMAC secret, a JWKS where `kid` is ignored, missing or string-typed claims),
so it is used only as docs/security.md (rows 1-16) requires:

1. the header is read and checked here before the library sees the token:
   three segments, exactly `alg=ES256`, only `alg`/`typ`/`kid`, the right `typ`;
2. the key is picked here by `kid` from an in-memory dict and handed over as
   one constructed key object;
3. `algorithms=["ES256"]`, required claims, `audience`, `issuer` and a
   bounded leeway are always passed;
4. what the library skips is checked here: integer times, `iat` not in the
   future, bounded lifetime;
5. any failure at all while decoding becomes `Unauthorized` (401).

Nothing JWE is ever called, and no token material is logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from broker.errors import InvalidClient, Unauthorized
from broker.keys import KeyRing
from broker.settings import Settings

ALGORITHM: Final = "ES256"
ACCESS_TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 - a media type (RFC 9068), not a secret
# RFC 7523 assertions may say `JWT` or nothing; an access token is never an assertion.
ASSERTION_TYPES: Final = (None, "JWT")
ALLOWED_HEADER_KEYS: Final = frozenset({"alg", "typ", "kid"})
MAX_ACCESS_LIFETIME: Final = 900
MAX_ASSERTION_SECONDS: Final = 300
# Our tokens are ~700 characters; anything much longer is refused unread.
MAX_TOKEN_CHARS: Final = 4096
MAX_JTI_CHARS: Final = 200
MAX_SUBJECT_CHARS: Final = 40

# Three base64url segments: a five-part JWE (or anything else) never reaches the library.
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_KID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REQUIRED_ACCESS: Final = ("exp", "iat", "aud", "iss", "sub", "jti")
_REQUIRED_ASSERTION: Final = ("exp", "aud", "iss", "sub", "jti")
# Everything python-jose and its backends are known to raise on malformed input.
_DECODE_ERRORS: Final = (
    JOSEError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
    binascii.Error, UnicodeError, RecursionError,
)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    client_id: str
    org: str
    roles: frozenset[str]
    token_id: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class AssertionClaims:
    """A verified client assertion: the single-use `jti` still has to be consumed."""

    client_id: str
    jti: str
    expires_at: int


# --- key objects -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _RingKeys:
    ring: KeyRing
    verify: Mapping[str, Key]
    sign: Key
    sign_kid: str


_ring_lock = threading.Lock()
_ring_cache: _RingKeys | None = None


def _ring_keys(keys: KeyRing) -> _RingKeys:
    """python-jose key objects of a key ring, built once per ring (never a PEM per request)."""
    cached = _ring_cache
    if cached is not None and cached.ring is keys:
        return cached
    return _build_ring_keys(keys)


def _build_ring_keys(keys: KeyRing) -> _RingKeys:
    global _ring_cache
    with _ring_lock:
        cached = _ring_cache
        if cached is not None and cached.ring is keys:
            return cached
        active = keys.active_signing
        built = _RingKeys(
            ring=keys,
            verify={kid: jwk.construct(pub, ALGORITHM) for kid, pub in
                    keys.verification_keys().items()},
            sign=jwk.construct(active.private_key, ALGORITHM),
            sign_kid=active.kid,
        )
        _ring_cache = built
        return built


def client_key(public_key: ec.EllipticCurvePublicKey) -> Key:
    """A client's registered public key as the one key object an assertion is checked with."""
    return jwk.construct(public_key, ALGORITHM)


# --- reading without trusting ----------------------------------------------------------------

def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    raw = base64.urlsafe_b64decode(padded.encode("ascii"))
    return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _checked_header(
    token: object, types: tuple[str | None, ...], *, kid_required: bool
) -> dict[str, Any]:
    """The token's header if it passes rule 1 above (docs/security.md); ValueError otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _COMPACT_JWS.match(token):
        raise ValueError("not a compact JWS")
    header = _b64_json(token.split(".", 1)[0])
    if not isinstance(header, dict) or not set(header) <= ALLOWED_HEADER_KEYS:
        raise ValueError("header parameters not allowed")
    if header.get("alg") != ALGORITHM:
        raise ValueError("algorithm not allowed")
    if header.get("typ") not in types:
        raise ValueError("token type not allowed")
    kid = header.get("kid")
    if (kid is None and kid_required) or (kid is not None and not (
            isinstance(kid, str) and _KID.match(kid))):
        raise ValueError("kid not allowed")
    return header


def _int_time(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if type(value) is not int:  # bool, float and "123" are refused (python-jose takes them)
        raise ValueError(f"{name} must be an integer")
    return value


def _check_times(claims: Mapping[str, Any], now: int, leeway: int, max_lifetime: int) -> None:
    exp, iat, nbf = (_int_time(claims, name) for name in ("exp", "iat", "nbf"))
    if exp is None:
        raise ValueError("exp missing")
    if now >= exp + leeway:
        raise ValueError("expired")
    if nbf is not None and nbf > now + leeway:
        raise ValueError("not yet valid")
    if iat is not None:
        if iat > now + leeway:
            raise ValueError("issued in the future")
        if not 0 < exp - iat <= max_lifetime:
            raise ValueError("lifetime too long")


def _text(claims: Mapping[str, Any], name: str, max_chars: int) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise ValueError(f"{name} must be a short string")
    return value


def _decode(
    token: str, key: Key, *, audience: str, issuer: str, subject: str | None,
    required: tuple[str, ...], leeway: int,
) -> dict[str, Any]:
    options: dict[str, Any] = {f"require_{name}": True for name in required}
    options.update(leeway=leeway, verify_at_hash=False)
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=[ALGORITHM], audience=audience, issuer=issuer, subject=subject,
        options=options,
    )
    # python-jose also accepts a list holding the audience; we only issue and accept one string.
    if claims.get("aud") != audience or claims.get("iss") != issuer:
        raise ValueError("audience or issuer")
    return claims


# --- access tokens ---------------------------------------------------------------------------

def issue_access_token(
    keys: KeyRing, settings: Settings, *, client_id: str, org: str, roles: frozenset[str],
    now: int | None = None,
) -> IssuedToken:
    """Sign an RFC 9068 access token for a client with the active signing key."""
    ring = _ring_keys(keys)
    issued_at = int(time.time()) if now is None else now
    ttl = min(settings.access_token_ttl_seconds, MAX_ACCESS_LIFETIME)
    token_id = "at_" + secrets.token_urlsafe(16)
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": client_id,
        "org": org,
        "roles": sorted(roles),
        "iat": issued_at,
        "exp": issued_at + ttl,
        "jti": token_id,
    }
    token: str = jwt.encode(
        claims, ring.sign, algorithm=ALGORITHM,
        headers={"typ": ACCESS_TOKEN_TYPE, "kid": ring.sign_kid},
    )
    return IssuedToken(token=token, token_id=token_id, expires_in=ttl)


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that passed every check, and what its reuse must check again."""

    ring: _RingKeys
    claims: AccessClaims
    times: dict[str, Any]


_VERIFIED_MAX: Final = 10_000
_verified: dict[tuple[str, str, str], _Verified] = {}
_verified_lock = threading.Lock()


def verify_access_token(
    token: str, keys: KeyRing, settings: Settings, *, now: int | None = None
) -> AccessClaims:
    """The claims of a valid access token; `Unauthorized` for anything else, never a 500.

    A partner reuses one token for many requests, so a token that passed every check is
    remembered (bounded, by its exact text, audience and issuer) and its signature is not
    checked again while the key ring that verified it is the live one: a rotation or a
    reload starts afresh. Its times are checked on every use, so it expires as before;
    revocation is checked on every request by the caller (the client's status).
    """
    moment = int(time.time()) if now is None else now
    remembered = _verified.get((token, settings.audience, settings.issuer))
    if remembered is not None and remembered.ring is _ring_keys(keys):
        try:
            _check_times(remembered.times, moment, min(settings.token_leeway_seconds, 30),
                         MAX_ACCESS_LIFETIME)
        except ValueError:
            raise Unauthorized("The access token is not valid.") from None
        return remembered.claims
    try:
        claims, times = _verify_access(token, keys, settings, moment)
    except _DECODE_ERRORS:
        raise Unauthorized("The access token is not valid.") from None
    with _verified_lock:
        while len(_verified) >= _VERIFIED_MAX:
            del _verified[next(iter(_verified))]  # the oldest first
        _verified[(token, settings.audience, settings.issuer)] = _Verified(
            _ring_keys(keys), claims, times)
    return claims


def _verify_access(
    token: str, keys: KeyRing, settings: Settings, now: int
) -> tuple[AccessClaims, dict[str, Any]]:
    header = _checked_header(token, (ACCESS_TOKEN_TYPE,), kid_required=True)
    key = _ring_keys(keys).verify.get(header["kid"])  # in-memory only: no file, URL or DB
    if key is None:
        raise ValueError("unknown kid")
    leeway = min(settings.token_leeway_seconds, 30)
    claims = _decode(
        token, key, audience=settings.audience, issuer=settings.issuer, subject=None,
        required=_REQUIRED_ACCESS, leeway=leeway,
    )
    _check_times(claims, now, leeway, MAX_ACCESS_LIFETIME)
    roles = claims.get("roles")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise ValueError("roles must be a list of strings")
    verified = AccessClaims(
        client_id=_text(claims, "sub", MAX_SUBJECT_CHARS),
        org=_text(claims, "org", 64),
        roles=frozenset(roles),
        token_id=_text(claims, "jti", MAX_JTI_CHARS),
        issued_at=claims["iat"],
        expires_at=claims["exp"],
    )
    return verified, {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}


# --- client assertions (RFC 7523) ------------------------------------------------------------

def assertion_issuer(assertion: str) -> str:
    """The client id an assertion claims to come from, read before any trust (to find its key).

    Only the header is checked here; the signature and every claim are checked
    by `verify_client_assertion` with that client's registered key.
    """
    try:
        _checked_header(assertion, ASSERTION_TYPES, kid_required=False)
        claims = _b64_json(assertion.split(".")[1])
        if not isinstance(claims, dict):
            raise ValueError("claims must be an object")
        return _text(claims, "iss", MAX_SUBJECT_CHARS)
    except _DECODE_ERRORS:
        raise InvalidClient("The client assertion is not valid.") from None


def verify_client_assertion(
    assertion: str, key: Key, *, client_id: str, token_url: str, leeway: int,
    now: int | None = None,
) -> AssertionClaims:
    """Check an assertion signed by the client's key: iss = sub = client, aud = token URL.

    The caller must still consume the returned `jti` exactly once.
    """
    moment = int(time.time()) if now is None else now
    try:
        _checked_header(assertion, ASSERTION_TYPES, kid_required=False)
        bounded = min(leeway, 30)
        claims = _decode(
            assertion, key, audience=token_url, issuer=client_id, subject=client_id,
            required=_REQUIRED_ASSERTION, leeway=bounded,
        )
        if claims.get("sub") != client_id:
            raise ValueError("sub must be the client id")
        _check_times(claims, moment, bounded, MAX_ASSERTION_SECONDS)
        expires_at: int = claims["exp"]
        if expires_at > moment + MAX_ASSERTION_SECONDS + bounded:
            raise ValueError("assertion valid for too long")
        return AssertionClaims(client_id, _text(claims, "jti", MAX_JTI_CHARS), expires_at)
    except _DECODE_ERRORS:
        raise InvalidClient("The client assertion is not valid.") from None
