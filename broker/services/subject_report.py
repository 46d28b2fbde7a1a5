"""The data subject's access report: every disclosure, hit and re-identification that
concerned one subject, found through the audit log's subject side index.

The subject is named by an identifier (bsn, kvk, plate, bag_id) or, for an address without
a BAG id, by its postcode, house number, letter and addition, normalised as intake does,
and found by its blind-index token (an address signal without a BAG id is tagged with its
address's token, `broker.services.candidates.signal_subject_token`). Each entry's items are narrowed
to those tagged with this subject's per-entry tag, so the report never shows what other
people's signals released. It gives time, recipient organisation, purpose, legal basis,
rule and fields with their transforms; never an employee, a client or a case reference
(docs/audit.md, "What a privacy officer finds in an entry").

Entries whose `confidential_until` lies in the future are left out. The answer goes to a
privacy officer, not to the subject: it carries `withheld`, the number left out, so the
officer knows the report is incomplete and until when to look again. What reaches the data
subject is `items` only, which gives no hint of what was withheld.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Connection, select

from broker.audit.drafts import draft
from broker.audit.tables import audit_entry, audit_subject, audit_subject_entry, chunks
from broker.auth.actors import Actor
from broker.core.entry import parse_json, subject_tag
from broker.core.policy.evaluate import COVENANT_TIMEZONE
from broker.runtime import Runtime
from broker.schemas.disclosures import AddressQuery, SubjectQuery
from broker.services.candidates import address_token, subject_token

REPORTED_ACTIONS: Final = frozenset({
    "disclosure",
    "hit",
    "reidentification_requested",
    "reidentification_decided",
    "reidentification_revealed",
})


def _entries(conn: Connection, token: bytes) -> tuple[bytes | None, list[tuple[int, bytes]]]:
    key = conn.execute(
        select(audit_subject.c.subject_key).where(audit_subject.c.token == token)
    ).scalar()
    if key is None:
        return None, []
    seqs = sorted(int(s) for s in conn.execute(
        select(audit_subject_entry.c.seq).where(audit_subject_entry.c.token == token)
    ).scalars())
    rows: list[tuple[int, bytes]] = []
    for chunk in chunks(seqs):
        rows.extend(
            (int(seq), bytes(data)) for seq, data in conn.execute(
                select(audit_entry.c.seq, audit_entry.c.bytes).where(audit_entry.c.seq.in_(chunk))
            )
        )
    return bytes(key), sorted(rows)


def _reported(seq: int, entry: dict[str, Any], tag: str) -> dict[str, Any]:
    objects = entry.get("objects") or {}
    recipient = objects.get("recipient") or (entry.get("actor") or {}).get("org")
    return {
        "seq": seq,
        "time": entry["time"],
        "action": entry["action"],
        "outcome": entry["outcome"],
        "recipient": recipient,
        "purpose": entry.get("purpose"),
        "legal_basis": entry.get("legal_basis"),
        "items": [
            {"rule": item.get("rule"), "legal_basis": item["legal_basis"],
             "category": item["category"], "source": item["source"],
             "fields": item.get("fields") or {}}
            for item in entry.get("items") or ()
            if tag in (item.get("subject_tags") or ())
        ],
    }


def build_report(rows: Sequence[tuple[int, bytes]], subject_key: bytes, today: date
                 ) -> tuple[list[dict[str, Any]], int]:
    """(reported acts oldest first, number withheld as still confidential)."""
    reported: list[dict[str, Any]] = []
    withheld = 0
    for seq, data in rows:
        try:
            entry = parse_json(data)
            action = entry["action"]
        except (ValueError, KeyError, TypeError):
            continue  # a damaged row: live verification names it
        if action not in REPORTED_ACTIONS:
            continue
        confidential = entry.get("confidential_until")
        if confidential and date.fromisoformat(confidential) > today:
            withheld += 1
            continue
        reported.append(_reported(seq, entry, subject_tag(subject_key, entry["id"])))
    return reported, withheld


def subject_of(runtime: Runtime, query: SubjectQuery | AddressQuery) -> tuple[str, bytes]:
    """(subject type, blind-index token) of the subject asked about; 422 when malformed."""
    if isinstance(query, AddressQuery):
        return "address", address_token(runtime.keys, query, ("body", "address"))
    return query.identifier()[0], subject_token(runtime.keys, query, ("body", "subject"))


def subject_report(
    runtime: Runtime, actor: Actor, query: SubjectQuery | AddressQuery, *,
    request_id: str | None,
) -> dict[str, Any]:
    """The access report of one subject (an identifier, or an address without BAG id); the
    look-up itself is audited first (`audit_read`, tagged with the subject, so the officer's
    search is accountable too)."""
    kind, token = subject_of(runtime, query)
    runtime.audit.record(draft("audit_read", actor, request_id=request_id,
                               objects={"read": "subject_report", "subject_type": kind}),
                         subjects=[token])
    with runtime.engine.connect() as conn:
        key, rows = _entries(conn, token)
    if key is None:
        return {"subject_type": kind, "items": [], "withheld": 0}
    today = datetime.now(COVENANT_TIMEZONE).date()
    items, withheld = build_report(rows, key, today)
    return {"subject_type": kind, "items": items, "withheld": withheld}
