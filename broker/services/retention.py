"""Retention: legal holds, and the retention run that shreds signals past their date.

A privacy officer keeps one of the organisation's signals from erasure with a legal hold.

While a court case or an investigation needs a signal, its organisation's privacy
officer places a hold naming the case. A held signal cannot be retracted (409, audited
as a refusal) and the retention run passes it by; lifting the hold returns it to the
ordinary rules, so a signal past its retention date is erased by the next run. Placing
and lifting are audited (`legal_hold_placed`, `legal_hold_lifted`). A hold concerns the
officer's own organisation's live signals only: any other id is the same audited 404 as
on the signal routes. An officer lists the organisation's holds (`listed`), newest
first, optionally for one case.

The retention run (`broker retention run`) shreds every live signal past its retention
date that no hold keeps, deletes expired stored `Idempotency-Key` answers and the request
journal's rows older than `BROKER_REPLAY_DAYS`, as one `retention_run` entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from broker import cursors
from broker.audit.drafts import draft
from broker.auth.actors import Actor
from broker.clock import as_utc, rfc3339, utcnow
from broker.errors import Conflict, NotFound
from broker.models import legal_hold
from broker.models import signal as SIGNAL
from broker.models import signal_index as INDEX
from broker.runtime import Runtime
from broker.services import idempotency, journal
from broker.services.signals import denied, is_held

CURSOR_PREFIX = "h1|"


@dataclass(frozen=True, slots=True)
class Hold:
    signal_id: str
    case_reference: str
    placed_by: str
    placed_at: datetime

    def as_answer(self) -> dict[str, Any]:
        return {"signal_id": self.signal_id, "case_reference": self.case_reference,
                "placed_by": self.placed_by, "placed_at": rfc3339(self.placed_at)}


@dataclass(frozen=True, slots=True)
class Officer:
    """Who acts: the officer's actor, client and organisation, and the request's id."""

    actor: Actor
    client_id: str
    org: str
    request_id: str | None


def _own_signal(runtime: Runtime, officer: Officer, signal_id: str, request: str) -> Any:
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(SIGNAL.c.id, SIGNAL.c.category, SIGNAL.c.legal_basis, SIGNAL.c.source).where(
                SIGNAL.c.id == signal_id, SIGNAL.c.source == officer.org,
                SIGNAL.c.erased_at.is_(None),
            )
        ).first()
    if row is None:
        raise denied(runtime, officer.actor, officer.org, signal_id, request=request,
                     request_id=officer.request_id)
    return row


def _draft(action: str, officer: Officer, row: Any, case_reference: str) -> dict[str, Any]:
    item = {"signal_id": row.id, "category": row.category, "source": row.source,
            "legal_basis": row.legal_basis}
    return draft(action, officer.actor, case_reference=case_reference,
                 request_id=officer.request_id, items=[item])


def place(runtime: Runtime, officer: Officer, signal_id: str, case_reference: str) -> Hold:
    """Hold one of the organisation's live signals for a case; 409 if it is held already."""
    row = _own_signal(runtime, officer, signal_id, "legal_hold_place")
    hold = Hold(signal_id, case_reference, officer.client_id, utcnow())

    def work(conn: Connection) -> None:
        if is_held(conn, signal_id):
            raise Conflict("This signal is already under a legal hold.")
        conn.execute(legal_hold.insert().values(
            signal_id=signal_id, org=row.source, case_reference=case_reference,
            placed_by=officer.client_id, placed_at=hold.placed_at))

    runtime.audit.record(_draft("legal_hold_placed", officer, row, case_reference), work=work)
    return hold


def current(runtime: Runtime, officer: Officer, signal_id: str) -> Hold:
    """The hold on one of the organisation's live signals; 404 if there is none."""
    _own_signal(runtime, officer, signal_id, "legal_hold_read")
    with runtime.engine.connect() as conn:
        found = conn.execute(
            select(legal_hold).where(legal_hold.c.signal_id == signal_id)
        ).first()
    if found is None:
        raise NotFound("This signal is not under a legal hold.")
    return Hold(found.signal_id, found.case_reference, found.placed_by, as_utc(found.placed_at))


