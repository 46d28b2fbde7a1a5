"""Sessions and CSRF tokens of the privacy officer's web pages: signed, expiring, stateless.

A session is a cookie value naming the officer's client, a random session id, when it
began and when it lapses, and the version of the key that signed it:
``s1.<client>.<sid>.<issued>.<expires>.<key version>.<mac>``. The MAC is HMAC-SHA256
under a key used for nothing else, derived from the master key as
HMAC(master, "sluis officer-session v1"), so no other token of the broker verifies as a
session. A session names the master key version that signed it: a key rotation leaves
running sessions alone (they lapse within minutes anyway).

The CSRF token of a form is HMAC(session key, "csrf" || sid): a synchronizer token bound
to the session without a server-side table. Before sign-in, a short "pre-session" cookie
carries a random nonce that the sign-in form's token is bound to (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

from broker.keys import KeyRing

IDLE_SECONDS: Final = 15 * 60
"""A session lapses after this long without a page view."""
ABSOLUTE_SECONDS: Final = 8 * 3600
"""No session lives longer than a working day, however active."""
PRE_SESSION_SECONDS: Final = 30 * 60
_DERIVATION: Final = b"sluis officer-session v1"
_FIELD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NUMBER = re.compile(r"^[0-9]{1,12}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def session_key(keys: KeyRing, version: int) -> bytes:
    """The officer-session key under master key `version`; KeyError if that version is gone."""
    master = keys.version("master", version)
    return hmac.new(master.material, _DERIVATION, hashlib.sha256).digest()


def _mac(key: bytes, *parts: str) -> str:
    return _b64(hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest())


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in officer: whose client, which session, since and until when."""

    client_id: str
    session_id: str
    issued_at: int
    expires_at: int
    key_version: int


def _encode(keys: KeyRing, session: Session) -> str:
    fields = (session.client_id, session.session_id, str(session.issued_at),
              str(session.expires_at), str(session.key_version))
    mac = _mac(session_key(keys, session.key_version), "s1", *fields)
    return ".".join(("s1", *fields, mac))


def begin(keys: KeyRing, client_id: str, *, now: int) -> tuple[Session, str]:
    """A new session for `client_id` and its cookie value."""
    if not _FIELD.match(client_id):
        raise ValueError("not a client id")
    session = Session(client_id, secrets.token_urlsafe(16), now, now + IDLE_SECONDS,
                      keys.active("master").version)
    return session, _encode(keys, session)


def renew(keys: KeyRing, session: Session, *, now: int) -> str:
    """The cookie value of `session` extended by the idle time, within the absolute limit."""
    expires = min(now + IDLE_SECONDS, session.issued_at + ABSOLUTE_SECONDS)
    return _encode(keys, Session(session.client_id, session.session_id, session.issued_at,
                                 expires, session.key_version))


def read(keys: KeyRing, value: str | None, *, now: int) -> Session | None:
    """The session a cookie value carries if it is ours, unaltered and not lapsed; else None."""
    if not value or len(value) > 400:
        return None
    parts = value.split(".")
    if len(parts) != 7 or parts[0] != "s1":
        return None
    _, client_id, sid, issued, expires, version, mac = parts
    if not (_FIELD.match(client_id) and _FIELD.match(sid)
            and all(_NUMBER.match(n) for n in (issued, expires, version))):
        return None
    try:
        key = session_key(keys, int(version))
    except KeyError:
        return None
    if not hmac.compare_digest(_mac(key, "s1", *parts[1:6]), mac):
        return None
    session = Session(client_id, sid, int(issued), int(expires), int(version))
    if not session.issued_at <= now + 30 or now >= session.expires_at:
        return None
    if session.expires_at > session.issued_at + ABSOLUTE_SECONDS:
        return None
    return session


def csrf_token(keys: KeyRing, session: Session) -> str:
    """The token every form of this session must carry back."""
    return _mac(session_key(keys, session.key_version), "csrf", session.session_id)


def csrf_ok(keys: KeyRing, session: Session, token: str | None) -> bool:
    """Whether a submitted form token belongs to this session (constant time)."""
    return bool(token) and hmac.compare_digest(csrf_token(keys, session), token or "")


# --- Before sign-in ---


def pre_session(keys: KeyRing, *, now: int) -> tuple[str, str]:
    """(nonce, cookie value) of a fresh pre-session for the sign-in form."""
    nonce = secrets.token_urlsafe(16)
    version = keys.active("master").version
    fields = (nonce, str(now + PRE_SESSION_SECONDS), str(version))
    mac = _mac(session_key(keys, version), "p1", *fields)
    return nonce, ".".join(("p1", *fields, mac))


def read_pre_session(keys: KeyRing, value: str | None, *, now: int) -> str | None:
    """The nonce of a valid, unexpired pre-session cookie, else None."""
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != "p1":
        return None
    _, nonce, expires, version, mac = parts
    if not (_FIELD.match(nonce) and _NUMBER.match(expires) and _NUMBER.match(version)):
        return None
    try:
        key = session_key(keys, int(version))
    except KeyError:
        return None
    if not hmac.compare_digest(_mac(key, "p1", nonce, expires, version), mac):
        return None
    return nonce if now < int(expires) else None


def sign_in_token(keys: KeyRing, nonce: str) -> str:
    """The sign-in form's CSRF token, bound to the pre-session nonce."""
    return _mac(session_key(keys, keys.active("master").version), "sign-in", nonce)


def sign_in_token_ok(keys: KeyRing, nonce: str | None, token: str | None) -> bool:
    if not nonce or not token:
        return False
    return hmac.compare_digest(sign_in_token(keys, nonce), token)
