"""Core tables: clients, assertion ids, signals, blind index, idempotency, policy history.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "client",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(400), nullable=True),
        sa.Column("public_jwk", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
    )
    op.create_table(
        "assertion_jti",
        sa.Column("client_id", sa.String(40), primary_key=True),
        sa.Column("jti", sa.String(200), primary_key=True),
        sa.Column("expires_at", TZ, nullable=False, index=True),
    )
    op.create_table(
        "signal",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("legal_basis", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("observed_at", TZ, nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("retention_until", TZ, nullable=False, index=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("erased_at", TZ, nullable=True),
        sa.Column("created_by", sa.String(40), nullable=False),
    )
    op.create_index("ix_signal_source_received", "signal", ["source", "received_at"])
    op.create_table(
        "signal_index",
        sa.Column("token", sa.LargeBinary(), primary_key=True),
        sa.Column(
            "signal_id", sa.String(40), sa.ForeignKey("signal.id"), primary_key=True, index=True
        ),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False, index=True),
        sa.UniqueConstraint("client_id", "key"),
    )
    op.create_table(
        "policy_version",
        sa.Column("hash", sa.String(80), primary_key=True),
        sa.Column("pack", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("first_loaded_at", TZ, nullable=False),
    )
    op.create_table(
        "policy_load",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("hash", sa.String(80), sa.ForeignKey("policy_version.hash"), nullable=False),
        sa.Column("loaded_at", TZ, nullable=False, index=True),
        sa.Column("loaded_by", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "policy_load",
        "policy_version",
        "idempotency_record",
        "signal_index",
        "signal",
        "assertion_jti",
        "client",
    ):
        op.drop_table(table)