def lift(runtime: Runtime, officer: Officer, signal_id: str) -> None:
    """Lift the hold on one of the organisation's signals; 404 if there is none."""
    row = _own_signal(runtime, officer, signal_id, "legal_hold_lift")
    with runtime.engine.connect() as conn:
        found = conn.execute(
            select(legal_hold.c.case_reference).where(legal_hold.c.signal_id == signal_id)
        ).first()
    if found is None:
        raise NotFound("This signal is not under a legal hold.")

    def work(conn: Connection) -> None:
        gone = conn.execute(delete(legal_hold).where(legal_hold.c.signal_id == signal_id))
        if gone.rowcount != 1:
            raise NotFound("This signal is not under a legal hold.")

    runtime.audit.record(_draft("legal_hold_lifted", officer, row, found.case_reference),
                         work=work)


def listed(
    runtime: Runtime, org: str, *, case_reference: str | None = None, limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The holds on the organisation's live signals, newest first (optionally of one
    case), in pages of `limit` after an opaque cursor; each with the signal's category."""
    query = (
        select(legal_hold, SIGNAL.c.category)
        .join(SIGNAL, SIGNAL.c.id == legal_hold.c.signal_id)
        .where(legal_hold.c.org == org, SIGNAL.c.erased_at.is_(None))
    )  # found through the organisation's own holds, not through all its signals
    if case_reference is not None:
        query = query.where(legal_hold.c.case_reference == case_reference)
    page, next_cursor = cursors.newest_first(
        runtime.engine, query, legal_hold.c.placed_at, legal_hold.c.signal_id,
        prefix=CURSOR_PREFIX, limit=limit, cursor=cursor)
    items = [
        {**Hold(r.signal_id, r.case_reference, r.placed_by, as_utc(r.placed_at)).as_answer(),
         "category": r.category}
        for r in page
    ]
    return items, next_cursor


# --- The retention run ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RetentionRun:
    erased: int
    """Signals shredded."""
    answers_deleted: int
    """Stored Idempotency-Key answers deleted: expired, or naming a shredded signal."""
    requests_forgotten: int = 0
    """Request journal rows deleted: older than `BROKER_REPLAY_DAYS`."""


def due_for_retention(conn: Connection, moment: datetime) -> Sequence[Any]:
    """Live signals past their retention date at `moment` and under no legal hold: their
    id, category, legal basis and source (read from the index of live signals only)."""
    return conn.execute(
        select(SIGNAL.c.id, SIGNAL.c.category, SIGNAL.c.legal_basis, SIGNAL.c.source).where(
            SIGNAL.c.retention_until < moment, SIGNAL.c.erased_at.is_(None),
            SIGNAL.c.id.not_in(select(legal_hold.c.signal_id)),  # held: passed by
        )
    ).all()


def run_retention(
    runtime: Runtime, actor: Actor, *, now: datetime | None = None
) -> RetentionRun:
    """Shred every signal past its retention date, delete expired stored answers and the
    request journal past `BROKER_REPLAY_DAYS`, with one `retention_run` entry."""
    moment = now or utcnow()
    with runtime.engine.connect() as conn:
        rows = due_for_retention(conn, moment)
    ids = [row.id for row in rows]
    lifetime = idempotency.lifetime(runtime)
    forgotten: list[int] = []

    def work(conn: Connection) -> int:
        forgotten[:] = [journal.forget(conn, runtime.settings.replay_days, moment)]
        deleted = idempotency.forget_expired(conn, lifetime, moment)
        if ids:
            conn.execute(
                update(SIGNAL)
                .where(SIGNAL.c.id.in_(ids), SIGNAL.c.erased_at.is_(None))
                .values(wrapped_key=None, ciphertext=None, erased_at=utcnow())
            )
            conn.execute(delete(INDEX).where(INDEX.c.signal_id.in_(ids)))
            deleted += idempotency.forget_signals(conn, ids)
        return deleted

    items = [{"signal_id": r.id, "category": r.category, "source": r.source,
              "legal_basis": r.legal_basis} for r in rows]
    entry = draft("retention_run", actor, reason="retention_expired", items=items,
                  objects={"erased": len(ids)})
    recorded = runtime.audit.record(entry, work=work)
    return RetentionRun(len(ids), recorded.result, forgotten[0] if forgotten else 0)
