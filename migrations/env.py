"""Alembic environment: runs migrations on the connection or URL the broker passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from broker.db import make_engine

config = context.config


def _run(connection: Connection) -> None:
    # One transaction for the whole run, on SQLite too: alembic assumes SQLite cannot
    # roll back DDL and would commit each migration on its own, so a downgrade refused
    # half-way (0002 while the log holds entries) would keep what the later ones undid.
    # SQLite's DDL is transactional, and our engine issues BEGIN itself (broker.db).
    context.configure(
        connection=connection,
        render_as_batch=True,
        compare_type=True,
        transactional_ddl=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `broker init`")
run_migrations_online()
