"""Request and response models of the API (pydantic). Unknown fields are refused everywhere."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
SubjectType = Literal["person", "company", "address", "vehicle"]


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
    addition: Annotated[str, StringConstraints(min_length=1, max_length=10)] | None = None
    street: ShortText | None = None
    city: ShortText | None = None


class SignalIn(Strict):
    category: Ident
    legal_basis: Ident
    subject: SubjectIn
    location: LocationIn | None = None
    observed_at: AwareDatetime
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=100)


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
