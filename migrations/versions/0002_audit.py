"""Audit log: insert-only entries, tree nodes and checkpoints; erasable subject side index.

Triggers refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on the insert-only
tables, on both databases. On PostgreSQL the migration also creates, when the migrating
role may create roles, the NOLOGIN role `sluis_app` holding INSERT and SELECT only on
those tables (and ordinary rights on the others). The broker should connect as a login
role that is a member of `sluis_app` and does not own the tables: an owner (or superuser)
can disable triggers, which is why checkpoints must leave the database.

Downgrade refuses while `audit_entry` holds rows: dropping the tables would destroy the
log, and a migration must never be the way the log disappears. Downgrading an empty log
works (and leaves the cluster-wide role `sluis_app` in place, without its rights here).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
INSERT_ONLY = ("audit_entry", "audit_node", "audit_checkpoint", "audit_entry_org")
ERASABLE = ("audit_subject", "audit_subject_entry")
APP_ROLE = "sluis_app"


def _create_tables() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("entry_id", sa.String(40), nullable=False, unique=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("org", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("time", TZ, nullable=False),
        sa.Column("bytes", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_audit_entry_action_seq", "audit_entry", ["action", "seq"])
    op.create_index("ix_audit_entry_org_seq", "audit_entry", ["org", "seq"])
    op.create_index("ix_audit_entry_time", "audit_entry", ["time"])
    op.create_table(
        "audit_node",
        sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("time", TZ, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_checkpoint_size", "audit_checkpoint", ["size"])
    op.create_table(
        "audit_entry_org",
        sa.Column("org", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    )
    op.create_table(
        "audit_subject",
        sa.Column("token", sa.LargeBinary(), primary_key=True),
        sa.Column("subject_key", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "audit_subject_entry",
        sa.Column("token", sa.LargeBinary(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    )


def _sqlite_triggers() -> None:
    for table in INSERT_ONLY:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is insert-only'); END"
            )


def _postgres_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION audit_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is insert-only (% refused)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    for table in INSERT_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_insert_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_insert_only()"
        )


def _may_manage_roles() -> bool:
    bind = op.get_bind()
    row = bind.execute(
        sa.text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    ).first()
    return bool(row and row[0])


def _postgres_role() -> None:
    """`sluis_app`: ordinary rights on the broker's tables, INSERT and SELECT only on the log."""
    if not _may_manage_roles():
        return
    op.execute(
        """
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluis_app') THEN
                CREATE ROLE sluis_app NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    for table in INSERT_ONLY:
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
        op.execute(f"GRANT SELECT, INSERT ON {table} TO {APP_ROLE}")
    op.execute(f"REVOKE TRUNCATE ON {', '.join(ERASABLE)} FROM {APP_ROLE}")
    # Tables of later migrations get ordinary rights; a later migration adding an
    # insert-only table revokes them as above.
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}"
    )


def upgrade() -> None:
    _create_tables()
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
        _postgres_role()
    else:
        _sqlite_triggers()


def _refuse_if_populated() -> None:
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_entry")).scalar_one()
    if count:
        raise RuntimeError(
            f"refusing to downgrade below 0002: audit_entry holds {count} entries, and "
            "dropping the audit tables would destroy the log; export it "
            "(GET /v1/audit/export) and empty the database by hand if you really mean to"
        )


def _postgres_drop_role_rights() -> None:
    bind = op.get_bind()
    exists = bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": APP_ROLE}
    ).first()
    if not exists or not _may_manage_roles():
        return
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM sluis_app"
    )
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")


def downgrade() -> None:
    _refuse_if_populated()
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        _postgres_drop_role_rights()
    for table in ERASABLE + tuple(reversed(INSERT_ONLY)):
        op.drop_table(table)
    if postgres:
        op.execute("DROP FUNCTION audit_insert_only()")
