"""Synthetic demo data for the demo pack: a fictional problem street and its signals.

Everything here is invented: the street, the people (with BSNs that pass the
eleven test but belong to nobody we know of), companies, plates and events.
Attributes are generated from each category's schema, so the data follows
the live pack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from broker.core.identifiers import valid_bsn_from
from broker.core.policy.load import Pack
from broker.core.policy.model import AttributeSpec, Category

STREET = "Kanaalstraat"
CITY = "Zuidhaven"
POSTCODES = ("3072AB", "3072AC", "3072AD")
FIRST_NAMES = (
    "Sem",
    "Noa",
    "Daan",
    "Lotte",
    "Milan",
    "Yara",
    "Finn",
    "Sara",
    "Bram",
    "Iris",
    "Levi",
    "Fleur",
)
LAST_NAMES = (
    "de Vries",
    "Jansen",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Peters",
)
COMPANIES = (
    "Kapsalon Kanaal",
    "Belwinkel De Brug",
    "Shisha Lounge Haven",
    "Autoverhuur Zuid",
    "Minimarkt Kanaalstraat",
    "Nagelstudio Lila",
)


@dataclass(frozen=True)
class Street:
    """The invented neighbourhood: addresses, residents, companies, vehicles."""

    addresses: list[dict[str, Any]]
    persons: list[dict[str, Any]]
    companies: list[dict[str, Any]]
    vehicles: list[str]


def build_street(rng: random.Random) -> Street:
    addresses = []
    for number in range(1, 37):
        postcode = POSTCODES[(number - 1) // 12]
        addresses.append(
            {
                "bag_id": f"0599010000{number:06d}",
                "location": {
                    "postcode": postcode,
                    "house_number": number,
                    "street": STREET,
                    "city": CITY,
                },
            }
        )
    persons = []
    for i in range(12):
        birth = date(1960, 1, 1) + timedelta(days=rng.randrange(0, 365 * 40))
        persons.append(
            {
                "bsn": valid_bsn_from(100_000 + i * 7919),
                "name": f"{FIRST_NAMES[i]} {LAST_NAMES[i]}",
                "birthdate": birth.isoformat(),
                "home": addresses[rng.randrange(len(addresses))],
            }
        )
    companies = [
        {"kvk": f"{90000000 + i * 1237:08d}", "name": name, "home": addresses[3 + i * 5]}
        for i, name in enumerate(COMPANIES)
    ]
    vehicles = ["GXR12B", "VLK45T", "SNB903", "KPT77Z", "HZ318N"]
    return Street(addresses, persons, companies, vehicles)


def _attribute(rng: random.Random, spec: AttributeSpec) -> Any:
    low = spec.min if spec.min is not None else 0
    high = spec.max if spec.max is not None else max(low * 4, 5000)
    if spec.type == "integer":
        return rng.randint(int(low), int(min(high, low + 40)))
    if spec.type == "number":
        return round(rng.uniform(float(low), float(high)))
    if spec.type == "boolean":
        return rng.random() < 0.5
    if spec.type == "enum":
        return rng.choice(spec.values or ["onbekend"])
    if spec.type == "date":
        return (date(2024, 1, 1) + timedelta(days=rng.randrange(0, 600))).isoformat()
    if spec.type == "datetime":
        return datetime(2026, 10, rng.randint(1, 28), 10, 0).isoformat() + "+01:00"
    return "demo"[: spec.max_length or 4]


def _attributes(rng: random.Random, category: Category) -> dict[str, Any]:
    return {
        name: _attribute(rng, spec)
        for name, spec in category.attributes.items()
        if spec.required or rng.random() < 0.6
    }


def _subject(
    rng: random.Random, street: Street, subject_type: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if subject_type == "address":
        address = rng.choice(street.addresses)
        return {"type": "address", "bag_id": address["bag_id"]}, dict(address["location"])
    if subject_type == "person":
        person = rng.choice(street.persons)
        subject = {
            "type": "person",
            "bsn": person["bsn"],
            "name": person["name"],
            "birthdate": person["birthdate"],
        }
        return subject, dict(person["home"]["location"])
    if subject_type == "company":
        company = rng.choice(street.companies)
        return {"type": "company", "kvk": company["kvk"], "name": company["name"]}, dict(
            company["home"]["location"]
        )
    return {"type": "vehicle", "plate": rng.choice(street.vehicles)}, None


DESCRIPTIONS = {
    "energie-afwijking": "Verbruik sterk boven profiel sinds de laatste meteropname",
    "hennepteelt-vermoeden": "Warmte en geurmelding, ramen afgeplakt",
    "drugsgerelateerde-melding": "Betrokkene meermaals gezien bij overdrachten",
    "onrechtmatige-bewoning": "Wisselende bewoners, naam op de bel ontbreekt",
    "inschrijving-brp-afwijking": "Meer ingeschrevenen dan de woning kan huisvesten",
    "fiscale-schuld": "Dwanginvordering loopt, geen betalingsregeling",
    "voertuig-op-naam-bedrijf": "Dure auto op naam van een bedrijf zonder omzet",
    "bedrijfsvestiging-risico": "Weinig klanten, veel contant geld, snelle eigenaarswisselingen",
    "milieu-overtreding": "Vaten met onbekende chemicaliën in de achtertuin",
    "overlast-melding": "Buurtbewoners melden af- en aanloop tot laat in de nacht",
}


def demo_signals(
    pack: Pack, *, seed: int = 2026, per_category: int = 5, now: datetime | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(source organisation, signal body) pairs for every category of the pack."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    street = build_street(rng)
    now = now or datetime.now().astimezone()
    out: list[tuple[str, dict[str, Any]]] = []
    for category_id, category in sorted(pack.categories.items()):
        for i in range(per_category):
            source = category.contributors[i % len(category.contributors)]
            subject_type = category.subject_types[i % len(category.subject_types)]
            subject, location = _subject(rng, street, subject_type)
            body: dict[str, Any] = {
                "category": category_id,
                "legal_basis": category.legal_bases[i % len(category.legal_bases)],
                "subject": subject,
                "observed_at": (
                    now - timedelta(days=rng.randrange(1, 120), hours=rng.randrange(0, 12))
                ).isoformat(timespec="seconds"),
                "description": DESCRIPTIONS.get(category_id, "Waarneming in het aandachtsgebied"),
                "attributes": _attributes(rng, category),
            }
            if location is not None:
                body["location"] = location
            out.append((source, body))
    return out
