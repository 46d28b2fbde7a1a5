"""Database engine: SQLite (WAL, synchronous=FULL) by default, PostgreSQL by URL.

SQLite's Python driver opens transactions lazily and never with
`BEGIN IMMEDIATE`; we take over transaction control so a writer can ask for
the write lock up front (`engine.connect().execution_options(sqlite_begin=
"IMMEDIATE")`), which is how the audit appender serialises.

Writers of one SQLite file in several processes (uvicorn workers, the command line)
queue on an advisory `flock` of a lock file beside the database before `BEGIN IMMEDIATE`.
SQLite's own busy handler polls with growing sleeps (up to 100 ms each), so under load
two appenders waiting on each other's write lock turn every wait into tens of
milliseconds; a blocked `flock` wakes the moment the lock is released. The kernel drops
the lock of a process that dies, so a killed writer never blocks the others.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    false,
    or_,
    text,
)
from sqlalchemy.engine import make_url

from broker.errors import ServiceUnavailable, StartupError


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for PostgreSQL URLs given without a driver."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    if isinstance(engine_or_url, Engine):
        return engine_or_url.dialect.name == "sqlite"
    return engine_or_url.startswith("sqlite")


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


LOOP_CONNECTIONS = 8
"""Connections over the thread pool's share, for work done on the event loop itself."""


SQLITE_COMPANIONS = ("", "-wal", "-shm")
"""The files of one SQLite database in WAL mode: the database, its log and its index."""


