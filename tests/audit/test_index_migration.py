"""Migration 0008 fills in the blind index's envelope from the signals, on SQLite and
PostgreSQL, and goes down and up again without losing a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select, text

from broker import migrate
from broker.clock import as_utc
from broker.models import signal, signal_index

NOW = datetime(2026, 11, 29, 10, 30, 15, 123456, tzinfo=UTC)


def _signal(n: int, category: str, basis: str, erased: bool = False) -> dict[str, object]:
    return {"id": f"sig_{n}", "source": "politie", "category": category, "legal_basis": basis,
            "subject_type": "person", "observed_at": NOW - timedelta(days=n),
            "received_at": NOW, "retention_until": NOW + timedelta(days=700), "key_version": 1,
            "wrapped_key": None if erased else b"k", "ciphertext": None if erased else b"c",
            "erased_at": NOW if erased else None, "created_by": "cl_x"}


def test_the_index_envelope_is_filled_in_and_survives_down_and_up(engine: Engine) -> None:
    migrate.downgrade(engine, "0007")
    signals = [_signal(1, "drugsgerelateerde-melding", "wpg-art-16"),
               _signal(2, "hennepteelt-vermoeden", "wpg-art-19"),
               _signal(3, "drugsgerelateerde-melding", "wpg-art-20", erased=True)]
    with engine.begin() as conn:
        conn.execute(insert(signal), signals)
        for n in (1, 2, 3):
            for token in (b"a" * 32, bytes([n]) * 32):
                conn.execute(text("INSERT INTO signal_index (token, signal_id) VALUES (:t, :s)"),
                             {"t": token, "s": f"sig_{n}"})
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as conn:
        rows = conn.execute(select(signal_index).order_by(
            signal_index.c.signal_id, signal_index.c.token)).all()
    by_id = {s["id"]: s for s in signals}
    # The erased signal's rows are gone; the others carry their signal's envelope.
    assert sorted({r.signal_id for r in rows}) == ["sig_1", "sig_2"] and len(rows) == 4
    for row in rows:
        stored = by_id[row.signal_id]
        assert (row.category, row.source, row.legal_basis) == (
            stored["category"], stored["source"], stored["legal_basis"])
        assert as_utc(row.observed_at) == stored["observed_at"]
    migrate.downgrade(engine, "0007")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM signal_index")).scalar_one() == 4
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(select(signal_index).order_by(
            signal_index.c.signal_id, signal_index.c.token)).all() == rows
