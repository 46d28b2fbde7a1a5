"""Stored checkpoints strictly grow in size, enforced by the database.

Every node of a deployment stores the checkpoints it signs in one table; a signer that
lost its leadership, or one that read an old size, could store a checkpoint smaller than
the latest, and a client polling two nodes saw the log shrink. A trigger now refuses any
checkpoint smaller than the largest stored one, or of the same size with another root;
the same head signed again (under a rotated checkpoint key) is the one checkpoint that
does not grow. On PostgreSQL the trigger first takes a transaction lock, so two
concurrent inserts cannot both pass the check.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL inserts of checkpoints take the transaction lock 1511900396 (0x5A1DC4EC) in turn.


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_checkpoint_grows() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_advisory_xact_lock(1511900396);
                IF EXISTS (SELECT 1 FROM audit_checkpoint WHERE size > NEW.size
                           OR (size = NEW.size AND root_hash <> NEW.root_hash)) THEN
                    RAISE EXCEPTION 'audit_checkpoint grows only: a checkpoint of % entries '
                        'is smaller than, or forks, a stored one', NEW.size
                        USING ERRCODE = 'check_violation';
                END IF;
                RETURN NEW;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_grows BEFORE INSERT ON audit_checkpoint "
            "FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_grows()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_checkpoint_grows BEFORE INSERT ON audit_checkpoint "
            "WHEN EXISTS (SELECT 1 FROM audit_checkpoint WHERE size > NEW.size "
            "OR (size = NEW.size AND root_hash <> NEW.root_hash)) "
            "BEGIN SELECT RAISE(ABORT, 'audit_checkpoint grows only'); END"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_checkpoint_grows" + (
        " ON audit_checkpoint" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_checkpoint_grows()")
