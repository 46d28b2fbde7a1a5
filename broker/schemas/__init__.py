"""Request and response models of the API (pydantic). Unknown fields are refused everywhere."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

from broker.schemas.disclosures import AddressQuery, SubjectQuery, SubjectType
from broker.schemas.text import LINE, TEXT, TEXT_IF_STRING

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200), LINE]

_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339_text(value: object) -> object:
    """Let only RFC 3339 date-time text with an offset through to the datetime parser, which
    on its own also takes a bare number (as Unix time), a date, or a time without offset."""
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value.replace(" ", "+")):
        raise ValueError("an offset's `+` must be sent as %2B in a query string")
    raise ValueError("must be an RFC 3339 date-time with offset, like 2026-11-20T09:00:00+01:00")


def _in_utc(value: datetime) -> datetime:
    """The time in UTC; one whose offset carries it past year 1 or 9999 is refused (422),
    not left to fail later in a conversion."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time lies outside the years 1 to 9999 in UTC") from None


Rfc3339DateTime = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)
]
"""A time as docs/api.md wants it everywhere: RFC 3339 with offset (`Z` or `+01:00`); else 422."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectIn(Strict):
    type: SubjectType
    bsn: Annotated[str, StringConstraints(max_length=20)] | None = None
    name: ShortText | None = None
    birthdate: date | None = None
    kvk: Annotated[str, StringConstraints(max_length=20)] | None = None
    plate: Annotated[str, StringConstraints(max_length=20)] | None = None
    bag_id: Annotated[str, StringConstraints(max_length=20)] | None = None


class LocationIn(Strict):
    postcode: Annotated[str, StringConstraints(max_length=10)] | None = None
    house_number: Annotated[StrictInt, Field(ge=1, le=99999)] | None = None
    house_letter: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]$")] | None = None
    addition: Annotated[str, StringConstraints(min_length=1, max_length=10), LINE] | None = None
    street: ShortText | None = None
    city: ShortText | None = None


class SignalIn(Strict):
    category: Ident
    legal_basis: Ident
    subject: SubjectIn
    location: LocationIn | None = None
    observed_at: Rfc3339DateTime
    description: Annotated[str, StringConstraints(max_length=4000), TEXT] | None = None
    attributes: dict[str, Annotated[Any, TEXT_IF_STRING]] = Field(
        default_factory=dict, max_length=100)


class SignalBatchIn(Strict):
    signals: Annotated[list[SignalIn], Field(min_length=1, max_length=1000)]


class SignalOut(BaseModel):
    id: str
    source: str
    category: str
    legal_basis: str
    subject: dict[str, Any]
    location: dict[str, Any] | None
    observed_at: str
    description: str | None
    attributes: dict[str, Any]
    received_at: str
    retention_until: str


class SignalPage(BaseModel):
    items: list[SignalOut]
    next_cursor: str | None


class SignalBatchOut(BaseModel):
    signals: list[SignalOut]


class OrganisationOut(BaseModel):
    id: str
    name: str
    groups: list[str]


class PurposeOut(BaseModel):
    id: str
    title: str
    requires_case_reference: bool


class LegalBasisOut(BaseModel):
    id: str
    title: str
    criminal_data: bool


class CategoryOut(BaseModel):
    id: str
    title: str
    subject_types: list[str]
    legal_bases: list[str]
    contributors: list[str]
    retention_days: int
    attributes: dict[str, Any]


class OrganisationPage(BaseModel):
    items: list[OrganisationOut]


class PurposePage(BaseModel):
    items: list[PurposeOut]


class LegalBasisPage(BaseModel):
    items: list[LegalBasisOut]


class CategoryPage(BaseModel):
    items: list[CategoryOut]


class PolicyOut(BaseModel):
    pack: str
    version: str
    hash: str
    loaded_at: str
    rules: list[dict[str, Any]]


class ExplainIn(Strict):
    recipient: Ident
    purpose: Ident
    category: Ident
    source: Ident
    legal_basis: Ident | None = None


class ExplainOut(BaseModel):
    access: str
    rule: str | None = None
    fields: dict[str, Any] | None = None


class ReloadOut(BaseModel):
    hash: str
    previous_hash: str


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, bool]


class SubjectReportQuery(Strict):
    """Whose access report: exactly one of `subject` (one identifier) or `address` (for an
    address without BAG id: postcode, house number, letter, addition)."""

    subject: SubjectQuery | None = None
    address: AddressQuery | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SubjectReportQuery:
        if (self.subject is None) == (self.address is None):
            raise ValueError("name exactly one of subject or address")
        return self

    def query(self) -> SubjectQuery | AddressQuery:
        """The one subject asked about."""
        found = self.subject if self.subject is not None else self.address
        if found is None:
            raise ValueError("no subject")  # unreachable after validation
        return found


class ReidentificationListed(BaseModel):
    """A re-identification request in the privacy officer's list (never its value)."""

    id: str
    status: Literal["pending", "approved", "refused", "revealed"]
    requested_at: str
    org: str = Field(description="the requesting organisation")
    purpose: str
    disclosure_id: str
    ref: str
    field: str
    justification: str | None = Field(description="null when it can no longer be unsealed")
    reason: str | None = None
    decided_at: str | None = None
    revealed_at: str | None = None


class ReidentificationPage(BaseModel):
    items: list[ReidentificationListed]
    next_cursor: str | None
