"""Database engine: SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL.

SQLite's Python driver opens transactions lazily and never with
`BEGIN IMMEDIATE`; we take over transaction control so a writer can ask for
the write lock up front (`engine.connect().execution_options(sqlite_begin=
"IMMEDIATE")`), which is how the audit appender serialises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from broker.errors import StartupError


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs given without a driver."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Erased payloads and keys must not linger in free pages.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        if mode not in ("", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError("sqlite_begin must be IMMEDIATE or EXCLUSIVE")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 20) -> Engine:
    """Build the engine for a database URL, creating SQLite's folder when needed."""
    url = normalise_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=30,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if not url.startswith("postgresql"):
        raise StartupError("BROKER_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=30, pool_pre_ping=True
    )


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's write lock from its first statement."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
        return False
    return True
