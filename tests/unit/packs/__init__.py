"""Small policy packs for the unit tests, built as data so each test can bend one thing."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from broker.core.policy import Pack, load_pack_from_text

_BASE: dict[str, Any] = {
    "pack": "klein",
    "version": "1",
    "description": "A small pack for tests",
    "organisations": {
        "gemeente": {"name": "Gemeente"},
        "politie": {"name": "Politie"},
        "netbeheerder": {"name": "Netbeheerder"},
        "riec": {"name": "RIEC"},
    },
    "groups": {"convenant": ["gemeente", "politie", "riec"]},
    "legal_bases": {
        "elektriciteitswet": {"title": "Elektriciteitswet 1998"},
        "wpg-art-16": {"title": "Wpg art. 16", "criminal_data": True,
                       "allowed_recipients": ["gemeente", "riec"]},
        "wpg-art-20": {"title": "Wpg art. 20", "criminal_data": True,
                       "allowed_recipients": ["convenant"]},
    },
    "purposes": {
        "integrale-controle": {"title": "Integrale controle", "requires_case_reference": True},
        "ondermijningsbeeld": {"title": "Ondermijningsbeeld"},
    },
    "categories": {
        "energie-afwijking": {
            "title": "Afwijkend stroomverbruik",
            "subject_types": ["address"],
            "contributors": ["netbeheerder"],
            "legal_bases": ["elektriciteitswet"],
            "retention_days": 365,
            "attributes": {
                "kwh_per_month": {"type": "number", "min": 0},
                "meter_seal_broken": {"type": "boolean"},
            },
        },
        "drugs-melding": {
            "title": "Drugsmelding",
            "subject_types": ["person"],
            "contributors": ["politie"],
            "legal_bases": ["wpg-art-16", "wpg-art-20"],
            "retention_days": 730,
            "attributes": {"ernst": {"type": "enum", "values": ["laag", "hoog"]}},
        },
    },
    "rules": [
        {
            "id": "gemeente-energie",
            "description": "Gemeente ziet stroomafwijkingen",
            "recipients": ["gemeente"],
            "purposes": ["integrale-controle"],
            "categories": ["energie-afwijking"],
            "access": "disclose",
            "fields": {
                "location.postcode": "reveal",
                "observed_at": {"generalise": "month"},
                "attributes.kwh_per_month": {"generalise": {"bucket": 500}},
            },
        },
        {
            "id": "gemeente-drugs",
            "description": "Gemeente ziet drugsmeldingen met pseudoniem",
            "recipients": ["gemeente"],
            "purposes": ["integrale-controle"],
            "categories": ["drugs-melding"],
            "legal_bases": ["wpg-art-16"],
            "access": "disclose",
            "fields": {"subject.bsn": "pseudonymise", "attributes.ernst": "reveal"},
        },
        {
            "id": "riec-beeld",
            "description": "RIEC telt signalen",
            "recipients": ["riec"],
            "purposes": ["ondermijningsbeeld"],
            "categories": ["energie-afwijking", "drugs-melding"],
            "access": "aggregate",
        },
    ],
}

CATALOGUE_KEYS = ("organisations", "groups", "legal_bases", "purposes", "categories")


def base_pack() -> dict[str, Any]:
    """A fresh deep copy of the small valid pack, to be bent by one test."""
    return copy.deepcopy(_BASE)


def as_files(data: dict[str, Any]) -> dict[str, str]:
    """The pack as three files: pack.yaml, catalogue.yaml and rules.yaml."""
    head = {k: v for k, v in data.items() if k not in CATALOGUE_KEYS and k not in ("rules",
                                                                                   "tests")}
    catalogue = {k: data[k] for k in CATALOGUE_KEYS if k in data}
    rules = {k: data[k] for k in ("rules", "tests") if k in data}
    return {
        "pack.yaml": yaml.safe_dump(head, sort_keys=False, allow_unicode=True),
        "catalogue.yaml": yaml.safe_dump(catalogue, sort_keys=False, allow_unicode=True),
        "rules.yaml": yaml.safe_dump(rules, sort_keys=False, allow_unicode=True),
    }


def load(data: dict[str, Any]) -> Pack:
    return load_pack_from_text(as_files(data))
