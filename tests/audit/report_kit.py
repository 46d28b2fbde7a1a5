"""Subjects with long histories in the audit log, for the subject report's tests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from broker.audit.tables import audit_entry, audit_subject, audit_subject_entry
from broker.core.identifiers import valid_bsn_from
from broker.core.policy.evaluate import COVENANT_TIMEZONE
from broker.runtime import Runtime
from broker.schemas.disclosures import SubjectQuery
from broker.services import subject_report
from broker.services.candidates import subject_token
from tests.audit.audit_kit import draft


def token_of(runtime: Runtime, bsn: str) -> bytes:
    return subject_token(runtime.keys, SubjectQuery(bsn=bsn), ("body",))


def fill(runtime: Runtime, bsn: str, count: int, *, workers: int = 16) -> None:
    """`count` entries about the subject: disclosures and hits, one in seven (numbers 0, 7,
    14, ...) still confidential, one in five also releasing another person's signal, and
    between them entries the report does not show (a signal stored, tagged with the
    subject). With one worker the entries are in the log in the order of their numbers."""
    token, other = token_of(runtime, bsn), token_of(runtime, valid_bsn_from(700_000_000))
    later = (date.today() + timedelta(days=30)).isoformat()

    def one(number: int) -> None:
        entry = draft(number, org=("gemeente", "politie", "belastingdienst")[number % 3])
        entry["items"][0]["subjects"] = [token]
        if number % 5 == 0:
            entry["items"].append({**draft(number)["items"][0], "signal_id": f"sig_o{number}",
                                   "rule": "r-other", "subjects": [other]})
        if number % 4 == 0:
            entry["action"] = "hit"
        if number % 7 == 0:
            entry["confidential_until"] = later
        runtime.audit.record(entry)
        if number % 11 == 0:
            runtime.audit.record({**draft(number), "action": "signal_created", "items": []},
                                 subjects=[token])

    with ThreadPoolExecutor(max_workers=workers) as pool:  # group commit: many entries a batch
        list(pool.map(one, range(count)))


def whole_report(runtime: Runtime, bsn: str) -> tuple[list[dict[str, Any]], int]:
    """The report as one answer gave it: every entry of the subject read at once and
    narrowed by the report's own rules (`build_report`)."""
    token = token_of(runtime, bsn)
    with runtime.engine.connect() as conn:
        key = conn.execute(select(audit_subject.c.subject_key)
                           .where(audit_subject.c.token == token)).scalar_one()
        rows = conn.execute(
            select(audit_entry.c.seq, audit_entry.c.bytes)
            .join(audit_subject_entry, audit_subject_entry.c.seq == audit_entry.c.seq)
            .where(audit_subject_entry.c.token == token).order_by(audit_entry.c.seq)
        ).all()
    today = datetime.now(COVENANT_TIMEZONE).date()
    return subject_report.build_report([(int(s), bytes(b)) for s, b in rows], bytes(key),
                                       today)
