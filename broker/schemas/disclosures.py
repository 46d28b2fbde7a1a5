"""Request and response models of disclosures, hits, area summaries, re-identification and
the subject report (docs/api.md). Unknown fields are refused everywhere; no model echoes a value.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from broker.schemas.text import LINE, TEXT

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
# A case number, not free text: it is written into the audit log.
CaseReference = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,63}$")
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=20)]
SignalId = Annotated[str, StringConstraints(pattern=r"^sig_[a-z2-7]{1,36}$")]
Ref = Annotated[str, StringConstraints(pattern=r"^sg_[a-z2-7]{26}$")]
DisclosureId = Annotated[str, StringConstraints(pattern=r"^dsc_[a-z2-7]{1,36}$")]
FieldPath = Annotated[
    str, StringConstraints(pattern=r"^[a-z_]+(\.[a-z][a-z0-9_]*)?$", max_length=200)
]
PageToken = Annotated[str, StringConstraints(pattern=r"^p1\.[0-9]{1,9}\.[A-Za-z0-9_-]{1,400}$")]
FreeText = Annotated[str, StringConstraints(min_length=1, max_length=2000), TEXT]

SubjectType = Literal["person", "company", "address", "vehicle"]
SUBJECT_IDENTIFIERS = ("bsn", "kvk", "plate", "bag_id")
# The identifier a subject of each type is found by (a signal's subject carries it).
IDENTIFIER_OF_TYPE: dict[str, str] = {
    "person": "bsn", "company": "kvk", "vehicle": "plate", "address": "bag_id"}
NOT_SEARCHED = frozenset({"name", "birthdate"})
EXPECTED_SUBJECT = ('expected {"type": "person", "bsn": ...}, {"type": "company", "kvk": ...}, '
                    '{"type": "vehicle", "plate": ...} or {"type": "address", "bag_id": ...} '
                    '(type optional)')
MAX_SIGNAL_IDS = 100


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectQuery(Strict):
    """One subject, named as a signal names it: `{"type": "person", "bsn": "..."}`. The type
    may be left out (the identifier implies it); given, it must fit the identifier."""

    type: SubjectType | None = Field(
        default=None, description="optional; person (bsn), company (kvk), vehicle (plate) "
                                  "or address (bag_id)")
    bsn: Identifier | None = None
    kvk: Identifier | None = None
    plate: Identifier | None = None
    bag_id: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_searched(cls, data: Any) -> Any:
        # A signal's subject may carry a name and birth date; a query finds by identifier
        # only, and says so rather than "Unknown field".
        if isinstance(data, dict) and set(data) & NOT_SEARCHED:
            raise ValueError(f"a subject is found by its identifier only, not by name or "
                             f"birthdate; {EXPECTED_SUBJECT}")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SubjectQuery:
        given = [name for name in SUBJECT_IDENTIFIERS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"name exactly one of bsn, kvk, plate or bag_id; {EXPECTED_SUBJECT}")
        if self.type is not None and IDENTIFIER_OF_TYPE[self.type] != given[0]:
            raise ValueError(f"a {self.type} subject is named by its "
                             f"{IDENTIFIER_OF_TYPE[self.type]}, not by {given[0]}; "
                             f"{EXPECTED_SUBJECT}")
        return self

    def identifier(self) -> tuple[str, str]:
        """(kind, value) of the one identifier given."""
        for name in SUBJECT_IDENTIFIERS:
            value = getattr(self, name)
            if value is not None:
                return name, value
        raise ValueError("no identifier")  # unreachable after validation


class AddressQuery(Strict):
    postcode: Annotated[str, StringConstraints(max_length=10)]
    house_number: Annotated[StrictInt, Field(ge=1, le=99999)]
    house_letter: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]$")] | None = None
    addition: Annotated[str, StringConstraints(min_length=1, max_length=10), LINE] | None = None


class AreaQuery(Strict):
    """A postcode area: six characters (`1012AB`) or its four digits (`1012`)."""

    postcode: Annotated[str, StringConstraints(max_length=10)]


class DisclosureQuery(Strict):
    """Exactly one of subject, address, area or signal ids; `categories` narrows it."""

    subject: SubjectQuery | None = None
    address: AddressQuery | None = None
    area: AreaQuery | None = None
    signals: Annotated[list[SignalId], Field(min_length=1, max_length=MAX_SIGNAL_IDS)] | None = None
    categories: Annotated[list[Ident], Field(min_length=1, max_length=50)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DisclosureQuery:
        given = [n for n in ("subject", "address", "area", "signals") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("name exactly one of subject, address, area or signals")
        return self


class PurposeBound(Strict):
    purpose: Ident
    case_reference: CaseReference | None = None


class DisclosureIn(PurposeBound):
    query: DisclosureQuery
    # Until this day the entry is left out of the data subject's access report
    # (for example during a criminal investigation).
    confidential_until: date | None = None
    page: PageToken | None = Field(
        default=None, description="the `next_page` of the previous answer to the same query")


class HitIn(PurposeBound):
    subject: SubjectQuery
    confidential_until: date | None = None


class AreaSummaryIn(PurposeBound):
    area: AreaQuery


class ReleasedSignal(BaseModel):
    ref: str
    category: str
    source: str | None = Field(default=None, description="absent when the rule hides it")
    legal_basis: str | None = Field(
        default=None, description="absent when the rule hides the source and only one "
                                  "organisation's signals can carry this basis")
    rule: str | None = Field(
        default=None, description="absent when the rule hides the source and covers only one")
    fields: dict[str, Any]


class DisclosureOut(BaseModel):
    disclosure_id: str
    audit_seq: int
    policy_hash: str
    purpose: str
    signals: list[ReleasedSignal]
    truncated: bool = Field(
        default=False, description="more signals match than this answer carries"
    )
    next_page: str | None = Field(
        default=None, description="send it back as `page`, with the same query, for the "
                                  "next signals; null on the last page")


class HitOut(BaseModel):
    hit: bool
    sources: list[str]
    audit_seq: int
    policy_hash: str


class CategoryCount(BaseModel):
    category: str
    count: int | None
    suppressed: bool


class AreaSummaryOut(BaseModel):
    area: AreaQuery
    categories: list[CategoryCount]
    audit_seq: int
    policy_hash: str


class ReidentificationIn(Strict):
    disclosure_id: DisclosureId
    ref: Ref
    field: FieldPath
    justification: FreeText


class LegalHoldIn(Strict):
    case_reference: CaseReference


class LegalHoldOut(BaseModel):
    signal_id: str
    case_reference: str
    placed_by: str
    placed_at: str


class LegalHoldListed(LegalHoldOut):
    category: str


class LegalHoldPage(BaseModel):
    items: list[LegalHoldListed]
    next_cursor: str | None


class DecisionIn(Strict):
    approve: StrictBool
    reason: FreeText


class ReidentificationOut(BaseModel):
    id: str
    status: Literal["pending", "approved", "refused", "revealed"]
    disclosure_id: str | None = None
    ref: str | None = None
    field: str | None = None
    purpose: str | None = None
    org: str | None = None
    justification: str | None = None
    reason: str | None = None
    created_at: str | None = None
    decided_at: str | None = None
    revealed_at: str | None = None
    audit_seq: int | None = None
    value: Any = Field(default=None, description="the clear value, given once when approved")


class ReportedItem(BaseModel):
    rule: str | None
    legal_basis: str
    category: str
    source: str
    fields: dict[str, Any]


class ReportedAct(BaseModel):
    seq: int
    time: str
    action: str
    outcome: str
    recipient: str | None
    purpose: str | None
    legal_basis: str | None
    items: list[ReportedItem]


class SubjectReportOut(BaseModel):
    subject_type: str
    items: list[ReportedAct]
    withheld: int = Field(
        description="entries of this page still confidential, left out; for the officer, "
                    "not the subject (the pages' counts add up to the report's)"
    )
    next_cursor: str | None = Field(description="continues the report; null on its last page")
