"""Shared pieces of the disclosure tests: signals of the demo pack, entry reads, wiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broker.audit import integrity
from broker.audit.tables import audit_entry, tree_size
from broker.core import cellkey
from broker.core.entry import Entry, decode_entry
from broker.runtime import Runtime

BAG_ID = "0599010000000012"
POSTCODE = "3072AB"
BSN = "111222333"
OTHER_BSN = "123456782"


def recent(days: int = 3) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def energy(bag_id: str = BAG_ID, number: int = 12, postcode: str = POSTCODE,
           kwh: float = 2400, **location: Any) -> dict[str, Any]:
    return {
        "category": "energie-afwijking",
        "legal_basis": "elektriciteitswet-levering",
        "subject": {"type": "address", "bag_id": bag_id},
        "location": {"postcode": postcode, "house_number": number, "street": "Kanaalstraat",
                     "city": "Zuidhaven", **location},
        "observed_at": recent(),
        "description": "Verzegeling verbroken",
        "attributes": {"kwh_per_month": kwh, "meter_seal_broken": True},
    }


def hennep(bag_id: str = BAG_ID, number: int = 12, postcode: str = POSTCODE,
           basis: str = "wpg-art-16") -> dict[str, Any]:
    return {
        "category": "hennepteelt-vermoeden",
        "legal_basis": basis,
        "subject": {"type": "address", "bag_id": bag_id},
        "location": {"postcode": postcode, "house_number": number, "street": "Kanaalstraat"},
        "observed_at": recent(5),
        "description": "Warmtebeeld afwijkend",
        "attributes": {"bron": "warmtebeeld", "geschat_aantal_planten": 240,
                       "ontmanteld": False},
    }


def drugs(bsn: str = BSN, number: int = 12, postcode: str = POSTCODE,
          basis: str = "wpg-art-16") -> dict[str, Any]:
    return {
        "category": "drugsgerelateerde-melding",
        "legal_basis": basis,
        "subject": {"type": "person", "bsn": bsn, "name": "Sem de Vries",
                    "birthdate": "1990-04-02"},
        "location": {"postcode": postcode, "house_number": number},
        "observed_at": recent(2),
        "description": "Overdracht van pakketjes gezien",
        "attributes": {"soort": "handel", "ernst": "midden", "registratienummer": "PL-123"},
    }


def brp(bsn: str = BSN, number: int = 12, postcode: str = POSTCODE) -> dict[str, Any]:
    return {
        "category": "inschrijving-brp-afwijking",
        "legal_basis": "wet-brp-art-3-2",
        "subject": {"type": "person", "bsn": bsn},
        "location": {"postcode": postcode, "house_number": number},
        "observed_at": recent(4),
        "attributes": {"soort": "spookbewoning", "aantal_ingeschrevenen_op_adres": 9,
                       "adres_in_onderzoek": True},
    }


def fiscal(kvk: str = "90001237") -> dict[str, Any]:
    return {
        "category": "fiscale-schuld",
        "legal_basis": "awr-art-67-43c",
        "subject": {"type": "company", "kvk": kvk, "name": "Kapsalon Kanaal"},
        "observed_at": recent(6),
        "attributes": {"soort_belasting": "omzetbelasting", "openstaand_bedrag": 23000,
                       "dwanginvordering": True},
    }


def entry_at(runtime: Runtime, seq: int) -> Entry:
    """The audit entry at `seq`, decoded strictly (canonical bytes, closed schema)."""
    with runtime.engine.connect() as conn:
        data = conn.execute(
            audit_entry.select().with_only_columns(audit_entry.c.bytes)
            .where(audit_entry.c.seq == seq)
        ).scalar_one()
    return decode_entry(bytes(data))


def log_size(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return tree_size(conn)


def entries_since(runtime: Runtime, seq: int) -> list[Entry]:
    return [entry_at(runtime, s) for s in range(seq, log_size(runtime))]


def log_verifies(runtime: Runtime) -> bool:
    report = integrity.verify_live(runtime.engine, runtime.audit.signer)
    return bool(report.ok)


def published_count(runtime: Runtime, signal_ids: list[str], threshold: int = 5) -> int | None:
    """An area summary's count of exactly these signals, as the cell key method publishes
    it under this broker's key (None when suppressed): what an answer must show."""
    secret = runtime.keys.active("blind_index").material
    return cellkey.published_count(secret, signal_ids, threshold)
