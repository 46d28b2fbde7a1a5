"""`Idempotency-Key` on creating POSTs: a retry returns the first answer and creates nothing.

The first answer is stored sealed (it may hold personal data) in the same
transaction as the request's writes, so an acknowledged answer and its
record can never part. The same key with another body is a 409. The body's
fingerprint is kept only as a keyed hash: a body naming a BSN would otherwise
leave an unkeyed hash of it in the database, which is brute-forced in minutes.

Audited acts (disclosures, hits, area summaries, re-identification requests)
answer with their entry's `audit_seq`, which exists only once the appender has
numbered the entry, after the request's `work` ran. So the record holds the
answer without it, plus a random `ref` that is also written into the entry's
`objects` (as `idempotency_ref`) and a lower bound of its seq; a replay finds
the entry again from there. Record and entry are written in one transaction:
no replay without its entry, and no second entry for a retry.

A stored answer lives `idempotency_ttl_hours` (a day by default): after that a retry is
a new request, and `broker retention run` deletes it. A stored answer may hold released
signal values, sealed under the master key rather than the signal's own: so each record
names the signals it mentions (`idempotency_signal`), and erasing a signal deletes those
records in the erasure's transaction. A replay that meets an erased signal all the same
is refused (409) rather than answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, delete, select
from sqlalchemy.exc import IntegrityError

from broker.audit.tables import audit_entry, tree_size
from broker.clock import as_utc, utcnow
from broker.core import randomness
from broker.core.entry import parse_json
from broker.db import pairs_in
from broker.errors import BadRequest, Conflict
from broker.keys import KeyRing
from broker.models import idempotency_record as RECORD
from broker.models import idempotency_signal
from broker.models import signal as SIGNAL
from broker.runtime import Runtime
from broker.sealing import Unreadable, seal, unseal

_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
MARK: Final = "idempotency_ref"
"""The key, in an audit entry's `objects`, of the ref that ties it to its first answer."""
_SCAN_PAGE: Final = 500
_SCAN_PAGES: Final = 200
"""How far past its lower bound a replay looks for the entry (an appender batch is far
smaller; the bound is read just before the entry is handed to the appender)."""


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: Any
    replayed: bool = True
    """Whether this is a stored first answer given again (False: the answer just made)."""


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A creating request under an `Idempotency-Key`, as the caller sent it."""

    client_id: str
    org: str
    key: str
    route: str
    digest: bytes
    """SHA-256 of route and body; kept in memory only, stored keyed (`fingerprint`)."""
    ref: str
    """Ties an audited act's entry to its stored first answer (`MARK` in the entry)."""

    @property
    def aad(self) -> bytes:
        return f"idem|{self.client_id}|{self.key}".encode()

    def fingerprint(self, keys: KeyRing) -> str:
        """The stored request hash: HMAC under the (never rotated) blind-index key."""
        material = keys.active("blind_index").material
        return hmac.new(material, b"idempotency|" + self.digest, hashlib.sha256).hexdigest()


def digest(route: str, body: Any) -> bytes:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{route}\n{data}".encode()).digest()


def begin(
    client_id: str, org: str, key: str | None, route: str, body: Any
) -> IdempotentRequest | None:
    """The idempotency context of a request, or None when it carries no key."""
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1 to 200 visible ASCII characters.")
    return IdempotentRequest(client_id, org, key, route, digest(route, body),
                             "idr_" + randomness.token_hex(12))


def replay(runtime: Runtime, request: IdempotentRequest) -> Replay | None:
    """The first answer to this key, None if there is none or it expired; 409 if the body
    differs, if a signal it mentions was erased, or if an audited first answer's entry
    cannot be found (the log was tampered). An audited answer names its entry's seq."""
    earlier = _stored(runtime.engine, runtime.keys, request, lifetime(runtime))
    if earlier is None:
        return None
    stored = earlier.body
    if not (isinstance(stored, dict) and "answer" in stored):
        return earlier  # stored before answers were kept wrapped
    if "ref" not in stored:
        return Replay(earlier.status_code, stored["answer"])
    try:
        answer, after, ref = dict(stored["answer"]), int(stored["after"]), str(stored["ref"])
    except (TypeError, KeyError, ValueError):
        raise Conflict("This Idempotency-Key was used with another request.") from None
    seq = marked_seq(runtime.engine, request.org, after, ref)
    if seq is None:
        raise Conflict("The audit entry of the first answer to this Idempotency-Key is "
                       "missing; run `broker audit verify`.")
    return Replay(earlier.status_code, {**answer, "audit_seq": seq})


