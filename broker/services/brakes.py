"""Brakes and sign-outs that every process of a deployment shares, in the database.

- The brute-force brake of the token endpoint and the officer's sign-in (ASVS 6.3.1):
  after `limit` failed attempts within a minute under one key (a client id, an address),
  every further attempt under that key gets 429 until the oldest failure leaves the
  window. Failures are rows of `brake_failure`, counted by every process alike, so
  alternating nodes gives a guesser nothing. A key is stored as a keyed hash (an address
  is personal data), under the blind-index key, which never rotates.
- Officer sign-outs: a signed-out session is a `session_end` row until it would have lapsed
  anyway, refused at every node.

Both are off the hot path: one indexed read per token request or officer page, one write
per failure or sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable
from typing import Final

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from broker.db import write_transaction
from broker.keys import KeyRing
from broker.models import brake_failure as FAILURES
from broker.models import session_end as ENDED

WINDOW_SECONDS: Final = 60.0
SIGN_IN_FAILURES_PER_MINUTE: Final = 10
"""Failed officer sign-ins per client id or address within a minute before the brake."""


class FailureBrake:
    """Failures per key over the last minute, shared through the database."""

    def __init__(self, engine: Engine, keys: Callable[[], KeyRing], limit: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._engine = engine
        self._keys = keys
        self._clock = clock

    def _hashed(self, keys: Iterable[str]) -> list[str]:
        secret = self._keys().active("blind_index").material
        return [hmac.new(secret, b"brake\x1f" + key.encode(), hashlib.sha256).hexdigest()
                for key in keys]

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any key is over its limit, else None."""
        now = self._clock()
        hashed = self._hashed(keys)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(FAILURES.c.key, FAILURES.c.at)
                .where(FAILURES.c.key.in_(hashed), FAILURES.c.at > now - WINDOW_SECONDS)
                .order_by(FAILURES.c.at)
            ).all()
        by_key: dict[str, list[float]] = {}
        for key, at in rows:
            by_key.setdefault(key, []).append(float(at))
        wait = 0.0
        for stamps in by_key.values():
            if len(stamps) >= self.limit:
                wait = max(wait, stamps[len(stamps) - self.limit] + WINDOW_SECONDS - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def fail(self, keys: Iterable[str]) -> None:
        """Count one failed attempt under each key (and forget failures past the window)."""
        now = self._clock()
        hashed = self._hashed(keys)
        with write_transaction(self._engine) as conn:
            conn.execute(delete(FAILURES).where(FAILURES.c.at <= now - WINDOW_SECONDS))
            conn.execute(FAILURES.insert(), [{"key": key, "at": now} for key in hashed])


def end_session(engine: Engine, session_id: str, expires_at: int) -> None:
    """Remember a signed-out session until it would have lapsed anyway."""
    now = int(time.time())
    with write_transaction(engine) as conn:
        conn.execute(delete(ENDED).where(ENDED.c.expires_at <= now))
        try:
            with conn.begin_nested():
                conn.execute(ENDED.insert().values(session_id=session_id,
                                                   expires_at=expires_at))
        except IntegrityError:
            pass  # signed out twice (two tabs, two nodes): ended all the same


def session_ended(engine: Engine, session_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(
            select(ENDED.c.session_id).where(ENDED.c.session_id == session_id)
        ).first() is not None
