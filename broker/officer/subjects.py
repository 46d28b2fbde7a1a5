"""A data subject's access report for the officer's pages.

The report is `broker.services.subject_report.subject_report`, the one report service, also behind
the API's `POST /v1/audit/subject-report`, so both give the same facts: it finds the subject
through its blind-index token, narrows each entry to the subject's own items, leaves
confidential entries out until their date, names no employee, and records the look-up
itself (`audit_read`, tagged with the subject). This module only tidies what the officer
types (an identifier, or an address without BAG id) and shapes the rows for a page and for
a letter to the data subject, `PAGE` entries at a time: a later page is asked with the
previous one's cursor and the identifier typed again, so that the identifier never
appears in a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from pydantic import ValidationError

from broker.auth.actors import Actor
from broker.errors import FieldProblem, ValidationFailed
from broker.runtime import Runtime
from broker.schemas.disclosures import AddressQuery, SubjectQuery
from broker.services import subject_report
from broker.services.oversight import local_day

KINDS: Final = ("bsn", "kvk", "plate", "bag_id", "address")
PAGE: Final = 500
"""Entries per page of the report on the officer's pages."""
# `1234 AB 12`, `1234AB 12A`, `1234AB 12-2`, `1234AB 12 A bis`: postcode, number, an
# optional one-letter house letter, an optional addition.
_ADDRESS: Final = re.compile(
    r"^(\d{4})\s*([A-Za-z]{2})\s+(\d{1,5})(?:\s*([A-Za-z])(?![A-Za-z0-9]))?"
    r"(?:[\s-]+([A-Za-z0-9]{1,10}))?$"
)


def query(kind: str, value: str) -> SubjectQuery | AddressQuery:
    """The identifier as a subject query, without the spaces and dashes people type
    (`1234 AB`, `12-AB-34`), or an address without BAG id typed as `1234 AB 12A`;
    ValidationFailed, never echoing the value, if it is not one."""
    try:
        if kind == "address":
            return _address(value)
        compact = "".join(value.split())
        if kind == "plate":
            compact = compact.replace("-", "").upper()
        if kind not in KINDS:
            raise ValueError(kind)
        return SubjectQuery.model_validate({kind: compact})
    except (ValueError, ValidationError):
        raise ValidationFailed("The identifier is not valid.",
                               errors=[FieldProblem(("form", "value"), "not valid")]) from None


def _address(value: str) -> AddressQuery:
    found = _ADDRESS.match(value.strip())
    if found is None:
        raise ValueError("not an address")
    digits, letters, number, letter, addition = found.groups()
    return AddressQuery(postcode=digits + letters.upper(), house_number=int(number),
                        house_letter=letter.upper() if letter else None, addition=addition)


def masked(value: str) -> str:
    """An identifier with all but its last three characters hidden, for headings."""
    compact = "".join(value.split())
    return "•" * max(0, len(compact) - 3) + compact[-3:]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One act in the report: a day, who received, why, under which basis, what; and the
    entry it was read from (its seq and time), for the detail of a group."""

    day: date
    action: str
    outcome: str
    recipient: str | None
    purpose: str | None
    legal_bases: list[str]
    categories: list[str]
    fields: list[tuple[str, Any]]
    seq: int = -1
    time: str = ""

    def shown(self) -> tuple[Any, ...]:
        """What a row of the report shows: rows that show the same are one group."""
        return (self.day, self.action, self.outcome, self.recipient, self.purpose,
                self.legal_bases, self.categories, self.fields)


@dataclass(frozen=True, slots=True)
class ReportGroup:
    """Acts that read the same in the report (same day, recipient, purpose and the rest),
    shown as one row with their count; `acts` is the detail, in the report's order."""

    acts: list[ReportRow]

    @property
    def row(self) -> ReportRow:
        return self.acts[0]

    @property
    def count(self) -> int:
        return len(self.acts)


def grouped(rows: list[ReportRow]) -> list[ReportGroup]:
    """The rows of one page, identical ones together, in the order each first occurs."""
    groups: dict[str, list[ReportRow]] = {}
    for row in rows:  # keyed by its text: transforms are dicts, which do not hash
        groups.setdefault(repr(row.shown()), []).append(row)
    return [ReportGroup(acts) for acts in groups.values()]


@dataclass(frozen=True, slots=True)
class Report:
    rows: list[ReportRow]
    withheld: int
    """Entries of this page left out as still confidential: for the officer, never for the
    letter."""
    next_cursor: str | None = None
    """Where the next page continues; None on the last."""

    @property
    def groups(self) -> list[ReportGroup]:
        return grouped(self.rows)


def report(runtime: Runtime, actor: Actor, kind: str, value: str, *,
           request_id: str | None, cursor: str | None = None) -> Report:
    """One page of the access report of the subject with this identifier, oldest first,
    after `cursor` (audited)."""
    answer = subject_report.subject_report(runtime, actor, query(kind, value),
                                           request_id=request_id, limit=PAGE, cursor=cursor)
    return Report([_row(item) for item in answer["items"]], int(answer["withheld"]),
                  answer["next_cursor"])


def _row(row: dict[str, Any]) -> ReportRow:
    items = row.get("items") or []
    bases = [row["legal_basis"]] if row.get("legal_basis") else []
    bases += [i["legal_basis"] for i in items if i.get("legal_basis")]
    fields: dict[str, Any] = {}
    for item in items:
        fields.update(item.get("fields") or {})
    return ReportRow(
        day=local_day(row["time"]),
        action=row["action"],
        outcome=row.get("outcome") or "granted",
        recipient=row.get("recipient"),
        purpose=row.get("purpose"),
        legal_bases=list(dict.fromkeys(bases)),
        categories=list(dict.fromkeys(i["category"] for i in items if i.get("category"))),
        fields=sorted(fields.items()),
        seq=int(row["seq"]),
        time=str(row["time"]),
    )