def _stored(
    engine: Engine, keys: KeyRing, request: IdempotentRequest, lifetime: timedelta
) -> Replay | None:
    """The stored record of this key as it was sealed, None if there is none or it is
    older than `lifetime`; 409 if the body differs or a signal it mentions was erased."""
    with engine.connect() as conn:
        row = conn.execute(
            select(RECORD).where(
                RECORD.c.client_id == request.client_id, RECORD.c.key == request.key
            )
        ).first()
        if row is None or as_utc(row.created_at) < utcnow() - lifetime:
            return None
        erased = conn.execute(
            select(idempotency_signal.c.signal_id)
            .outerjoin(SIGNAL, SIGNAL.c.id == idempotency_signal.c.signal_id)
            .where(idempotency_signal.c.client_id == request.client_id,
                   idempotency_signal.c.key == request.key,
                   (SIGNAL.c.id.is_(None)) | SIGNAL.c.erased_at.is_not(None))
            .limit(1)
        ).first()
    if erased is not None:
        raise Conflict("The first answer to this Idempotency-Key is no longer available.")
    same = hmac.compare_digest(row.request_hash, request.fingerprint(keys))
    if row.route != request.route or not same:
        raise Conflict("This Idempotency-Key was used with another request.")
    try:
        body = json.loads(
            unseal(keys, row.key_version, row.wrapped_key, row.ciphertext, request.aad)
        )
    except Unreadable:
        raise Conflict("The first answer to this Idempotency-Key is no longer available.") from None
    return Replay(row.status_code, body)


def remember(
    runtime: Runtime,
    request: IdempotentRequest,
    status_code: int,
    body: Any,
    *,
    signal_ids: Sequence[str] = (),
) -> Callable[[Connection], None]:
    """A write that stores the first answer, and the signals it mentions; run it inside
    the act's own transaction (its entry's `work`)."""
    return _store(runtime, request, status_code, {"answer": body}, signal_ids)


def _store(
    runtime: Runtime,
    request: IdempotentRequest,
    status_code: int,
    record: dict[str, Any],
    signal_ids: Sequence[str],
) -> Callable[[Connection], None]:
    """The write of one stored answer; an expired record of the same key gives way to it."""
    keys, kept_for = runtime.keys, lifetime(runtime)
    sealed = seal(keys.active("master"), json.dumps(record).encode(), request.aad)
    fingerprint = request.fingerprint(keys)
    mentioned = sorted(set(signal_ids))

    def work(conn: Connection) -> None:
        stale = conn.execute(
            select(RECORD.c.id).where(
                RECORD.c.client_id == request.client_id, RECORD.c.key == request.key,
                RECORD.c.created_at < utcnow() - kept_for,
            )
        ).first()
        if stale is not None:
            _delete_records(conn, [(request.client_id, request.key)])
        if mentioned:
            conn.execute(idempotency_signal.insert(), [
                {"client_id": request.client_id, "key": request.key, "signal_id": signal_id}
                for signal_id in mentioned
            ])
        conn.execute(
            RECORD.insert().values(
                client_id=request.client_id,
                key=request.key,
                route=request.route,
                request_hash=fingerprint,
                status_code=status_code,
                key_version=sealed.key_version,
                wrapped_key=sealed.wrapped_key,
                ciphertext=sealed.ciphertext,
                created_at=utcnow(),
            )
        )

    return work


