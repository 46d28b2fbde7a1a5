"""The appender's database access: its kept connection, and statements sent straight to
the database driver.

The appender runs a handful of fixed statements per batch while every request of the
process waits for it, so it keeps one connection from batch to batch and bypasses
SQLAlchemy's per-statement machinery for them, inside the batch's SQLAlchemy transaction.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from sqlalchemy import Connection, DateTime, Engine, LargeBinary, Table

from broker.audit.tables import TreeDamaged, chunks
from broker.db import writer_lock

MAX_PARAMETERS: Final = 30_000
"""Bound parameters per statement: under SQLite's 32766 and PostgreSQL's 65535."""


class Driver:
    """The appender's own statements, sent straight to the driver on the batch connection.

    SQLAlchemy's per-statement machinery (compilation cache look-up, events, result
    wrapping, expanding `IN` parameters) costs more than these statements themselves, so
    they bypass it. They run inside the batch's SQLAlchemy transaction, on its connection.
    Placeholders are written `?` and adapted to the driver's style.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw: Any = conn.connection.driver_connection
        self.qmark = conn.dialect.paramstyle == "qmark"

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows a query returns."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql if self.qmark else sql.replace("?", "%s"), tuple(params))
            found: list[tuple[Any, ...]] = cursor.fetchall()
        finally:
            cursor.close()
        return found

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run a statement that returns nothing."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql if self.qmark else sql.replace("?", "%s"), tuple(params))
        finally:
            cursor.close()


def marks(count: int) -> str:
    """`count` placeholders for an `IN (...)` list."""
    return ",".join(["?"] * count)


def driver_tail(driver: Driver) -> tuple[int, bytes | None]:
    """`tables.tree_tail` through the driver: (size, last leaf hash)."""
    rows = driver.rows("SELECT seq, leaf_hash FROM audit_entry ORDER BY seq DESC LIMIT 1")
    if not rows:
        return 0, None
    return int(rows[0][0]) + 1, bytes(rows[0][1])


def driver_nodes(driver: Driver, coords: Sequence[tuple[int, int]]) -> list[bytes]:
    """Stored inner nodes (level >= 1) in the order asked; TreeDamaged if one is missing."""
    found: dict[tuple[int, int], bytes] = {}
    for chunk in chunks(coords, 400):
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
        params = [value for coord in chunk for value in coord]
        found.update(((int(level), int(idx)), bytes(h)) for level, idx, h in driver.rows(
            f"SELECT level, idx, hash FROM audit_node WHERE {where}", params))  # noqa: S608
    missing = [coord for coord in coords if coord not in found]
    if missing:
        raise TreeDamaged(f"tree node (level, index) {missing[0]} is missing from the log")
    return [found[coord] for coord in coords]


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert a batch's rows in a few driver calls: COPY on PostgreSQL, multi-row VALUES
    on SQLite.

    One driver call per row (executemany) lets go of the GIL each time, and with dozens
    of request threads waiting every hand-back costs more than the insert; psycopg's
    per-row pipeline costs more still. On SQLite the values pass through the columns'
    own bind processors, so they are stored exactly as SQLAlchemy would store them
    (psycopg adapts the same Python values itself).
    """
    dialect = conn.dialect
    columns = list(rows[0])
    for column in columns:
        table.c[column]  # noqa: B018 - a KeyError for anything but our own columns
    # Names come from our own Table (each checked above), never from input.
    names = f"{table.name} ({', '.join(columns)})"
    if dialect.name == "postgresql":
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(f"COPY {names} FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        return
    processors = [_processor(table.c[c].type, dialect) for c in columns]
    row_marks = "(" + ",".join(["?"] * len(columns)) + ")"  # sqlite3's qmark style
    head = f"INSERT INTO {names} VALUES "  # noqa: S608
    per_statement = max(1, MAX_PARAMETERS // len(columns))
    pairs = list(zip(columns, processors, strict=True))
    driver = Driver(conn)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        # One flat comprehension: the per-value loop is the appender's busiest Python.
        params = [process(row[column]) if process is not None else row[column]
                  for row in chunk for column, process in pairs]
        driver.execute(head + ",".join([row_marks] * len(chunk)), params)


def _processor(kind: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """A column's bind processor for the driver, made cheap for a batch's values: bytes go
    to sqlite3 as they are (SQLAlchemy would only wrap them in a memoryview, stored as
    the same BLOB), and a batch's rows share one time, so its text is made once."""
    if isinstance(kind, LargeBinary):
        return None
    process: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    if process is not None and isinstance(kind, DateTime):
        return functools.lru_cache(maxsize=4)(process)
    return process


class BatchConnection:
    """The appender thread's own connection, kept from batch to batch.

    A batch on a pooled connection paid for its checkout, the pool's reset on return and
    the check-in, about a tenth of a large batch's time; the appender writes back to back
    all day, so it keeps one connection. A failed batch drops it (whatever state the
    failure left it in), and the next batch opens a fresh one. Writers queue on the same
    SQLite writer lock as `write_transaction`.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = writer_lock(engine)
        self._conn: Connection | None = None

    def turn(self) -> contextlib.AbstractContextManager[None]:
        """This process's turn at writing (the SQLite writer lock; nothing on PostgreSQL,
        where the transaction takes its advisory lock)."""
        return self._lock.held() if self._lock is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction on the kept connection, in this process's turn."""
        with self.turn():
            conn = self._conn
            if conn is None:
                conn = self._engine.connect()
                if self._lock is not None:
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                self._conn = conn
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Close the kept connection (the next transaction opens a fresh one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                conn.close()
