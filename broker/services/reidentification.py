"""Re-identification: a recipient asks for the clear value behind a pseudonym it received.

Four eyes: a privacy officer who is not the requesting person (nor its client) approves or
refuses, and only the officer of the organisation whose signal it is, or the covenant's
officer the pack names (`covenant_privacy_officer`), decides; the recipient then fetches
the value once, read from the signal at that moment, so an erased signal can no longer be
re-identified. Every step is one audit entry. The
free-text justification and reason are sealed in the request's row and never enter the
audit log (they may hold personal data).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Row, exists, or_, select, update

from broker import cursors
from broker.audit import drafts
from broker.auth.actors import Actor, person_tag
from broker.clock import as_utc, rfc3339, utcnow
from broker.core import randomness
from broker.core.policy import Pack
from broker.core.transforms import flatten_signal
from broker.errors import Conflict, FieldProblem, Forbidden, NotFound, ValidationFailed
from broker.keys import KeyRing
from broker.models import disclosure_pseudonym, reidentification
from broker.models import signal as SIGNAL
from broker.runtime import Runtime
from broker.schemas.disclosures import DecisionIn, ReidentificationIn
from broker.sealing import Unreadable, seal, unseal
from broker.services import idempotency
from broker.services.candidates import Candidate, payload_of, signal_subject_token
from broker.services.purpose_binding import Asker, draft

TABLE = reidentification
CURSOR_PREFIX: Final = "r1|"


class SignalErased(Conflict):
    """The signal behind a pseudonym was erased: its value no longer exists anywhere."""

    code = "signal_erased"
    title = "Signal erased"


@dataclass(frozen=True, slots=True)
class Person:
    """An authenticated caller acting in one of these steps."""

    actor: Actor
    client_id: str
    org: str
    acting_user: str | None
    request_id: str | None


class NotTheDecidingOfficer(Forbidden):
    """An officer of an organisation that does not decide on re-identifying this signal."""


def deciding_orgs(pack: Pack, source: str) -> frozenset[str]:
    """The organisations whose privacy officers decide on re-identifying a signal of
    `source`: the source itself, and the covenant's officer if the pack names one. Never the
    requester's organisation as such, nor any other."""
    named = pack.model.covenant_privacy_officer
    return frozenset({source} if named is None else {source, named})


def _officer_scope(pack: Pack, org: str) -> ColumnElement[bool] | None:
    """The requests an officer of `org` sees: those it may decide (on its organisation's
    signals; all of them for the covenant's officer) and its organisation's own."""
    if org == pack.model.covenant_privacy_officer:
        return None
    own_signal = exists().where(SIGNAL.c.id == TABLE.c.signal_id, SIGNAL.c.source == org)
    return or_(TABLE.c.org == org, own_signal)


def officer_sees(pack: Pack, org: str, requester: str, source: str) -> bool:
    """Whether an officer of `org` sees a request of `requester` on a signal of `source`
    (`_officer_scope` for one request)."""
    return requester == org or org in deciding_orgs(pack, source)


def new_reidentification_id() -> str:
    return "rid_" + randomness.token_b32(15)


def _aad(request_id: str) -> bytes:
    return f"reidentification|{request_id}".encode()


def _texts(keys: KeyRing, row: Mapping[Any, Any]) -> dict[str, str]:
    try:
        plain = unseal(keys, row["key_version"], row["wrapped_key"], row["ciphertext"],
                       _aad(row["id"]))
    except Unreadable:
        return {}
    texts: dict[str, str] = json.loads(plain)
    return texts


def _time(moment: datetime | None) -> str | None:
    return rfc3339(as_utc(moment)) if moment is not None else None