def _delete_records(conn: Connection, keys: Sequence[tuple[str, str]]) -> int:
    """Delete records by (client id, key), with their signal rows; how many went."""
    if not keys:
        return 0
    gone = 0
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        conn.execute(delete(idempotency_signal).where(
            pairs_in(idempotency_signal.c.client_id, idempotency_signal.c.key, chunk)))
        gone += conn.execute(delete(RECORD).where(
            pairs_in(RECORD.c.client_id, RECORD.c.key, chunk))).rowcount
    return gone


def forget_signals(conn: Connection, signal_ids: Sequence[str]) -> int:
    """Delete every stored answer that mentions one of these signals (run in the
    erasure's transaction); how many went."""
    keys: set[tuple[str, str]] = set()
    for start in range(0, len(signal_ids), 500):
        rows = conn.execute(
            select(idempotency_signal.c.client_id, idempotency_signal.c.key).where(
                idempotency_signal.c.signal_id.in_(list(signal_ids[start : start + 500])))
        ).all()
        keys.update((row.client_id, row.key) for row in rows)
    return _delete_records(conn, sorted(keys))


def forget_expired(conn: Connection, lifetime: timedelta, now: datetime) -> int:
    """Delete the stored answers older than `lifetime`; how many went."""
    rows = conn.execute(
        select(RECORD.c.client_id, RECORD.c.key).where(RECORD.c.created_at < now - lifetime)
    ).all()
    return _delete_records(conn, [(row.client_id, row.key) for row in rows])


def lifetime(runtime: Runtime) -> timedelta:
    """How long a stored first answer is replayed."""
    return timedelta(hours=runtime.settings.idempotency_ttl_hours)


def marked_seq(engine: Engine, org: str, after: int, ref: str) -> int | None:
    """The seq of the entry of `org` at or after `after` whose objects carry `ref`."""
    needle, start = ref.encode(), after
    with engine.connect() as conn:
        for _ in range(_SCAN_PAGES):
            rows = conn.execute(
                select(audit_entry.c.seq, audit_entry.c.bytes)
                .where(audit_entry.c.org == org, audit_entry.c.seq >= start)
                .order_by(audit_entry.c.seq).limit(_SCAN_PAGE)
            ).all()
            for seq, data in rows:
                if needle in bytes(data) and _marked(bytes(data), ref):
                    return int(seq)
            if len(rows) < _SCAN_PAGE:
                return None
            start = int(rows[-1][0]) + 1
    return None


def _marked(data: bytes, ref: str) -> bool:
    try:
        return bool(parse_json(data)["objects"].get(MARK) == ref)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def record(
    runtime: Runtime,
    request: IdempotentRequest,
    draft: Mapping[str, Any],
    answer: Mapping[str, Any],
    *,
    status_code: int,
    work: Callable[[Connection], object] | None = None,
    rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
    subjects: Sequence[bytes] = (),
) -> dict[str, Any]:
    """Record the act's entry, run its `work`, insert its `rows` and store its first answer
    (`answer` without `audit_seq`), all in the entry's transaction; return the answer with
    its `audit_seq`. Blocks: call it from a thread.

    Everything runs as the unit's `work`, in a savepoint: a concurrent retry with the same
    key that won the race makes the record's insert fail with nothing of this request
    written (and no other request of the batch harmed, as a failing plain row would), and
    its answer is then the one given.
    """
    with runtime.engine.connect() as conn:
        after = tree_size(conn)  # the entry's seq can only be higher
    mentioned = [str(item["signal_id"]) for item in draft.get("items") or ()]
    store = _store(runtime, request, status_code,
                   {"answer": dict(answer), "after": after, "ref": request.ref}, mentioned)

    def both(conn: Connection) -> None:
        if work is not None:
            work(conn)
        for table, values in rows:
            if values:
                conn.execute(table.insert(), list(values))
        store(conn)

    marked = {**draft, "objects": {**(draft.get("objects") or {}), MARK: request.ref}}
    try:
        recorded = runtime.audit.record(marked, work=both, subjects=subjects)
    except IntegrityError:
        earlier = replay(runtime, request)
        if earlier is None:
            raise
        return dict(earlier.body)
    return {**answer, "audit_seq": recorded.seq}
