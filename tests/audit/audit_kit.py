"""Helpers of the audit tests: small logs on fresh databases, and tampering as a superuser.

Tampering needs to get past the insert-only triggers, as an attacker with full database
rights would: on SQLite by dropping the triggers, editing, and recreating them from their
stored SQL; on PostgreSQL by `ALTER TABLE ... DISABLE TRIGGER USER` as the superuser.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event, text

from broker.audit.appender import AuditLog
from broker.audit.integrity import LiveReport, verify_live
from broker.audit.signer import STATE_FILE, CheckpointSigner
from broker.audit.tables import INSERT_ONLY
from broker.db import is_sqlite, make_engine
from broker.keys import KeyRing
from broker.settings import Settings

ORIGIN = "sluis.example/audit"
ORGS = ("gemeente", "politie", "belastingdienst")


def draft(number: int, *, org: str = "gemeente", source: str = "politie") -> dict[str, Any]:
    """A disclosure-shaped draft with one item (no personal data, like every entry)."""
    return {
        "action": "disclosure",
        "outcome": "granted",
        "reason": None,
        "actor": {"client": f"cl_{org}", "org": org, "roles": ["requester"],
                  "acting_user_tag": "tag-1"},
        "purpose": "integrale-controle",
        "case_reference": f"ZAAK-{number}",
        "policy": {"pack": "demo", "hash": "sha256:00"},
        "request_id": f"req-{number}",
        "items": [
            {"signal_id": f"sig_{number}", "rule": "r1", "legal_basis": "wet-1",
             "category": "energie-afwijking", "source": source,
             "fields": {"location.postcode": "reveal"}}
        ],
        "objects": {"n": number},
    }


def read_plans(engine: Engine, call: Callable[[], Any]) -> list[str]:
    """SQLite's query plan lines of every SELECT that `call` sends through `engine`."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen, "no SELECT was sent"
    with engine.connect() as conn:
        return [str(detail) for statement, parameters in seen
                for *_, detail in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters).all()]


def plain_pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_execute(admin_url: str, statement: str) -> None:
    with psycopg.connect(plain_pg_url(admin_url), autocommit=True) as conn:
        conn.execute(statement.encode())


class Databases:
    """Fresh migrated databases of one kind, cloned from the session's template."""

    def __init__(
        self, kind: str, directory: Path, *, sqlite_template: Path | None = None,
        pg_admin_url: str | None = None, pg_template: str | None = None,
    ) -> None:
        self.kind = kind
        self.directory = directory
        self.sqlite_template = sqlite_template
        self.pg_admin_url = pg_admin_url
        self.pg_template = pg_template
        self._made: list[str] = []

    @property
    def postgres(self) -> bool:
        return self.kind == "postgresql"

    def create(self, template: str | None = None) -> str:
        """A new database URL; `template` copies another of ours instead of the template."""
        name = "t_" + uuid.uuid4().hex[:16]
        if not self.postgres:
            assert self.sqlite_template is not None
            path = self.directory / f"{name}.db"
            source = Path(template.removeprefix("sqlite:///")) if template else self.sqlite_template
            shutil.copyfile(source, path)
            return f"sqlite:///{path}"
        assert self.pg_admin_url is not None
        assert self.pg_template is not None
        source_name = template.rsplit("/", 1)[1] if template else self.pg_template
        pg_execute(self.pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {source_name}")
        self._made.append(name)
        return self.pg_admin_url.rsplit("/", 1)[0] + "/" + name

    def drop(self, url: str) -> None:
        if self.postgres and self.pg_admin_url:
            name = url.rsplit("/", 1)[1]
            pg_execute(self.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            if name in self._made:
                self._made.remove(name)
        elif not self.postgres:
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)

    def drop_all(self) -> None:
        for name in list(self._made):
            assert self.pg_admin_url is not None
            pg_execute(self.pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._made.clear()


@dataclass
class LogEnv:
    """A small log on its own database, with its own signer state."""

    url: str
    engine: Engine
    settings: Settings
    keys: KeyRing
    signer: CheckpointSigner
    log: AuditLog

    @property
    def postgres(self) -> bool:
        return not is_sqlite(self.engine)

    def fill(self, count: int, start: int = 0) -> list[int]:
        return [self.log.record(draft(start + i)).seq for i in range(count)]

    def verify(self) -> LiveReport:
        return verify_live(self.engine, self.signer)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def row(self, seq: int) -> tuple[bytes, bytes]:
        with self.engine.connect() as conn:
            got = conn.execute(
                text("SELECT bytes, leaf_hash FROM audit_entry WHERE seq = :s"), {"s": seq}
            ).one()
        return bytes(got[0]), bytes(got[1])

    def tamper(self, *statements: tuple[str, dict[str, Any]]) -> None:
        """Run statements as a superuser would, past the insert-only triggers."""
        tamper(self.engine, statements)


def tamper(engine: Engine, statements: Sequence[tuple[str, dict[str, Any]]]) -> None:
    with engine.connect() as conn, conn.begin():
        if is_sqlite(engine):
            triggers = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            ).all()
            for name, _ in triggers:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            for sql, params in statements:
                conn.execute(text(sql), params)
            for _, sql in triggers:
                conn.exec_driver_sql(sql)
        else:
            for table in INSERT_ONLY:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for sql, params in statements:
                conn.execute(text(sql), params)
            for table in INSERT_ONLY:
                conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def make_env(
    url: str, keys: KeyRing, key_dir: Path, state_dir: Path, *,
    settings: dict[str, Any] | None = None, **log_options: Any,
) -> LogEnv:
    options: dict[str, Any] = {"checkpoint_every_seconds": 3600, **(settings or {})}
    made = Settings(
        database_url=url, key_dir=key_dir, audit_origin=ORIGIN, checkpoint_key_name=ORIGIN,
        **options,
    )
    engine = make_engine(url)
    signer = CheckpointSigner(engine, keys, made, state_path=state_dir / STATE_FILE)
    log = AuditLog(engine, keys, made, signer=signer, **log_options)
    return LogEnv(url, engine, made, keys, signer, log)


@contextmanager
def fresh_env(
    databases: Databases, keys: KeyRing, key_dir: Path, **log_options: Any
) -> Iterator[LogEnv]:
    """A log on a new database with a new signer state, removed afterwards."""
    url = databases.create()
    state_dir = Path(tempfile.mkdtemp(prefix="signer-"))
    env = make_env(url, keys, key_dir, state_dir, **log_options)
    try:
        yield env
    finally:
        env.log.close()
        env.engine.dispose()
        databases.drop(url)
        shutil.rmtree(state_dir, ignore_errors=True)


@contextmanager
def inserts_refused(engine: Engine, table: str = "audit_entry") -> Iterator[None]:
    """A real database fault while the block runs: every insert into `table` fails, as on
    a full disk (a trigger, so the application's own code is not touched)."""
    if engine.dialect.name == "postgresql":
        install = [
            "CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'insert refused by the test'; END $$",
            f"CREATE TRIGGER refuse_insert BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_insert()",
        ]
        remove = [f"DROP TRIGGER refuse_insert ON {table}", "DROP FUNCTION refuse_insert()"]
    else:
        install = [f"CREATE TRIGGER refuse_insert BEFORE INSERT ON {table} "
                   "BEGIN SELECT RAISE(ABORT, 'insert refused by the test'); END"]
        remove = ["DROP TRIGGER refuse_insert"]
    with engine.begin() as conn:
        for statement in install:
            conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in remove:
                conn.exec_driver_sql(statement)
