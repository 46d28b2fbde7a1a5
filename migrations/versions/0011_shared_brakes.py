"""Sign-outs and the sign-in and token brakes are shared by every process of a deployment:
a session signed out at one node was valid at another for up to its eight hours, and each
process braked guesses on its own.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "brake_failure",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_brake_failure_key_at", "brake_failure", ["key", "at"])
    op.create_table(
        "session_end",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Integer(), nullable=False),
    )
    op.create_index("ix_session_end_expires_at", "session_end", ["expires_at"])


def downgrade() -> None:
    op.drop_table("session_end")
    op.drop_table("brake_failure")
