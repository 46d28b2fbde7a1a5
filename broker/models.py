"""The broker's tables (SQLAlchemy Core, on the shared `SQLModel.metadata`), all but the
audit log's (`broker.audit.tables`). Schema changes go through alembic only; a test holds
the migrated schema to these definitions on both databases.

Signals hold no clear personal data: the payload is AES-256-GCM ciphertext under a
per-signal data key, and identifiers are findable only through keyed blind-index tokens.
The disclosure and re-identification tables hold only what a later re-identification
needs, never a value:

- `disclosure_pseudonym`: one row per pseudonymised field a disclosure released (which
  recipient got which `ref` and field path, standing for which signal, under which rule).
  Disclosures without a pseudonymised field write no row here.
- `reidentification`: a recipient's request to see the clear value behind one of those
  pseudonyms, the privacy officer's decision and the one-time reveal. The free-text
  justification and decision reason are sealed (they may hold personal data), never in the
  audit log.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import SQLModel

TZ = DateTime(timezone=True)
METADATA = SQLModel.metadata

client = Table(
    "client",
    METADATA,
    Column("id", String(40), primary_key=True),
    Column("org", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # system | personal
    Column("roles", String(200), nullable=False),  # comma-separated, sorted
    Column("secret_hash", String(400), nullable=True),
    Column("public_jwk", Text, nullable=True),  # JSON text of the client's public key
    Column("created_at", TZ, nullable=False),
    Column("revoked_at", TZ, nullable=True),
)
"""A credential of one organisation, with roles."""

assertion_jti = Table(
    "assertion_jti",
    METADATA,
    Column("client_id", String(40), primary_key=True),
    Column("jti", String(200), primary_key=True),
    Column("expires_at", TZ, nullable=False, index=True),
)
"""Client-assertion ids already used (RFC 7523 section 3: single use)."""

_LIVE = text("erased_at IS NULL")
"""Partial indexes of live signals: shredded rows (`erased_at` set) stay out of them."""

signal = Table(
    "signal",
    METADATA,
    Column("id", String(40), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("category", String(64), nullable=False),
    Column("legal_basis", String(64), nullable=False),
    Column("subject_type", String(16), nullable=False),
    Column("observed_at", TZ, nullable=False),
    Column("received_at", TZ, nullable=False),
    Column("retention_until", TZ, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("ciphertext", LargeBinary, nullable=True),
    Column("erased_at", TZ, nullable=True),
    Column("created_by", String(40), nullable=False),
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
"""One fact about one subject; the payload is sealed, the envelope is clear."""

signal_index = Table(
    "signal_index",
    METADATA,
    Column("token", LargeBinary, primary_key=True),
    Column("signal_id", String(40), ForeignKey("signal.id"), primary_key=True, index=True),
    # The signal's envelope as a rule keys it (0008): a request seeks exactly the
    # (token, category, source, legal basis) its rules reach, from the oldest observation
    # they accept, and never reads a row it may not see.
    Column("category", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("legal_basis", String(64), nullable=False),
    Column("observed_at", TZ, nullable=False),
    Index("ix_signal_index_reach", "token", "category", "source", "legal_basis",
          "observed_at", "signal_id"),
)
"""Blind-index tokens (keyed HMAC of normalised identifiers) pointing at live signals, with
the envelope their rules are keyed by; erasure deletes a signal's rows."""

idempotency_record = Table(
    "idempotency_record",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("client_id", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("route", String(100), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", TZ, nullable=False, index=True),
    UniqueConstraint("client_id", "key"),
)
"""The first answer to a POST with an `Idempotency-Key`, sealed like a payload."""

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

policy_version = Table(
    "policy_version",
    METADATA,
    Column("hash", String(80), primary_key=True),
    Column("pack", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    Column("canonical", Text, nullable=False),
    Column("first_loaded_at", TZ, nullable=False),
)
"""Every pack ever loaded, by content hash, so a rule can be read years later."""

policy_load = Table(
    "policy_load",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("hash", String(80), ForeignKey("policy_version.hash"), nullable=False),
    Column("loaded_at", TZ, nullable=False, index=True),
    Column("loaded_by", String(100), nullable=False),
)
"""One event of a pack becoming live."""

disclosure_pseudonym = Table(
    "disclosure_pseudonym",
    METADATA,
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
    METADATA,
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

key_version = Table(
    "key_version",
    METADATA,
    Column("name", String(32), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kek_id", String(32), primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", TZ, nullable=False),
)
"""The key ring: every version of every key, wrapped (AES-256-GCM) under a key-encryption
key that each node reads from its `BROKER_KEK_FILE`; a version is wrapped under each KEK
in force (two while one is being rotated), never stored in clear."""

brake_failure = Table(
    "brake_failure",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_brake_failure_key_at", "key", "at"),
)
"""Failed sign-ins and token requests of the last minute, by keyed hash of what they were
counted under (a client id, an address): the brakes of every process of a deployment."""

session_end = Table(
    "session_end",
    METADATA,
    Column("session_id", String(64), primary_key=True),
    Column("expires_at", Integer, nullable=False, index=True),
)
"""Officer sessions signed out before they lapse: refused on every node."""

request_journal = Table(
    "request_journal",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("at", TZ, nullable=False),
    Column("kind", String(16), nullable=False),  # disclosure | hit | area_summary
    Column("recipient", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("lookup", String(16), nullable=False),  # subject | address | pc4 | pc6 | signals
    Column("token", LargeBinary, nullable=True),
    Column("signal_ids", Text, nullable=True),  # comma-separated, for a query by ids
    Column("categories", Text, nullable=True),  # comma-separated, the query's narrowing
    Index("ix_request_journal_at", "at"),
)
"""What each accountable request asked, in the blind form the signal index uses (a keyed
token, or signal ids), with its recipient, purpose and time: what `broker policy impact`
replays. No clear identifier, case reference, client or acting person; kept for
`BROKER_REPLAY_DAYS`."""
