"""Signal intake, lookup and erasure (service layer).

A signal is validated against the live pack's category, sealed under its
own data key, made findable through blind-index tokens, and recorded in the
audit log in the same transaction. Erasure destroys the data key. A read or
erasure of another organisation's signal (or of one that does not exist) is
404 and an audited denial (docs/security.md row 17).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select, update

from broker import cursors
from broker.audit.drafts import draft
from broker.auth.actors import Actor
from broker.clock import as_utc, rfc3339, utcnow
from broker.core import randomness
from broker.core.policy.load import Pack
from broker.errors import Conflict, NotFound
from broker.keys import KeyRing
from broker.models import legal_hold
from broker.models import signal as SIGNAL
from broker.models import signal_index as INDEX
from broker.runtime import Runtime
from broker.schemas import SignalIn
from broker.sealing import Unreadable, blind_token, seal, unseal
from broker.services import idempotency
from broker.services.idempotency import IdempotentRequest, Replay
from broker.services.intake import Prepared, prepare_all


def _under_hold() -> Conflict:
    return Conflict("This signal is under a legal hold: it cannot be erased until the hold "
                    "is lifted.")

CURSOR_PREFIX = ""
"""The signal list's cursors carry no prefix (the first list; cursors given out stay good)."""
_SIGNAL_ID = re.compile(r"sig_[a-z2-7]{24}")


def new_signal_id() -> str:
    return "sig_" + randomness.token_b32(15)


def denied(
    runtime: Runtime,
    actor: Actor,
    org: str,
    signal_id: str,
    *,
    request: str,
    request_id: str | None,
) -> NotFound:
    """The 404 for a signal id that is not one of `org`'s live signals, after auditing the
    denial when the id is not `org`'s at all.

    Whether the signal belongs to another organisation or never existed, the entry and the
    answer are the same, so neither tells the caller (who may read its own entries) which.
    The organisation's own erased signals are 404 without an entry: they are nobody
    else's. An id not shaped like a signal id names no signal and is not logged: it is
    caller input that could carry anything."""
    if _SIGNAL_ID.fullmatch(signal_id) and not _ever_owned(runtime, org, signal_id):
        runtime.audit.record(draft("refusal", actor, outcome="refused", reason="unknown_signal",
                                   request_id=request_id,
                                   objects={"request": request, "signal_id": signal_id}))
    return NotFound("No such signal.")


def _ever_owned(runtime: Runtime, org: str, signal_id: str) -> bool:
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(SIGNAL.c.id).where(SIGNAL.c.id == signal_id, SIGNAL.c.source == org)
        ).first()
    return row is not None


@dataclass(frozen=True)
class Stored:
    """What intake writes for one signal: its row, its index rows and its answer."""

    row: dict[str, Any]
    index_rows: list[dict[str, Any]]
    answer: dict[str, Any]
    subject_token: bytes | None


def _seal_one(keys: KeyRing, pack: Pack, org: str, created_by: str, item: Prepared) -> Stored:
    signal_id = new_signal_id()
    now = utcnow()
    retention_until = now + timedelta(days=pack.retention_days(item.payload["category"]))
    sealed = seal(keys.active("master"), json.dumps(item.payload).encode(), signal_id.encode())
    index_key = keys.active("blind_index")
    tokens = {kind: blind_token(index_key, kind, value) for kind, value in item.index.items()}
    row = {
        "id": signal_id,
        "source": org,
        "category": item.payload["category"],
        "legal_basis": item.payload["legal_basis"],
        "subject_type": item.payload["subject"]["type"],
        "observed_at": item.observed_at,
        "received_at": now,
        "retention_until": retention_until,
        "key_version": sealed.key_version,
        "wrapped_key": sealed.wrapped_key,
        "ciphertext": sealed.ciphertext,
        "created_by": created_by[:40],
    }
    answer = _answer(signal_id, org, item.payload, now, retention_until)
    index_rows = [
        {"token": t, "signal_id": signal_id, "category": row["category"], "source": org,
         "legal_basis": row["legal_basis"], "observed_at": row["observed_at"]}
        for t in set(tokens.values())
    ]
    return Stored(row, index_rows, answer, tokens.get(item.subject_kind))


def _answer(
    signal_id: str, org: str, payload: dict[str, Any], received: datetime, retention: datetime
) -> dict[str, Any]:
    return {
        "id": signal_id,
        "source": org,
        **payload,
        "received_at": rfc3339(received),
        "retention_until": rfc3339(retention),
    }


def create_signals(
    runtime: Runtime,
    actor: Actor,
    org: str,
    bodies: Sequence[SignalIn],
    *,
    request_id: str | None,
    client_id: str,
    key: str | None = None,
    batch: bool = True,
) -> Replay:
    """Validate, seal, index and store signals with one audit entry; all or nothing.

    Under an `Idempotency-Key` the first answer is stored in the same transaction, and a
    retry (also one racing the first) gets that answer and stores nothing."""
    route = "signals.batch" if batch else "signals.create"
    once = idempotency.begin(client_id, org, key, route,
                             [b.model_dump(mode="json") for b in bodies])
    if once is not None:
        earlier = idempotency.replay(runtime, once)
        if earlier is not None:
            return earlier
    try:
        answers = _store_signals(runtime, actor, org, bodies, request_id=request_id,
                                 once=once, batch=batch)
    except Exception:
        # A concurrent retry with the same key may have won the race: answer as it did.
        if once is not None:
            earlier = idempotency.replay(runtime, once)
            if earlier is not None:
                return earlier
        raise
    return Replay(201, _wrap(answers, batch), replayed=False)


