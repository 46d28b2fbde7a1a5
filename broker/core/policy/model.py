"""The policy pack schema (docs/policy.md) as strict pydantic models, plus the field catalogue.

Validation here is per entry and structural: types, unknown keys, identifier spelling,
transform syntax. Cross references, field/transform fit and overlaps are checked by
`broker.core.policy.load`, which knows which file each entry came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from broker.core.policy.transform_spec import TransformField

__all__ = [
    "ACCESS_LEVELS",
    "FIELD_CATALOGUE",
    "SUBJECT_TYPES",
    "AccessLevel",
    "AttributeSpec",
    "Category",
    "FieldKind",
    "GroupMembers",
    "IDENT_PATTERN",
    "LegalBasis",
    "Organisation",
    "PackModel",
    "PackTest",
    "Purpose",
    "Rule",
    "field_kind",
]

IDENT_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
ATTRIBUTE_PATTERN = r"^[a-z][a-z0-9_]*$"

Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]
AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1)]
SubjectType = Literal["person", "company", "address", "vehicle"]
AccessLevel = Literal["hit", "aggregate", "disclose"]

SUBJECT_TYPES: tuple[SubjectType, ...] = ("person", "company", "address", "vehicle")
# Ordered: a higher level includes every lower one (disclose includes aggregate includes hit).
ACCESS_LEVELS: dict[str, int] = {"none": 0, "hit": 1, "aggregate": 2, "disclose": 3}


def _calendar_date(value: object) -> object:
    """Accept a YAML date or an ISO `YYYY-MM-DD` string (the canonical JSON form)."""
    if isinstance(value, datetime):
        raise ValueError("expected a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, str):
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value) is None:
            raise ValueError("expected a date (YYYY-MM-DD)")
        return date.fromisoformat(value)
    return value


CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- field catalogue ----------------------------------------------------------------------

FieldKind = Literal[
    "subject_type", "bsn", "text", "date", "datetime", "kvk", "plate", "bag_id",
    "postcode", "integer", "number", "boolean", "enum", "birthdate",
]
_ALL: frozenset[str] = frozenset(SUBJECT_TYPES)

# path -> (subject types that can carry it, kind of value); docs/policy.md "Fields a rule can name".
FIELD_CATALOGUE: dict[str, tuple[frozenset[str], FieldKind]] = {
    "subject.type": (_ALL, "subject_type"),
    "subject.bsn": (frozenset({"person"}), "bsn"),
    "subject.name": (frozenset({"person", "company"}), "text"),
    "subject.birthdate": (frozenset({"person"}), "birthdate"),
    "subject.kvk": (frozenset({"company"}), "kvk"),
    "subject.plate": (frozenset({"vehicle"}), "plate"),
    "subject.bag_id": (frozenset({"address"}), "bag_id"),
    "location.postcode": (_ALL, "postcode"),
    "location.house_number": (_ALL, "integer"),
    "location.house_letter": (_ALL, "text"),
    "location.addition": (_ALL, "text"),
    "location.street": (_ALL, "text"),
    "location.city": (_ALL, "text"),
    "observed_at": (_ALL, "datetime"),
    "description": (_ALL, "text"),
}

# --- catalogue entries --------------------------------------------------------------------


class Organisation(_Strict):
    name: Text


class LegalBasis(_Strict):
    title: Text
    criminal_data: bool = False
    allowed_recipients: list[Ident] | None = None


class Purpose(_Strict):
    title: Text
    requires_case_reference: bool = False


Number = int | float


class AttributeSpec(_Strict):
    """The type of one category attribute: a small schema language of its own."""

    type: Literal["number", "integer", "boolean", "text", "date", "datetime", "enum"]
    title: Text | None = None
    required: bool = True
    min: Number | None = None
    max: Number | None = None
    max_length: Annotated[int, Field(gt=0)] | None = None
    values: Annotated[list[Text], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _options_fit_type(self) -> AttributeSpec:
        numeric = self.type in ("number", "integer")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError("min and max apply only to number and integer attributes")
        for bound in (self.min, self.max):
            if isinstance(bound, float) and not math.isfinite(bound):
                raise ValueError("min and max must be finite")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if self.max_length is not None and self.type != "text":
            raise ValueError("max_length applies only to text attributes")
        if (self.values is None) != (self.type != "enum"):
            raise ValueError("values is required for enum attributes and only for them")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError("values lists a value twice")
        return self

    def problem(self, value: object) -> str | None:
        """Why `value` does not fit this spec, or None. The message never contains the value."""
        check = _VALUE_CHECKS[self.type]
        return check(self, value)


def _check_number(spec: AttributeSpec, value: object) -> str | None:
    # JSON true/false are bools, and bool is an int subclass in Python: refuse them explicitly.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a {spec.type}"
    if spec.type == "integer" and not isinstance(value, int):
        return "expected an integer"
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    if spec.min is not None and value < spec.min:
        return f"below the minimum of {spec.min}"
    if spec.max is not None and value > spec.max:
        return f"above the maximum of {spec.max}"
    return None


def _check_boolean(spec: AttributeSpec, value: object) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _check_text(spec: AttributeSpec, value: object) -> str | None:
    if not isinstance(value, str):
        return "expected text"
    if "\x00" in value:
        return "text must not contain NUL characters"
    if spec.max_length is not None and len(value) > spec.max_length:
        return f"longer than {spec.max_length} characters"
    return None


def _check_enum(spec: AttributeSpec, value: object) -> str | None:
    if not isinstance(value, str) or value not in (spec.values or ()):
        return "expected one of: " + ", ".join(spec.values or ())
    return None


_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})")


def _check_date(spec: AttributeSpec, value: object) -> str | None:
    if isinstance(value, str) and _DATE_TEXT.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            return "not a calendar date"
        return None
    return "expected a date (YYYY-MM-DD)"


def _check_datetime(spec: AttributeSpec, value: object) -> str | None:
    if isinstance(value, str) and _DATETIME_TEXT.fullmatch(value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "not a valid date-time"
        return None
    return "expected an RFC 3339 date-time with offset"


_VALUE_CHECKS: dict[str, Callable[[AttributeSpec, object], str | None]] = {
    "number": _check_number,
    "integer": _check_number,
    "boolean": _check_boolean,
    "text": _check_text,
    "enum": _check_enum,
    "date": _check_date,
    "datetime": _check_datetime,
}


class Category(_Strict):
    title: Text
    subject_types: Annotated[list[SubjectType], Field(min_length=1)]
    contributors: Annotated[list[Ident], Field(min_length=1)]
    legal_bases: Annotated[list[Ident], Field(min_length=1)]
    retention_days: Annotated[int, Field(gt=0)]
    attributes: dict[AttributeName, AttributeSpec] = Field(default_factory=dict)

    def check_attributes(self, attrs: Mapping[str, object]) -> list[tuple[str, str]]:
        """(attribute, message) for each missing, unknown, mistyped or out-of-range attribute.

        Messages never contain the submitted value: they end up in 422 answers and logs.
        """
        problems: list[tuple[str, str]] = []
        for name, spec in self.attributes.items():
            value = attrs.get(name)
            if value is None:
                if spec.required:
                    problems.append((name, "missing required attribute"))
                continue
            message = spec.problem(value)
            if message is not None:
                problems.append((name, message))
        problems.extend((str(name), "unknown attribute for this category")
                        for name in attrs if name not in self.attributes)
        return problems

    def field_kind(self, path: str) -> FieldKind | None:
        """The kind of value at `path` in signals of this category; None if it cannot occur."""
        return field_kind(self, path)


def field_kind(category: Category, path: str) -> FieldKind | None:
    """The kind at `path` when every subject type of `category` can carry it, else None."""
    if path.startswith("attributes."):
        spec = category.attributes.get(path[len("attributes."):])
        return None if spec is None else spec.type
    entry = FIELD_CATALOGUE.get(path)
    if entry is None:
        return None
    subject_types, kind = entry
    if not set(category.subject_types) <= subject_types:
        return None
    return kind


# --- rules and tests ----------------------------------------------------------------------


class Rule(_Strict):
    id: Ident
    description: Text
    recipients: Annotated[list[Ident], Field(min_length=1)]
    purposes: Annotated[list[Ident], Field(min_length=1)]
    categories: Annotated[list[Ident], Field(min_length=1)]
    sources: Annotated[list[Ident], Field(min_length=1)] | None = None
    legal_bases: Annotated[list[Ident], Field(min_length=1)] | None = None
    access: AccessLevel
    max_age_days: Annotated[int, Field(gt=0)] | None = None
    valid_from: CalendarDate | None = None
    valid_until: CalendarDate | None = None
    reveal_source: bool = True
    min_count: Annotated[int, Field(ge=1)] = 5
    fields: dict[str, TransformField] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if (self.valid_from is not None and self.valid_until is not None
                and self.valid_from > self.valid_until):
            raise ValueError("valid_from is after valid_until")
        if self.fields and self.access != "disclose":
            raise ValueError("fields apply only to rules with access disclose")
        return self


class PackTest(_Strict):
    recipient: Ident
    purpose: Ident
    category: Ident
    source: Ident
    legal_basis: Ident | None = None
    expect: Literal["none", "hit", "aggregate", "disclose"]
    fields: dict[str, TransformField] | None = None


GroupMembers = Annotated[list[Ident], Field(min_length=1)]


class PackModel(_Strict):
    """The whole pack after merging its files."""

    pack: Ident
    version: Text
    description: str = ""
    # The organisation whose privacy officer may decide re-identification requests on any
    # signal of the pack, beside the officer of the organisation whose signal it is.
    covenant_privacy_officer: Ident | None = None
    organisations: Annotated[dict[Ident, Organisation], Field(min_length=1)]
    groups: dict[Ident, GroupMembers] = Field(default_factory=dict)
    legal_bases: dict[Ident, LegalBasis]
    purposes: dict[Ident, Purpose]
    categories: dict[Ident, Category]
    rules: list[Rule] = Field(default_factory=list)
    tests: list[PackTest] = Field(default_factory=list)
