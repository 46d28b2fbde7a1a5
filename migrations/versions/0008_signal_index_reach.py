"""The blind index carries each signal's envelope, so a request reads only what it may see.

A hit check or disclosure found every signal under the subject's token, of the categories
it could receive, and decided each by its rule afterwards: the time of its answer grew with
signals of other sources, legal bases and ages that it may not see, and so told of them.
The index now holds each signal's category, source, legal basis and observation time, and
a request seeks exactly the (token, category, source, legal basis) of its rules, from the
oldest observation each accepts. Existing rows are filled in from their signals; rows of
signals erased or gone (never written by the broker, which deletes them on erasure) are
dropped.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("category", sa.String(64)),
    ("source", sa.String(64)),
    ("legal_basis", sa.String(64)),
    ("observed_at", sa.DateTime(timezone=True)),
)
REACH = ["token", "category", "source", "legal_basis", "observed_at", "signal_id"]


def upgrade() -> None:
    op.execute("DELETE FROM signal_index WHERE signal_id NOT IN "
               "(SELECT id FROM signal WHERE erased_at IS NULL)")
    for name, kind in COLUMNS:
        op.add_column("signal_index", sa.Column(name, kind, nullable=True))
    op.execute(
        "UPDATE signal_index SET"
        " category = (SELECT s.category FROM signal s WHERE s.id = signal_index.signal_id),"
        " source = (SELECT s.source FROM signal s WHERE s.id = signal_index.signal_id),"
        " legal_basis = (SELECT s.legal_basis FROM signal s WHERE s.id = signal_index.signal_id),"
        " observed_at = (SELECT s.observed_at FROM signal s WHERE s.id = signal_index.signal_id)"
    )
    with op.batch_alter_table("signal_index") as batch:
        for name, kind in COLUMNS:
            batch.alter_column(name, existing_type=kind, nullable=False)
    op.create_index("ix_signal_index_reach", "signal_index", REACH)


def downgrade() -> None:
    op.drop_index("ix_signal_index_reach", table_name="signal_index")
    with op.batch_alter_table("signal_index") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
