"""Disclosures and re-identification: pseudonyms given out, and requests to reveal them.

`disclosure_pseudonym` records, per disclosure, which pseudonymised field a recipient got
under which signal reference (no values); `reidentification` holds the requests, the
privacy officer's decision and the one-time reveal, with the free-text justification
sealed. Both are ordinary (erasable) tables: on PostgreSQL they get `sluis_app`'s ordinary
rights through the default privileges set in 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "disclosure_pseudonym",
        sa.Column("disclosure_id", sa.String(40), primary_key=True),
        sa.Column("ref", sa.String(40), primary_key=True),
        sa.Column("path", sa.String(200), primary_key=True),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("signal_id", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "reidentification",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("disclosure_id", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(40), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("signal_id", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("person_tag", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("decided_by_client", sa.String(40), nullable=True),
        sa.Column("decided_by_org", sa.String(64), nullable=True),
        sa.Column("decided_at", TZ, nullable=True),
        sa.Column("revealed_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index(
        "ix_reidentification_org_created", "reidentification", ["org", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_reidentification_org_created", table_name="reidentification")
    op.drop_table("reidentification")
    op.drop_table("disclosure_pseudonym")