def sqlite_file(url: str) -> Path | None:
    """The file of a file-backed SQLite database URL (None for PostgreSQL or memory)."""
    url = normalise_url(url)
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _create_private(path: Path) -> None:
    """Create a missing database file and its folder for the owner only (600, 700).

    SQLite gives the -wal and -shm files the database file's mode, so they follow."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        with suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def check_private_database(url: str) -> None:
    """Refuse (StartupError) an SQLite database, -wal or -shm file that other users may
    open: it holds password hashes, case references and the map of refs to signals."""
    path = sqlite_file(url)
    if path is None:
        return
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            mode = companion.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StartupError(
                f"database file {companion} is open to other users (mode "
                f"{stat.S_IMODE(mode):o}); it must be readable by its owner only "
                f"(chmod 600 {companion})"
            )


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 20) -> Engine:
    """Build the engine for a database URL, creating a missing SQLite file (and its
    folder) readable by its owner only."""
    url = normalise_url(url)
    if is_sqlite(url):
        path = sqlite_file(url)
        if path is not None:
            _create_private(path)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            # Beyond a thread pool that holds every connection (pool_size * 2 is the
            # default thread limit), the event loop's own short reads and the appender.
            max_overflow=pool_size + LOOP_CONNECTIONS,
            pool_timeout=30,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if not url.startswith("postgresql"):
        raise StartupError("BROKER_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=30, pool_pre_ping=True
    )


class WriterLock:
    """One process's turn at writing one SQLite file: a thread lock, then the file lock.

    `flock` locks belong to an open file, which every thread of the process shares, so
    threads first queue on the re-entrant thread lock; the outermost holder takes the
    file lock that other processes queue on.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._lock_file()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _lock_file(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without holding the GIL


_WRITER_LOCKS: dict[str, WriterLock] = {}  # by lock file path
_ENGINE_LOCKS: dict[str, WriterLock | None] = {}  # by engine URL, as given
_WRITER_LOCKS_GUARD = threading.Lock()


def writer_lock(engine: Engine) -> WriterLock | None:
    """The writer lock of a file-backed SQLite database (None for PostgreSQL or memory).

    Engines naming one file differently (relative, absolute, through a link) share it."""
    key = str(engine.url)
    try:
        return _ENGINE_LOCKS[key]
    except KeyError:
        pass
    database = engine.url.database if is_sqlite(engine) else None
    with _WRITER_LOCKS_GUARD:
        lock = None
        if database and database != ":memory:" and not database.startswith("file:"):
            path = os.path.realpath(database) + "-writer.lock"
            lock = _WRITER_LOCKS.get(path)
            if lock is None:
                lock = _WRITER_LOCKS[path] = WriterLock(Path(path))
        _ENGINE_LOCKS[key] = lock
        return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's write lock from its first statement."""
    lock = writer_lock(engine)
    if lock is None:
        with engine.connect() as conn, conn.begin():
            yield conn
        return
    with lock.held(), engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction that sees one snapshot of the database throughout: what
    others commit meanwhile stays out (REPEATABLE READ on PostgreSQL; on SQLite in WAL
    mode, a read transaction keeps the snapshot of its first statement)."""
    with engine.connect() as conn:
        if not is_sqlite(engine):
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


class _EngineReaders:
    """The kept connections of one engine: each thread's own, and the engine's generation
    (one more at each disposal: a connection of an older one is closed by its thread)."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.generation = 0


class _KeptReaders:
    """One driver connection per thread for `read_rows` on SQLite, kept open between reads.

    A pooled read pays for the checkout, the pool's reset (a rollback) and the check-in:
    about three times the read itself, twice on every disclosure. The driver runs in
    autocommit mode (we issue BEGIN ourselves), so a lone SELECT is its own read
    transaction and a kept connection holds nothing between reads. The connections are
    taken out of the pool (`detach`, so they do not count against its size) and belong to
    their thread (thread-local: released when it ends); only that thread ever uses or
    closes one. Disposing the engine closes the disposing thread's connection and makes
    every other one stale, to be closed by its thread at its next read. A connection that
    failed is dropped.
    """

    def __init__(self) -> None:
        self._by_engine: weakref.WeakKeyDictionary[Engine, _EngineReaders] = (
            weakref.WeakKeyDictionary()
        )
        self._guard = threading.Lock()

    def rows(self, engine: Engine, sql: str, params: Any) -> list[Any]:
        readers = self._by_engine.get(engine) or self._register(engine)
        local = readers.local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.generation != readers.generation:
            local.conn = None
            conn.close()
            conn = None
        if conn is None:
            generation = readers.generation
            fairy = engine.raw_connection()
            conn = fairy.driver_connection
            fairy.detach()  # the pool forgets it: closing it is this thread's job now
            local.conn, local.generation = conn, generation
        assert conn is not None  # noqa: S101 - opened above when there was none
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except Exception:
            local.conn = None
            with suppress(Exception):
                conn.close()
            raise

    def _register(self, engine: Engine) -> _EngineReaders:
        with self._guard:
            readers = self._by_engine.get(engine)
            if readers is None:
                readers = self._by_engine[engine] = _EngineReaders()
                event.listen(engine, "engine_disposed", self._disposed)
            return readers

    def _disposed(self, engine: Engine) -> None:
        """On `engine.dispose()`: close this thread's connection, retire the others'."""
        readers = self._by_engine.get(engine)
        if readers is None:
            return
        readers.generation += 1
        conn = getattr(readers.local, "conn", None)
        readers.local.conn = None
        if conn is not None:
            with suppress(Exception):
                conn.close()


_READERS = _KeptReaders()


def read_rows(engine: Engine, sql: str, params: Any, what: str) -> list[Any]:
    """One read statement straight on a driver connection: for the hot reads of every
    request, where SQLAlchemy's statement and transaction layers cost more than the read.
    On SQLite the connection is the thread's kept one (`_KeptReaders`); on PostgreSQL a
    pooled one, which the pool rolls back when it returns. Any pool or driver error is
    `ServiceUnavailable`, naming `what` could not be reached."""
    try:
        if is_sqlite(engine):
            return _READERS.rows(engine, sql, params)
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params)
            rows = list(cursor.fetchall())
            cursor.close()
        finally:
            conn.close()
    except Exception as exc:  # pool (SQLAlchemy) or driver (sqlite3, psycopg) errors alike
        raise ServiceUnavailable(f"The {what} is not reachable.") from exc
    return rows


MAX_PAIR_GROUPS = 500
"""Distinct first values one `pairs_in` condition takes (its callers ask in chunks)."""


def pairs_in(
    first: ColumnElement[Any], second: ColumnElement[Any], pairs: Iterable[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """`(first, second) IN pairs`, written so that both databases search an index on
    (first, second): one `first = a AND second IN (...)` per distinct `a`, joined by OR.

    SQLAlchemy writes a tuple `IN` as `(first, second) IN (VALUES ...)`, which SQLite
    runs as a scan of the whole table: on the audit log's node table, a cost that grows
    with every entry appended.
    """
    grouped: dict[Any, list[Any]] = {}
    for a, b in pairs:
        grouped.setdefault(a, []).append(b)
    if not grouped:
        return false()
    if len(grouped) > MAX_PAIR_GROUPS:  # SQLite refuses expression trees deeper than 1000
        raise ValueError(f"pairs_in takes at most {MAX_PAIR_GROUPS} distinct first values")
    return or_(*(and_(first == a, second.in_(bs)) for a, bs in grouped.items()))


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
        return False
    return True