def _shape(row: Mapping[Any, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": row["id"], "status": row["status"], "disclosure_id": row["disclosure_id"],
        "ref": row["ref"], "field": row["path"], "purpose": row["purpose"], "org": row["org"],
        "justification": texts.get("justification"), "reason": texts.get("reason"),
        "created_at": _time(row["created_at"]),
        "decided_at": _time(row.get("decided_at")),
        "revealed_at": _time(row.get("revealed_at")),
    }


def view(keys: KeyRing, row: Row[Any], *, audit_seq: int | None = None) -> dict[str, Any]:
    """A request as the API shows it (never the value: that is added once, on reveal)."""
    out = _shape(row._mapping, _texts(keys, row._mapping))
    if audit_seq is not None:
        out["audit_seq"] = audit_seq
    return out


def _load(runtime: Runtime, request_id: str) -> Row[Any] | None:
    with runtime.engine.connect() as conn:
        return conn.execute(select(TABLE).where(TABLE.c.id == request_id)).first()


def _source(runtime: Runtime, signal_id: str) -> str:
    """The organisation a signal came from ("" when there is no such row)."""
    with runtime.engine.connect() as conn:
        source = conn.execute(select(SIGNAL.c.source).where(SIGNAL.c.id == signal_id)).scalar()
    return str(source or "")


def _signal(runtime: Runtime, signal_id: str) -> tuple[Candidate, dict[str, Any] | None]:
    """The signal's envelope and payload (None when erased)."""
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(SIGNAL.c.id, SIGNAL.c.source, SIGNAL.c.category, SIGNAL.c.legal_basis,
                   SIGNAL.c.key_version, SIGNAL.c.wrapped_key, SIGNAL.c.ciphertext)
            .where(SIGNAL.c.id == signal_id)
        ).first()
    if row is None:  # signal rows are kept when erased; a missing one counts as erased
        gone = Candidate(signal_id, "", "", "", 0.0)
        return gone, None
    candidate = Candidate(row.id, row.source, row.category, row.legal_basis, 0.0,
                          row.key_version, row.wrapped_key, row.ciphertext)
    return candidate, payload_of(runtime.keys, candidate)


def _item(keys: KeyRing, signal: Candidate, payload: dict[str, Any] | None, rule: str,
          fields: dict[str, Any]) -> dict[str, Any]:
    subject = signal_subject_token(keys, payload) if payload else None
    return {"signal_id": signal.id, "rule": rule, "legal_basis": signal.legal_basis,
            "category": signal.category, "source": signal.source, "fields": fields,
            "subjects": [subject] if subject else []}


def _asker(person: Person, purpose: str) -> Asker:
    return Asker(person.actor, person.client_id, person.org, purpose, None, person.request_id)


def request(
    runtime: Runtime, person: Person, body: ReidentificationIn, key: str | None = None
) -> dict[str, Any]:
    """Ask to re-identify one field the caller's organisation got pseudonymised. A retry
    under the same `Idempotency-Key` gets the first answer, and no second request exists."""
    once = idempotency.begin(person.client_id, person.org, key,
                             "reidentifications.create", body.model_dump(mode="json"))
    if once is not None:
        earlier = idempotency.replay(runtime, once)
        if earlier is not None:
            return dict(earlier.body)
    with runtime.engine.connect() as conn:
        given = conn.execute(
            select(disclosure_pseudonym).where(
                disclosure_pseudonym.c.disclosure_id == body.disclosure_id,
                disclosure_pseudonym.c.org == person.org,
            )
        ).all()
    if not given:
        raise NotFound("No such disclosure with pseudonyms for your organisation.")
    row = next((g for g in given if g.ref == body.ref and g.path == body.field), None)
    if row is None:
        raise ValidationFailed(
            "That field was not given to you pseudonymised in this disclosure.",
            errors=[FieldProblem(("body", "field"), "not a pseudonymised field of that ref")],
        )
    signal, payload = _signal(runtime, row.signal_id)
    if payload is None:
        raise SignalErased("The signal was erased; it can no longer be re-identified.")
    new_id = new_reidentification_id()
    sealed = seal(runtime.keys.active("master"),
                  json.dumps({"justification": body.justification}).encode(), _aad(new_id))
    now = utcnow()
    values = {
        "id": new_id, "disclosure_id": row.disclosure_id, "ref": row.ref, "path": row.path,
        "signal_id": row.signal_id, "rule": row.rule, "purpose": row.purpose,
        "org": person.org, "client_id": person.client_id,
        "person_tag": (person_tag(runtime.keys, person.org, person.acting_user)
                       if person.acting_user else None),
        "status": "pending", "key_version": sealed.key_version,
        "wrapped_key": sealed.wrapped_key, "ciphertext": sealed.ciphertext, "created_at": now,
    }
    live = runtime.policy
    entry = draft(_asker(person, row.purpose), live, "reidentification_requested",
                  items=[_item(runtime.keys, signal, payload, row.rule, {})],
                  objects={"reidentification": new_id, "disclosure_id": row.disclosure_id,
                           "field": row.path})
    def store(conn: Connection) -> None:
        conn.execute(TABLE.insert().values(**values))

    if once is not None:
        answer = {**_shape(values, {"justification": body.justification}), "audit_seq": None}
        return idempotency.record(runtime, once, entry, answer, status_code=202, work=store)
    recorded = runtime.audit.record(entry, work=store)
    stored = _load(runtime, new_id)
    assert stored is not None  # noqa: S101 - written in the transaction just committed
    return view(runtime.keys, stored, audit_seq=recorded.seq)


