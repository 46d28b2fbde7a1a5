"""Tables of disclosures and re-identification requests (SQLAlchemy Core, shared metadata).

The audit log is the record of what was disclosed; these tables hold only what a later
re-identification needs, and never a value:

- `disclosure_pseudonym`: one row per pseudonymised field a disclosure released (which
  recipient got which `ref` and field path, standing for which signal, under which rule).
  Disclosures without a pseudonymised field write no row here.
- `reidentification`: a recipient's request to see the clear value behind one of those
  pseudonyms, the privacy officer's decision and the one-time reveal. The free-text
  justification and decision reason are sealed (they may hold personal data), never in the
  audit log.

Migration 0003 creates both.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, DateTime, Index, Integer, LargeBinary, String, Table
from sqlmodel import SQLModel

TZ = DateTime(timezone=True)

disclosure_pseudonym = Table(
    "disclosure_pseudonym",
    SQLModel.metadata,
    Column("disclosure_id", String(40), primary_key=True),
    Column("ref", String(40), primary_key=True),
    Column("path", String(200), primary_key=True),
    Column("org", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("signal_id", String(40), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("created_at", TZ, nullable=False),
)

reidentification = Table(
    "reidentification",
    SQLModel.metadata,
    Column("id", String(40), primary_key=True),
    Column("disclosure_id", String(40), nullable=False),
    Column("ref", String(40), nullable=False),
    Column("path", String(200), nullable=False),
    Column("signal_id", String(40), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("org", String(64), nullable=False),
    Column("client_id", String(40), nullable=False),
    Column("person_tag", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    # Justification and decision reason, sealed together under the record's own data key.
    Column("key_version", Integer, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("ciphertext", LargeBinary, nullable=True),
    Column("decided_by_client", String(40), nullable=True),
    Column("decided_by_org", String(64), nullable=True),
    Column("decided_at", TZ, nullable=True),
    Column("revealed_at", TZ, nullable=True),
    Column("created_at", TZ, nullable=False),
    Index("ix_reidentification_org_created", "org", "created_at"),
    Index("ix_reidentification_created", "created_at", "id"),
    Index("ix_reidentification_status_created", "status", "created_at", "id"),
)

STATUSES: Final = ("pending", "approved", "refused", "revealed")
