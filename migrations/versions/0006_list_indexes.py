"""Indexes for the lists that must not cost more as the log and the queues grow.

The audit entry list filtered by purpose walked the whole log newest first when few
entries matched; the overview's chart read every counted entry ever written to find the
last weeks; the re-identification queue sorted every request on each page; the legal
hold list went through every signal the organisation ever contributed, and the signal
list through the erased ones too. Each now finds its rows in an index of its own: a
hold names its signal's organisation for that, and the signal list's index holds live
signals only (it replaces the one over all of them).

Stop the servers for this upgrade: a process started before it would place holds
without an organisation, which the new column refuses.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_audit_entry_purpose_seq", "audit_entry", ["purpose", "seq"]),
    ("ix_audit_entry_action_time", "audit_entry", ["action", "time"]),
    ("ix_reidentification_created", "reidentification", ["created_at", "id"]),
    ("ix_reidentification_status_created", "reidentification", ["status", "created_at", "id"]),
    ("ix_legal_hold_org_placed", "legal_hold", ["org", "placed_at", "signal_id"]),
)
LIVE = sa.text("erased_at IS NULL")


def upgrade() -> None:
    orphans = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM legal_hold WHERE signal_id NOT IN (SELECT id FROM signal)"
    )).scalar_one()
    if orphans:
        raise RuntimeError(f"{orphans} legal holds name no stored signal; refusing to "
                           "upgrade (a hold's organisation is its signal's source)")
    op.add_column("legal_hold", sa.Column("org", sa.String(64), nullable=True))
    op.execute("UPDATE legal_hold SET org = "
               "(SELECT source FROM signal WHERE signal.id = legal_hold.signal_id)")
    with op.batch_alter_table("legal_hold") as batch:
        batch.alter_column("org", existing_type=sa.String(64), nullable=False)
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.drop_index("ix_signal_source_received", table_name="signal")
    op.create_index("ix_signal_live_source_received", "signal", ["source", "received_at", "id"],
                    sqlite_where=LIVE, postgresql_where=LIVE)


def downgrade() -> None:
    op.drop_index("ix_signal_live_source_received", table_name="signal")
    op.create_index("ix_signal_source_received", "signal", ["source", "received_at"])
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("legal_hold") as batch:
        batch.drop_column("org")