def _same_person(runtime: Runtime, person: Person, row: Row[Any]) -> bool:
    if person.client_id == row.client_id:
        return True
    if person.org != row.org or person.acting_user is None or row.person_tag is None:
        return False
    return bool(person_tag(runtime.keys, person.org, person.acting_user) == row.person_tag)


def decide(runtime: Runtime, person: Person, request_id: str, body: DecisionIn) -> dict[str, Any]:
    """A privacy officer's decision on a pending request: only by an officer of an
    organisation that decides on the signal (`deciding_orgs`), never the requester's own."""
    row = _load(runtime, request_id)
    if row is None:
        raise NotFound("No such re-identification request.")
    live = runtime.policy
    signal, payload = _signal(runtime, row.signal_id)
    objects = {"reidentification": row.id, "disclosure_id": row.disclosure_id,
               "field": row.path, "recipient": row.org, "approved": body.approve}
    item = _item(runtime.keys, signal, payload, row.rule, {})
    if person.org not in deciding_orgs(live.pack, signal.source):
        runtime.audit.record(draft(_asker(person, row.purpose), live,
                                   "reidentification_decided", outcome="refused",
                                   reason="not_the_deciding_officer", items=[item],
                                   objects=objects))
        if not officer_sees(live.pack, person.org, row.org, signal.source):
            raise NotFound("No such re-identification request.")
        raise NotTheDecidingOfficer(
            "Only the privacy officer of the organisation whose signal it is, or the "
            "covenant's, decides on its re-identification.")
    if _same_person(runtime, person, row):
        runtime.audit.record(draft(_asker(person, row.purpose), live,
                                   "reidentification_decided", outcome="refused",
                                   reason="four_eyes", items=[item], objects=objects))
        raise Forbidden("The requester may not decide its own re-identification request.")
    if row.status != "pending":
        raise Conflict("This request has already been decided.")
    texts = {**_texts(runtime.keys, row._mapping), "reason": body.reason}
    sealed = seal(runtime.keys.active("master"), json.dumps(texts).encode(), _aad(row.id))
    status = "approved" if body.approve else "refused"

    def store(conn: Connection) -> None:
        changed = conn.execute(
            update(TABLE).where(TABLE.c.id == row.id, TABLE.c.status == "pending").values(
                status=status, key_version=sealed.key_version, wrapped_key=sealed.wrapped_key,
                ciphertext=sealed.ciphertext, decided_by_client=person.client_id,
                decided_by_org=person.org, decided_at=utcnow())
        ).rowcount
        if changed != 1:
            raise Conflict("This request has already been decided.")

    entry = draft(_asker(person, row.purpose), live, "reidentification_decided",
                  outcome="granted" if body.approve else "refused",
                  reason="approved" if body.approve else "refused_by_privacy_officer",
                  items=[item], objects=objects)
    recorded = runtime.audit.record(entry, work=store)
    stored = _load(runtime, row.id)
    assert stored is not None  # noqa: S101 - the row exists; only its status changed
    return view(runtime.keys, stored, audit_seq=recorded.seq)


