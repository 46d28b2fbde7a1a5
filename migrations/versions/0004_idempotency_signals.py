"""Which signals each stored Idempotency-Key answer mentions, so erasure can drop it.

A stored first answer may hold a signal's values (sealed under the master key, not the
signal's own key); erasing the signal must take those answers with it, in the same
transaction. `idempotency_signal` maps each record to the signal ids it mentions (random
ids, no personal data), indexed by signal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_signal",
        sa.Column("client_id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("signal_id", sa.String(40), primary_key=True),
    )
    op.create_index("ix_idempotency_signal_signal_id", "idempotency_signal", ["signal_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_signal_signal_id", table_name="idempotency_signal")
    op.drop_table("idempotency_signal")
