"""`Idempotency-Key` on creating POSTs: a retry returns the first answer and creates nothing.

The first answer is stored sealed (it may hold personal data) in the same
transaction as the request's writes, so an acknowledged answer and its
record can never part. The same key with another body is a 409.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from broker.clock import utcnow
from broker.errors import BadRequest, Conflict
from broker.keys import KeyRing
from broker.models import IdempotencyRecord
from broker.sealing import Unreadable, seal, unseal

RECORD = IdempotencyRecord.__table__  # type: ignore[attr-defined]
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: Any


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    client_id: str
    key: str
    route: str
    fingerprint: str

    @property
    def aad(self) -> bytes:
        return f"idem|{self.client_id}|{self.key}".encode()


def fingerprint(route: str, body: Any) -> str:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{route}\n{data}".encode()).hexdigest()


def begin(client_id: str, key: str | None, route: str, body: Any) -> IdempotentRequest | None:
    """The idempotency context of a request, or None when it carries no key."""
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1 to 200 visible ASCII characters.")
    return IdempotentRequest(client_id, key, route, fingerprint(route, body))


def replay(engine: Engine, keys: KeyRing, request: IdempotentRequest) -> Replay | None:
    """The stored first answer of this key, None if there is none; 409 if the body differs."""
    with engine.connect() as conn:
        row = conn.execute(
            select(RECORD).where(
                RECORD.c.client_id == request.client_id, RECORD.c.key == request.key
            )
        ).first()
    if row is None:
        return None
    if row.route != request.route or row.request_hash != request.fingerprint:
        raise Conflict("This Idempotency-Key was used with another request.")
    try:
        body = json.loads(
            unseal(keys, row.key_version, row.wrapped_key, row.ciphertext, request.aad)
        )
    except Unreadable:
        raise Conflict("The first answer to this Idempotency-Key is no longer available.") from None
    return Replay(row.status_code, body)


def remember(
    keys: KeyRing, request: IdempotentRequest, status_code: int, body: Any
) -> Callable[[Connection], None]:
    """A write that stores the first answer; run it inside the request's transaction."""
    sealed = seal(keys.active("master"), json.dumps(body).encode(), request.aad)

    def work(conn: Connection) -> None:
        conn.execute(
            RECORD.insert().values(
                client_id=request.client_id,
                key=request.key,
                route=request.route,
                request_hash=request.fingerprint,
                status_code=status_code,
                key_version=sealed.key_version,
                wrapped_key=sealed.wrapped_key,
                ciphertext=sealed.ciphertext,
                created_at=utcnow(),
            )
        )

    return work
