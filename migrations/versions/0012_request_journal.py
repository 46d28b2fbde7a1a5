"""The request journal: each accountable request's query in blind form, its recipient,
purpose and time, kept for `BROKER_REPLAY_DAYS` so that a draft pack can be replayed
against what partners asked.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_journal",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("lookup", sa.String(16), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=True),
        sa.Column("signal_ids", sa.Text(), nullable=True),
        sa.Column("categories", sa.Text(), nullable=True),
    )
    op.create_index("ix_request_journal_at", "request_journal", ["at"])


def downgrade() -> None:
    op.drop_table("request_journal")
