"""Legal holds: signals a privacy officer keeps from erasure while a case needs them.

One row per held signal, naming the case (a case number, not free text) and the client
that placed it. Retraction and the retention run leave a held signal alone; lifting the
hold deletes the row. An ordinary (erasable) table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "legal_hold",
        sa.Column("signal_id", sa.String(40), primary_key=True),
        sa.Column("case_reference", sa.String(64), nullable=False),
        sa.Column("placed_by", sa.String(40), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("legal_hold")
