"""Clients: registration and revocation (audited), and authentication at the token endpoint.

A client is one organisation's credential with roles. It authenticates with a
secret (kept only as a scrypt hash) or with a private_key_jwt assertion
(RFC 7523) signed by the EC P-256 key registered for it. Revocation takes
effect on the very next request, because every request looks the client up
by primary key (`client_status`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets as _random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel
from sqlalchemy import Connection, Dialect, Engine, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from broker.audit.drafts import draft
from broker.auth import secrets, tokens
from broker.auth.actors import Actor
from broker.clock import rfc3339, utcnow
from broker.db import read_rows, write_transaction
from broker.errors import (
    FieldProblem,
    InvalidClient,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from broker.models import assertion_jti as JTIS
from broker.models import client as CLIENTS
from broker.schemas.text import has_control_characters

if TYPE_CHECKING:
    from broker.runtime import Runtime

ROLES: Final = frozenset({"contributor", "requester", "privacy_officer", "admin"})
KINDS: Final = ("system", "personal")
# Separation of duties (docs/api.md): admins cannot read signals or disclosures and
# privacy officers cannot request disclosures, so no client holds both sides.
INCOMPATIBLE_ROLES: Final = (
    frozenset({"admin", "contributor"}),
    frozenset({"admin", "requester"}),
    frozenset({"privacy_officer", "requester"}),
)
CLIENT_ID_PATTERN: Final = r"^cl_[a-z2-7]{24}$"
ORG_PATTERN: Final = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
_ORG = re.compile(ORG_PATTERN)
_B64URL = re.compile(r"^[A-Za-z0-9_-]{43}$")
_JWK_KEYS: Final = frozenset({"kty", "crv", "x", "y", "kid", "use", "alg", "key_ops"})
_PRUNE_EVERY_SECONDS: Final = 60.0


class Client(BaseModel):
    """A credential of one organisation, with roles: a row of `client`."""

    id: str
    org: str
    name: str
    kind: str  # system | personal
    roles: str  # comma-separated, sorted
    secret_hash: str | None = None
    public_jwk: str | None = None  # JSON text of the client's public key
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """What a request needs to know about its client, read fresh on every request."""

    id: str
    org: str
    roles: frozenset[str]
    kind: str
    revoked: bool


def new_client_id() -> str:
    """`cl_` and 24 base32 characters (120 random bits)."""
    return "cl_" + base64.b32encode(_random.token_bytes(15)).decode("ascii").lower()


def is_client_id(value: str) -> bool:
    return bool(_CLIENT_ID.match(value))


def role_set(roles: str) -> frozenset[str]:
    """The roles stored on a client row (comma-separated)."""
    return frozenset(role for role in roles.split(",") if role)


# --- registration ----------------------------------------------------------------------------

def _b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "="), "big")


def parse_public_jwk(jwk: Mapping[str, Any]) -> tuple[ec.EllipticCurvePublicKey, str]:
    """An EC P-256 public JWK as a key object and its canonical stored text; ValueError if not.

    A private key (`d`), another curve or type, or a point not on the curve is refused.
    """
    if not set(jwk) <= _JWK_KEYS:
        raise ValueError("only kty, crv, x, y, kid, use, alg, key_ops are allowed (no private key)")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("the key must be an EC P-256 key (kty EC, crv P-256)")
    if jwk.get("alg", "ES256") != "ES256" or jwk.get("use", "sig") != "sig":
        raise ValueError("the key must be for ES256 signatures")
    x, y = jwk.get("x"), jwk.get("y")
    if not (isinstance(x, str) and isinstance(y, str) and _B64URL.match(x) and _B64URL.match(y)):
        raise ValueError("x and y must be 32-byte base64url coordinates")
    try:
        key = ec.EllipticCurvePublicNumbers(
            _b64url_int(x), _b64url_int(y), ec.SECP256R1()
        ).public_key()
    except (ValueError, binascii.Error) as exc:
        raise ValueError("the point is not on the P-256 curve") from exc
    canonical = json.dumps({"crv": "P-256", "kty": "EC", "x": x, "y": y}, sort_keys=True)
    return key, canonical


def _problem(field: str, msg: str) -> ValidationFailed:
    return ValidationFailed("The client is not valid.",
                            errors=[FieldProblem(("body", field), msg)])


def _check_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    if not chosen or not chosen <= ROLES:
        raise _problem("roles", "Roles must be one or more of: " + ", ".join(sorted(ROLES)) + ".")
    for pair in INCOMPATIBLE_ROLES:
        if pair <= chosen:
            raise _problem("roles", "Roles " + " and ".join(sorted(pair)) +
                           " may not be held by one client.")
    return chosen


def _check_org(runtime: Runtime, org: str) -> None:
    if not _ORG.match(org) or org not in runtime.policy.pack.organisations:
        raise _problem("org", "Not an organisation of the live policy pack.")


def create_client(
    runtime: Runtime,
    *,
    org: str,
    name: str,
    kind: str = "system",
    roles: Iterable[str],
    public_jwk: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    request_id: str | None = None,
) -> tuple[Client, str | None]:
    """Register a client (audited `client_created`); the secret is returned once, if no key."""
    chosen = _check_roles(roles)
    _check_org(runtime, org)
    if kind not in KINDS:
        raise _problem("kind", "Kind must be system or personal.")
    if not name.strip() or len(name) > 200:
        raise _problem("name", "Name must be 1 to 200 characters.")
    if has_control_characters(name, newline_allowed=False):
        raise _problem("name", "Name must not contain control characters or line breaks.")
    jwk_text = None
    if public_jwk is not None:
        try:
            jwk_text = parse_public_jwk(public_jwk)[1]
        except ValueError as exc:
            raise _problem("public_jwk", str(exc)) from None
    secret = None if jwk_text else secrets.new_secret()
    client = Client(
        id=new_client_id(), org=org, name=name, kind=kind, roles=",".join(sorted(chosen)),
        secret_hash=secrets.hash_secret(secret) if secret else None, public_jwk=jwk_text,
        created_at=utcnow(), revoked_at=None,
    )
    row = client.model_dump()

    def store(conn: Connection) -> None:
        conn.execute(insert(CLIENTS).values(**row))

    draft = _draft("client_created", actor, request_id, runtime, {
        "client_id": client.id, "org": org, "kind": kind, "roles": sorted(chosen),
        "authentication": "private_key_jwt" if jwk_text else "client_secret",
    })
    runtime.audit.record(draft, work=store)
    return client, secret


def revoke_client(
    runtime: Runtime, client_id: str, *, actor: Actor | None = None,
    request_id: str | None = None,
) -> Client:
    """Revoke a client (audited `client_revoked`); NotFound if unknown or already revoked."""
    if not is_client_id(client_id):
        raise NotFound("No such active client.")
    moment = utcnow()

    def mark(conn: Connection) -> None:
        done = conn.execute(
            update(CLIENTS)
            .where(CLIENTS.c.id == client_id, CLIENTS.c.revoked_at.is_(None))
            .values(revoked_at=moment)
        )
        if done.rowcount != 1:
            raise NotFound("No such active client.")

    draft = _draft("client_revoked", actor, request_id, runtime, {"client_id": client_id})
    runtime.audit.record(draft, work=mark)
    client = load_client(runtime.engine, client_id)
    if client is None:  # cannot happen: the row was just updated in a committed transaction
        raise NotFound("No such active client.")
    return client


def _draft(
    action: str, actor: Actor | None, request_id: str | None, runtime: Runtime,
    objects: dict[str, Any],
) -> dict[str, Any]:
    return draft(action, actor, pack=runtime.policy.pack, request_id=request_id,
                 objects=objects)


# --- reading ---------------------------------------------------------------------------------

def load_client(engine: Engine, client_id: str) -> Client | None:
    """A client row by id, revoked or not."""
    if not is_client_id(client_id):
        return None
    try:
        with engine.connect() as conn:
            row = conn.execute(select(CLIENTS).where(CLIENTS.c.id == client_id)).mappings().first()
    except SQLAlchemyError as exc:
        raise ServiceUnavailable("The client store is not reachable.") from exc
    return Client.model_validate(dict(row)) if row else None


def list_clients(
    engine: Engine, *, org: str | None = None, after: str | None = None, limit: int = 100
) -> list[Client]:
    """Clients ordered by id, from just after `after`; optionally of one organisation."""
    query = select(CLIENTS).order_by(CLIENTS.c.id).limit(limit)
    if org is not None:
        query = query.where(CLIENTS.c.org == org)
    if after is not None:
        query = query.where(CLIENTS.c.id > after)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [Client.model_validate(dict(row)) for row in rows]


_STATUS = select(CLIENTS.c.org, CLIENTS.c.roles, CLIENTS.c.kind, CLIENTS.c.revoked_at).where(
    CLIENTS.c.id == bindparam("client_id")
)


_status_sql_by_dialect: dict[tuple[str, str], tuple[str, bool]] = {}


def _status_sql(dialect: Dialect) -> tuple[str, bool]:
    """The status query compiled once per dialect and parameter style."""
    key = (dialect.name, dialect.paramstyle)
    found = _status_sql_by_dialect.get(key)
    if found is None:
        compiled = _STATUS.compile(dialect=dialect)
        found = _status_sql_by_dialect[key] = (str(compiled), bool(compiled.positional))
    return found


def client_status(engine: Engine, client_id: str) -> ClientStatus | None:
    """One primary-key read per request: revocation is seen on the next call (ASVS 8.3.2).

    This runs on every authenticated request, so it goes straight to the driver
    (`broker.db.read_rows`): one statement, no SQLAlchemy transaction events, on
    SQLite on the thread's kept connection (one round trip less on PostgreSQL).
    """
    sql, positional = _status_sql(engine.dialect)
    params: Any = (client_id,) if positional else {"client_id": client_id}
    rows = read_rows(engine, sql, params, "client store")
    if not rows:
        return None
    org, roles, kind, revoked = rows[0]
    return ClientStatus(client_id, org, role_set(roles), kind, revoked is not None)


# --- authentication --------------------------------------------------------------------------

def _active(runtime: Runtime, client: Client | None) -> Client:
    if client is None:
        raise InvalidClient("unknown client")
    if client.revoked_at is not None:
        raise InvalidClient("client revoked")
    if client.org not in runtime.policy.pack.organisations:
        raise InvalidClient("organisation not in the live policy pack")
    return client


def authenticate_secret(runtime: Runtime, client_id: str, secret: str) -> Client:
    """The client if `secret` is its secret; InvalidClient otherwise (same cost either way)."""
    client = load_client(runtime.engine, client_id)
    stored = client.secret_hash if client is not None else None
    if not secrets.verify_secret(secret, stored or secrets.dummy_hash()) or stored is None:
        raise InvalidClient("unknown client or wrong secret")
    return _active(runtime, client)


def authenticate_assertion(
    runtime: Runtime, assertion: str, *, client_id: str | None = None, now: int | None = None
) -> Client:
    """The client that signed this RFC 7523 assertion, consuming its `jti` (single use)."""
    issuer = tokens.assertion_issuer(assertion)
    if client_id is not None and client_id != issuer:
        raise InvalidClient("client_id does not match the assertion")
    client = _active(runtime, load_client(runtime.engine, issuer))
    if not client.public_jwk:
        raise InvalidClient("client has no registered key")
    try:
        public_key = parse_public_jwk(json.loads(client.public_jwk))[0]
    except ValueError:
        raise InvalidClient("client key unusable") from None
    settings = runtime.settings
    claims = tokens.verify_client_assertion(
        assertion, tokens.client_key(public_key), client_id=client.id,
        token_url=settings.token_url, leeway=settings.token_leeway_seconds, now=now,
    )
    consume_jti(runtime.engine, claims.client_id, claims.jti,
                datetime.fromtimestamp(claims.expires_at + settings.token_leeway_seconds, UTC))
    return client


_prune_lock = threading.Lock()
_last_prune = 0.0


def consume_jti(engine: Engine, client_id: str, jti: str, expires_at: datetime) -> None:
    """Record an assertion id as used; a second use (even concurrent) is InvalidClient.

    The primary key (client_id, jti) makes the database the referee, so two
    processes racing with the same assertion cannot both win.
    """
    try:
        with write_transaction(engine) as conn:
            _maybe_prune(conn)
            conn.execute(insert(JTIS).values(
                client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        raise InvalidClient("assertion jti replayed") from None
    except SQLAlchemyError as exc:
        raise ServiceUnavailable("The client store is not reachable.") from exc


def _maybe_prune(conn: Connection) -> None:
    """Now and then, drop used ids whose assertions have expired (they cannot come back)."""
    global _last_prune
    now = time.monotonic()
    with _prune_lock:
        if now - _last_prune < _PRUNE_EVERY_SECONDS:
            return
        _last_prune = now
    cutoff = utcnow() - timedelta(seconds=1)
    conn.execute(delete(JTIS).where(JTIS.c.expires_at < cutoff))


def describe(client: Client) -> dict[str, Any]:
    """A client as the API and the command line show it: never its secret hash."""
    return {
        "id": client.id,
        "org": client.org,
        "name": client.name,
        "kind": client.kind,
        "roles": sorted(role_set(client.roles)),
        "authentication": "private_key_jwt" if client.public_jwk else "client_secret",
        "created_at": rfc3339(client.created_at),
        "revoked_at": rfc3339(client.revoked_at) if client.revoked_at else None,
    }