class _AlreadyRevealed(Exception):
    """Another fetch revealed the value first (the value is given once)."""


def fetch(
    runtime: Runtime, person: Person, request_id: str, *, requester: bool, officer: bool
) -> dict[str, Any]:
    """A request as its organisation's requesters, or a privacy officer who sees it
    (`officer_sees`: to decide it, or its organisation's own), see it; to a requester of
    its organisation an approved request gives its value, once, and is `revealed` from
    then on."""
    row = _load(runtime, request_id)
    own = row is not None and requester and row.org == person.org
    seen = (row is not None and officer
            and officer_sees(runtime.policy.pack, person.org, row.org,
                             _source(runtime, row.signal_id)))
    if row is None or not (own or seen):
        raise NotFound("No such re-identification request.")
    if own and row.status == "approved":
        return _reveal(runtime, person, row)
    return view(runtime.keys, row)


def _reveal(runtime: Runtime, person: Person, row: Row[Any]) -> dict[str, Any]:
    live = runtime.policy
    signal, payload = _signal(runtime, row.signal_id)
    objects = {"reidentification": row.id, "disclosure_id": row.disclosure_id,
               "field": row.path}
    value = flatten_signal(payload).get(row.path) if payload else None
    if payload is None or value is None:
        runtime.audit.record(draft(_asker(person, row.purpose), live,
                                   "reidentification_revealed", outcome="error",
                                   reason="signal_erased",
                                   items=[_item(runtime.keys, signal, None, row.rule, {})],
                                   objects=objects))
        raise SignalErased("The signal was erased; its value can no longer be revealed.")

    def store(conn: Connection) -> None:
        changed = conn.execute(
            update(TABLE).where(TABLE.c.id == row.id, TABLE.c.status == "approved")
            .values(status="revealed", revealed_at=utcnow())
        ).rowcount
        if changed != 1:
            raise _AlreadyRevealed

    entry = draft(_asker(person, row.purpose), live, "reidentification_revealed",
                  items=[_item(runtime.keys, signal, payload, row.rule, {row.path: "reveal"})],
                  objects=objects)
    try:
        recorded = runtime.audit.record(entry, work=store)
    except _AlreadyRevealed:
        again = _load(runtime, row.id)
        assert again is not None  # noqa: S101
        return view(runtime.keys, again)
    answer = view(runtime.keys, row, audit_seq=recorded.seq)
    answer.update(status="approved", value=value)
    return answer


# --- The privacy officer's queue ---


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(requested at, id) a cursor continues after; 422 for anything not our cursor."""
    return cursors.decode(CURSOR_PREFIX, cursor)


def list_requests(
    runtime: Runtime, org: str, *, status: str | None = None, limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The requests an officer of `org` sees (`_officer_scope`), newest first, optionally
    of one status, in pages of `limit` after an opaque cursor. Each as `view` shows it (the
    justification unsealed, never a value), with `requested_at` and the requester's
    `client_id` and the `rule`: for privacy officers."""
    query = select(TABLE)
    scope = _officer_scope(runtime.policy.pack, org)
    if scope is not None:
        query = query.where(scope)
    if status is not None:
        query = query.where(TABLE.c.status == status)
    page, next_cursor = cursors.newest_first(
        runtime.engine, query, TABLE.c.created_at, TABLE.c.id, prefix=CURSOR_PREFIX,
        limit=limit, cursor=cursor)
    items = [{**view(runtime.keys, row), "requested_at": _time(row.created_at),
              "client_id": row.client_id, "rule": row.rule} for row in page]
    return items, next_cursor


def officer_list(
    runtime: Runtime, person: Person, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """`list_requests` for a privacy officer through the API; the read is recorded first
    (`audit_read`), as the officer's pages record theirs: justifications may name people."""
    if cursor:
        decode_cursor(cursor)  # a bad cursor is a 422 before anything is recorded
    runtime.audit.record(drafts.draft(
        "audit_read", person.actor, request_id=person.request_id,
        objects=drafts.without_none({"read": "reidentifications", "status": status or None})))
    return list_requests(runtime, person.org, status=status, limit=limit, cursor=cursor)
