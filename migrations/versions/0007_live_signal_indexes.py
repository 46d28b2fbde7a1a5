"""Indexes of live signals for the retention run and the category-filtered signal list.

The retention run looked for signals past their retention date in an index of every
signal, shredded ones included: each run walked every signal ever shredded by retention
(their dates stay past) before the few due now. The signal list filtered by category
walked all the organisation's live signals for those of the category. Both now read an
index of live signals only, keyed as they ask.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("erased_at IS NULL")


def upgrade() -> None:
    op.drop_index("ix_signal_retention_until", table_name="signal")
    op.create_index("ix_signal_live_retention", "signal", ["retention_until"],
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("ix_signal_live_source_category_received", "signal",
                    ["source", "category", "received_at", "id"],
                    sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index("ix_signal_live_source_category_received", table_name="signal")
    op.drop_index("ix_signal_live_retention", table_name="signal")
    op.create_index("ix_signal_retention_until", "signal", ["retention_until"])
