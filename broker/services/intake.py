"""Signal intake: a submitted signal checked against its category and normalised.

`prepare` validates one signal against the live pack (category, contributor, legal basis,
subject type and identifiers, location, attributes, time) and names every problem at
once; it returns the payload to seal and the normalised values for the blind index.
Nothing here writes: `broker.services.signals` seals and stores what this prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from broker.clock import as_utc, utcnow
from broker.core import identifiers
from broker.core.policy.load import Pack
from broker.errors import FieldProblem, ValidationFailed
from broker.schemas import SignalIn

# The one identifier each subject type must carry, and the fields it may carry.
_REQUIRED_ID = {"person": "bsn", "company": "kvk", "vehicle": "plate", "address": None}
_ALLOWED = {
    "person": {"bsn", "name", "birthdate"},
    "company": {"kvk", "name"},
    "vehicle": {"plate"},
    "address": {"bag_id"},
}
_FUTURE_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class Prepared:
    """A validated, normalised signal ready to be sealed and stored."""

    payload: dict[str, Any]
    observed_at: datetime
    index: dict[str, str]  # blind-index kind -> normalised value
    subject_kind: str  # the index kind that names the subject


def _check_subject(
    body: SignalIn, loc: tuple[str | int, ...]
) -> tuple[dict[str, Any], list[FieldProblem]]:
    subject = body.subject
    given = {k for k, v in subject.model_dump(exclude={"type"}).items() if v is not None}
    problems = [
        FieldProblem((*loc, "subject", name), f"not a field of a {subject.type} subject")
        for name in sorted(given - _ALLOWED[subject.type])
    ]
    required = _REQUIRED_ID[subject.type]
    if required and required not in given:
        problems.append(FieldProblem((*loc, "subject", required), "Field required."))
    out: dict[str, Any] = {"type": subject.type}
    checks: dict[str, tuple[Callable[[str], str | None], str]] = {
        "bsn": (lambda v: v if identifiers.is_valid_bsn(v) else None, "not a valid BSN"),
        "kvk": (lambda v: v if identifiers.is_valid_kvk(v) else None, "not a valid KvK number"),
        "plate": (identifiers.normalise_plate, "not a valid licence plate"),
        "bag_id": (lambda v: v if identifiers.is_valid_bag_id(v) else None, "not a valid BAG id"),
    }
    for name in ("bsn", "kvk", "plate", "bag_id"):
        value = getattr(subject, name)
        if value is None or name not in _ALLOWED[subject.type]:
            continue
        normalise, message = checks[name]
        normalised = normalise(value)
        if normalised is None:
            problems.append(FieldProblem((*loc, "subject", name), message))
        else:
            out[name] = normalised
    if subject.name is not None:
        out["name"] = subject.name
    if subject.birthdate is not None:
        out["birthdate"] = subject.birthdate.isoformat()
    return out, problems


def _check_location(
    body: SignalIn, loc: tuple[str | int, ...]
) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    if body.location is None:
        if body.subject.type == "address" and body.subject.bag_id is None:
            return None, [
                FieldProblem((*loc, "location"), "an address needs a bag_id or a location")
            ]
        return None, []
    location = body.location.model_dump(exclude_none=True)
    problems = []
    if "postcode" in location:
        postcode = identifiers.normalise_postcode(location["postcode"])
        if postcode is None:
            problems.append(FieldProblem((*loc, "location", "postcode"), "not a postcode (1234AB)"))
        else:
            location["postcode"] = postcode
    if "house_letter" in location:
        location["house_letter"] = location["house_letter"].upper()
    if (
        body.subject.type == "address"
        and body.subject.bag_id is None
        and not ("postcode" in location and "house_number" in location)
    ):
        problems.append(
            FieldProblem((*loc, "location"), "an address needs a bag_id or a postcode and number")
        )
    return location, problems


def _index_values(subject: dict[str, Any], location: dict[str, Any] | None) -> dict[str, str]:
    index: dict[str, str] = {
        k: subject[k] for k in ("bsn", "kvk", "plate", "bag_id") if k in subject
    }
    if location and "postcode" in location:
        index["pc6"] = location["postcode"]
        index["pc4"] = location["postcode"][:4]
        if "house_number" in location:
            index["address"] = address_key(
                location["postcode"],
                location["house_number"],
                location.get("house_letter"),
                location.get("addition"),
            )
    return index


def address_key(postcode: str, number: int, letter: str | None, addition: str | None) -> str:
    """The normalised form of an address for the blind index."""
    return "|".join([postcode, str(number), (letter or "").upper(), (addition or "").upper()])


def prepare(
    pack: Pack, org: str, body: SignalIn, loc: tuple[str | int, ...] = ("body",)
) -> Prepared:
    """Validate one signal against the pack; ValidationFailed names every problem."""
    problems: list[FieldProblem] = []
    category = pack.category(body.category)
    if category is None:
        raise ValidationFailed(
            "Unknown category.", errors=[FieldProblem((*loc, "category"), "unknown category")]
        )
    if org not in category.contributors:
        problems.append(
            FieldProblem((*loc, "category"), "your organisation may not contribute this category")
        )
    if body.legal_basis not in category.legal_bases:
        problems.append(FieldProblem((*loc, "legal_basis"), "not a legal basis of this category"))
    if body.subject.type not in category.subject_types:
        problems.append(
            FieldProblem((*loc, "subject", "type"), "subject type does not fit the category")
        )
    subject, subject_problems = _check_subject(body, loc)
    location, location_problems = _check_location(body, loc)
    problems += subject_problems + location_problems
    problems += [
        FieldProblem((*loc, "attributes", name), message)
        for name, message in category.check_attributes(body.attributes)
    ]
    if body.observed_at > utcnow() + _FUTURE_SLACK:
        problems.append(FieldProblem((*loc, "observed_at"), "lies in the future"))
    if problems:
        raise ValidationFailed("The signal is not valid; see `errors`.", errors=problems)
    payload = {
        "category": body.category,
        "legal_basis": body.legal_basis,
        "subject": subject,
        "location": location,
        "observed_at": body.observed_at.isoformat(),
        "description": body.description,
        "attributes": dict(body.attributes),
    }
    index = _index_values(subject, location)
    kind = _REQUIRED_ID[subject["type"]] or ("bag_id" if "bag_id" in subject else "address")
    return Prepared(payload, as_utc(body.observed_at), index, kind)


def prepare_all(
    pack: Pack, org: str, bodies: Sequence[SignalIn], *, batch: bool = True
) -> list[Prepared]:
    """Validate a batch; one ValidationFailed naming every failing index."""
    prepared: list[Prepared] = []
    problems: list[FieldProblem] = []
    for position, body in enumerate(bodies):
        loc: tuple[str | int, ...] = ("body", "signals", position) if batch else ("body",)
        try:
            prepared.append(prepare(pack, org, body, loc))
        except ValidationFailed as exc:
            problems.extend(exc.errors)
    if problems:
        raise ValidationFailed("Some signals are not valid; nothing was stored.", errors=problems)
    return prepared
