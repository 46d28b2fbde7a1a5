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

The report comes in pages, oldest first: a page reads at most `limit` of the subject's
reported entries (found through the side index, one query), so neither the answer nor
the memory it takes grows with the subject's history. `withheld` counts the entries of
the page's own stretch of the log; the pages' counts add up to the whole report's. Each
page is a look-up of its own and is recorded as one (`audit_read`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Connection, select

from broker import cursors
from broker.audit.compact import released_fields
from broker.audit.drafts import draft, without_none
from broker.audit.tables import audit_entry, audit_subject, audit_subject_entry
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
DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
"""The most entries one page of a report reads and answers."""
CURSOR_PREFIX: Final = "s1|"


def _page(conn: Connection, token: bytes, after: int, limit: int
          ) -> tuple[bytes | None, list[tuple[int, bytes]]]:
    """(the subject's tag key, up to `limit` + 1 of its reported entries after `after`,
    oldest first), or (None, []) for a subject the log does not know."""
    key = conn.execute(
        select(audit_subject.c.subject_key).where(audit_subject.c.token == token)
    ).scalar()
    if key is None:
        return None, []
    query = (
        select(audit_entry.c.seq, audit_entry.c.bytes)
        .select_from(audit_subject_entry.join(
            audit_entry, audit_entry.c.seq == audit_subject_entry.c.seq))
        .where(audit_subject_entry.c.token == token, audit_subject_entry.c.seq > after,
               audit_entry.c.action.in_(sorted(REPORTED_ACTIONS)))
        .order_by(audit_subject_entry.c.seq)
        .limit(limit + 1)
    )
    return bytes(key), [(int(seq), bytes(data)) for seq, data in conn.execute(query)]


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
             "fields": released_fields(item, objects)}
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
    request_id: str | None, limit: int = DEFAULT_PAGE, cursor: str | None = None,
) -> dict[str, Any]:
    """One page of the access report of one subject (an identifier, or an address without
    BAG id), oldest first, after `cursor`; `next_cursor` continues it, None on the last
    page. The look-up itself is audited first (`audit_read`, tagged with the subject, so
    the officer's search is accountable too), once per page; a bad cursor is a 422 before
    anything is recorded."""
    after = cursors.decode_seq(CURSOR_PREFIX, cursor) if cursor else None
    limit = min(max(limit, 1), MAX_PAGE)
    kind, token = subject_of(runtime, query)
    # A later page's entry also says where it continued: the seq of the previous page's end.
    objects = without_none({"read": "subject_report", "subject_type": kind, "after": after})
    runtime.audit.record(draft("audit_read", actor, request_id=request_id, objects=objects),
                         subjects=[token])
    with runtime.engine.connect() as conn:
        key, rows = _page(conn, token, -1 if after is None else after, limit)
    if key is None:
        return {"subject_type": kind, "items": [], "withheld": 0, "next_cursor": None}
    page = rows[:limit]
    next_cursor = cursors.encode_seq(CURSOR_PREFIX, page[-1][0]) if len(rows) > limit else None
    today = datetime.now(COVENANT_TIMEZONE).date()
    items, withheld = build_report(page, key, today)
    return {"subject_type": kind, "items": items, "withheld": withheld,
            "next_cursor": next_cursor}