def _wrap(answers: list[dict[str, Any]], batch: bool) -> Any:
    return {"signals": answers} if batch else answers[0]


def _store_signals(
    runtime: Runtime,
    actor: Actor,
    org: str,
    bodies: Sequence[SignalIn],
    *,
    request_id: str | None,
    once: IdempotentRequest | None,
    batch: bool,
) -> list[dict[str, Any]]:
    live = runtime.policy
    prepared = prepare_all(live.pack, org, bodies, batch=batch)
    stored = [_seal_one(runtime.keys, live.pack, org, actor.label, p) for p in prepared]
    answers = [s.answer for s in stored]
    remember = None if once is None else idempotency.remember(
        runtime, once, 201, _wrap(answers, batch), signal_ids=[a["id"] for a in answers])

    def work(conn: Connection) -> None:
        conn.execute(SIGNAL.insert(), [s.row for s in stored])
        conn.execute(INDEX.insert(), [r for s in stored for r in s.index_rows])
        if remember:
            remember(conn)

    items = [
        {
            "signal_id": s.row["id"],
            "category": s.row["category"],
            "source": org,
            "legal_basis": s.row["legal_basis"],
            "subjects": [s.subject_token] if s.subject_token else [],
        }
        for s in stored
    ]
    entry = draft("signal_created", actor, pack=live.pack, request_id=request_id, items=items)
    subjects = [s.subject_token for s in stored if s.subject_token]
    runtime.audit.record(entry, work=work, subjects=subjects)
    return answers


def _readable(keys: KeyRing, row: Any) -> dict[str, Any]:
    try:
        payload = json.loads(
            unseal(keys, row.key_version, row.wrapped_key, row.ciphertext, row.id.encode())
        )
    except Unreadable:
        raise NotFound("No such signal.") from None
    return _answer(
        row.id, row.source, payload, as_utc(row.received_at), as_utc(row.retention_until)
    )


def get_signal(
    runtime: Runtime, actor: Actor, org: str, signal_id: str, *, request_id: str | None
) -> dict[str, Any]:
    """One of the caller's own organisation's signals, in full; 404 (audited) for any other."""
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(SIGNAL).where(
                SIGNAL.c.id == signal_id, SIGNAL.c.source == org, SIGNAL.c.erased_at.is_(None)
            )
        ).first()
    if row is None:
        raise denied(runtime, actor, org, signal_id, request="signal_read", request_id=request_id)
    return _readable(runtime.keys, row)


def list_signals(
    runtime: Runtime,
    org: str,
    *,
    category: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's organisation's live signals, newest first, paged by an opaque cursor."""
    query = select(SIGNAL).where(SIGNAL.c.source == org, SIGNAL.c.erased_at.is_(None))
    if category:
        query = query.where(SIGNAL.c.category == category)
    if since:
        query = query.where(SIGNAL.c.received_at >= as_utc(since))
    if until:
        query = query.where(SIGNAL.c.received_at < as_utc(until))
    page, next_cursor = cursors.newest_first(
        runtime.engine, query, SIGNAL.c.received_at, SIGNAL.c.id, prefix=CURSOR_PREFIX,
        limit=limit, cursor=cursor)
    return [_readable(runtime.keys, row) for row in page], next_cursor


def is_held(conn: Connection, signal_id: str) -> bool:
    """Is the signal under a legal hold (see `broker.services.legal_holds`)?"""
    return conn.execute(
        select(legal_hold.c.signal_id).where(legal_hold.c.signal_id == signal_id)
    ).first() is not None


def erase_signal(
    runtime: Runtime,
    actor: Actor,
    org: str,
    signal_id: str,
    *,
    request_id: str | None,
    action: str = "signal_erased",
    reason: str | None = "retracted",
) -> None:
    """Destroy a signal's data key and index tokens (crypto-shredding), audited; 404
    (audited) unless it is one of `org`'s live signals; 409 (audited) while it is under a
    legal hold."""
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(SIGNAL.c.id, SIGNAL.c.category, SIGNAL.c.legal_basis).where(
                SIGNAL.c.id == signal_id, SIGNAL.c.source == org, SIGNAL.c.erased_at.is_(None)
            )
        ).first()
    if row is None:
        raise denied(runtime, actor, org, signal_id, request="signal_erase", request_id=request_id)
    with runtime.engine.connect() as conn:
        held = is_held(conn, signal_id)
    if held:
        item = {"signal_id": signal_id, "category": row.category, "source": org,
                "legal_basis": row.legal_basis}
        runtime.audit.record(draft("refusal", actor, outcome="refused", reason="legal_hold",
                                   request_id=request_id, items=[item],
                                   objects={"request": action}))
        raise _under_hold()

    def work(conn: Connection) -> None:
        if is_held(conn, signal_id):  # placed since the check above
            raise _under_hold()
        changed = conn.execute(
            update(SIGNAL)
            .where(SIGNAL.c.id == signal_id, SIGNAL.c.erased_at.is_(None))
            .values(wrapped_key=None, ciphertext=None, erased_at=utcnow())
        ).rowcount
        if changed != 1:
            raise NotFound("No such signal.")
        conn.execute(delete(INDEX).where(INDEX.c.signal_id == signal_id))
        idempotency.forget_signals(conn, [signal_id])

    item = {"signal_id": signal_id, "category": row.category, "source": org,
            "legal_basis": row.legal_basis}
    runtime.audit.record(draft(action, actor, reason=reason, request_id=request_id,
                               items=[item]), work=work)
