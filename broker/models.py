"""Tables of the broker (SQLModel). Schema changes go through alembic only.

Signals hold no clear personal data: the payload is AES-256-GCM ciphertext
under a per-signal data key, and identifiers are findable only through
keyed blind-index tokens. Audit tables are defined in `broker.audit.tables`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

TZ = DateTime(timezone=True)


class Client(SQLModel, table=True):
    """A credential of one organisation, with roles."""

    __tablename__ = "client"

    id: str = Field(primary_key=True, max_length=40)
    org: str = Field(max_length=64, index=True)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)  # system | personal
    roles: str = Field(max_length=200)  # comma-separated, sorted
    secret_hash: str | None = Field(default=None, max_length=400)
    public_jwk: str | None = Field(default=None)  # JSON text of the client's public key
    created_at: datetime = Field(sa_type=TZ)
    revoked_at: datetime | None = Field(default=None, sa_type=TZ)


class AssertionJti(SQLModel, table=True):
    """Client-assertion ids already used (RFC 7523 section 3: single use)."""

    __tablename__ = "assertion_jti"

    client_id: str = Field(primary_key=True, max_length=40)
    jti: str = Field(primary_key=True, max_length=200)
    expires_at: datetime = Field(index=True, sa_type=TZ)


_LIVE = text("erased_at IS NULL")
"""Partial indexes of live signals: shredded rows (`erased_at` set) stay out of them."""


class Signal(SQLModel, table=True):
    """One fact about one subject; the payload is sealed, the envelope is clear."""

    __tablename__ = "signal"
    __table_args__ = (
        # The organisation's live signals newest first, without its erased (shredded) rows
        # and without a sort (0006; it replaces `ix_signal_source_received`).
        Index("ix_signal_live_source_received", "source", "received_at", "id",
              sqlite_where=_LIVE, postgresql_where=_LIVE),
        # The same of one category, for the list filtered by it (0007).
        Index("ix_signal_live_source_category_received", "source", "category", "received_at",
              "id", sqlite_where=_LIVE, postgresql_where=_LIVE),
        # Live signals by retention date: the retention run passes shredded ones by (0007;
        # it replaces `ix_signal_retention_until`).
        Index("ix_signal_live_retention", "retention_until", sqlite_where=_LIVE,
              postgresql_where=_LIVE),
    )

    id: str = Field(primary_key=True, max_length=40)
    source: str = Field(max_length=64)
    category: str = Field(max_length=64)
    legal_basis: str = Field(max_length=64)
    subject_type: str = Field(max_length=16)
    observed_at: datetime = Field(sa_type=TZ)
    received_at: datetime = Field(sa_type=TZ)
    retention_until: datetime = Field(sa_type=TZ)
    key_version: int
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    ciphertext: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    erased_at: datetime | None = Field(default=None, sa_type=TZ)
    created_by: str = Field(max_length=40)


class SignalIndex(SQLModel, table=True):
    """Blind-index tokens (keyed HMAC of normalised identifiers) pointing at signals."""

    __tablename__ = "signal_index"

    token: bytes = Field(sa_column=Column(LargeBinary, primary_key=True))
    signal_id: str = Field(primary_key=True, foreign_key="signal.id", max_length=40, index=True)


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a POST with an `Idempotency-Key`, sealed like a payload."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("client_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=40)
    key: str = Field(max_length=200)
    route: str = Field(max_length=100)
    request_hash: str = Field(max_length=64)
    status_code: int
    key_version: int
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(index=True, sa_type=TZ)


idempotency_signal = Table(
    "idempotency_signal",
    SQLModel.metadata,
    Column("client_id", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("signal_id", String(40), primary_key=True),
    Index("ix_idempotency_signal_signal_id", "signal_id"),
)
"""The signals a stored first answer mentions: erasing one deletes the answer (0004)."""


legal_hold = Table(
    "legal_hold",
    SQLModel.metadata,
    Column("signal_id", String(40), primary_key=True),
    Column("org", String(64), nullable=False),  # the signal's source (0006)
    Column("case_reference", String(64), nullable=False),
    Column("placed_by", String(40), nullable=False),
    Column("placed_at", TZ, nullable=False),
    Index("ix_legal_hold_org_placed", "org", "placed_at", "signal_id"),
)
"""Signals kept from erasure while a case needs them (0005), by their organisation."""


class PolicyVersion(SQLModel, table=True):
    """Every pack ever loaded, by content hash, so a rule can be read years later."""

    __tablename__ = "policy_version"

    hash: str = Field(primary_key=True, max_length=80)
    pack: str = Field(max_length=200)
    version: str = Field(max_length=100)
    canonical: str
    first_loaded_at: datetime = Field(sa_type=TZ)


class PolicyLoad(SQLModel, table=True):
    """One event of a pack becoming live."""

    __tablename__ = "policy_load"

    id: int | None = Field(default=None, primary_key=True)
    hash: str = Field(foreign_key="policy_version.hash", max_length=80)
    loaded_at: datetime = Field(index=True, sa_type=TZ)
    loaded_by: str = Field(max_length=100)
