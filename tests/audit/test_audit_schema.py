"""Migration 0002: insert-only audit tables on both databases, the app role, safe downgrade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from broker import migrate
from broker.audit.tables import APP_ROLE, ERASABLE, INSERT_ONLY
from broker.keys import KeyRing
from tests.audit.audit_kit import LogEnv, draft, make_env

CHANGES = {
    "audit_entry": ("UPDATE audit_entry SET action = 'hit'", "DELETE FROM audit_entry"),
    "audit_node": ("UPDATE audit_node SET hash = hash", "DELETE FROM audit_node"),
    "audit_checkpoint": ("UPDATE audit_checkpoint SET note = ''", "DELETE FROM audit_checkpoint"),
    "audit_entry_org": ("UPDATE audit_entry_org SET org = 'x'", "DELETE FROM audit_entry_org"),
}


@pytest.fixture
def env(db_url: str, keys: KeyRing, key_dir: Path, tmp_path: Path) -> Iterator[LogEnv]:
    made = make_env(db_url, keys, key_dir, tmp_path)
    try:
        made.fill(5)
        made.signer.sign()
        yield made
    finally:
        made.log.close()
        made.engine.dispose()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608
            for t in CHANGES
        }


def as_app_role(engine: Engine, statement: str) -> None:
    with engine.connect() as conn, conn.begin():
        conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
        conn.execute(text(statement))


@pytest.mark.parametrize("table", INSERT_ONLY)
def test_the_applications_connection_cannot_update_or_delete_audit_rows(
    env: LogEnv, table: str
) -> None:
    before = counts(env.engine)
    assert before[table] > 0
    for statement in CHANGES[table]:
        with pytest.raises(DBAPIError, match="insert-only"), env.engine.begin() as conn:
            conn.execute(text(statement))
    assert counts(env.engine) == before
    assert env.verify().ok


@pytest.mark.parametrize("table", INSERT_ONLY)
def test_truncate_is_refused_on_postgresql(env: LogEnv, table: str) -> None:
    if not env.postgres:
        pytest.skip("SQLite has no TRUNCATE; its DELETE trigger covers `DELETE FROM t`")
    with pytest.raises(DBAPIError, match="insert-only"), env.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {table}"))
    assert counts(env.engine)[table] > 0


def test_the_app_role_may_insert_and_select_but_never_change_the_log(env: LogEnv) -> None:
    if not env.postgres:
        pytest.skip("roles exist on PostgreSQL only")
    before = counts(env.engine)
    for table in INSERT_ONLY:
        for statement in (*CHANGES[table], f"TRUNCATE {table}"):
            with pytest.raises(DBAPIError, match="permission denied"):
                as_app_role(env.engine, statement)
    with env.engine.connect() as conn, conn.begin():
        conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
        assert conn.execute(text("SELECT count(*) FROM audit_entry")).scalar_one() == 5
        conn.execute(text("INSERT INTO audit_node (level, idx, hash) VALUES (60, 0, 'x')"))
        for table in ERASABLE:
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        conn.rollback()
    assert counts(env.engine) == before


def test_downgrade_stops_at_the_log_while_it_holds_entries(env: LogEnv) -> None:
    """Upgrade, downgrade, upgrade on a populated database: later revisions may go down
    and up again, 0002 refuses to drop the log, and no audit row changes."""
    before = counts(env.engine)
    with pytest.raises(RuntimeError, match="audit_entry holds 5 entries"):
        migrate.downgrade(env.engine, "0001")
    assert migrate.current_revision(env.engine) in ("0002", migrate.head_revision())
    assert counts(env.engine) == before
    migrate.upgrade(env.engine)
    assert migrate.current_revision(env.engine) == migrate.head_revision()
    assert counts(env.engine) == before
    assert env.log.record(draft(5)).seq == 5
    assert env.verify().ok


def test_downgrade_and_upgrade_of_an_empty_log(
    db_url: str, keys: KeyRing, key_dir: Path, tmp_path: Path, engine: Engine
) -> None:
    migrate.downgrade(engine, "0001")
    tables = set(inspect(engine).get_table_names())
    assert tables.isdisjoint(INSERT_ONLY + ERASABLE)
    migrate.upgrade(engine)
    assert set(INSERT_ONLY + ERASABLE) <= set(inspect(engine).get_table_names())
    env = make_env(db_url, keys, key_dir, tmp_path)
    try:
        assert env.fill(3) == [0, 1, 2]
        with pytest.raises(DBAPIError, match="insert-only"), env.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_entry"))
        assert env.verify().ok
    finally:
        env.engine.dispose()
