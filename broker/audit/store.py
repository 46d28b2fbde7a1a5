"""The one audit appender: group commit of entries into the insert-only Merkle log.

Callers (request threads) hand a work unit to `AuditLog.record` and block until their
entry is durable; coroutines await `AuditLog.record_async`, whose units wait for the
event loop's next turn and are queued together, so one wake-up of the appender takes all
that the loop's requests recorded meanwhile. One appender thread takes every queued unit
(up to a cap), opens one write transaction (SQLite `BEGIN IMMEDIATE`; PostgreSQL
`pg_advisory_xact_lock`, so several processes serialise), runs each unit's `work` in a
savepoint, numbers and encodes the entries, inserts them with the tree nodes they
complete, commits, and only then tells each caller its `seq`. Fail closed: if the
transaction fails, every caller of the batch gets `AuditUnavailable` and nothing is
written.

The tree's right frontier (a `CompactRange`) is cached between batches and checked
against the stored tail at the start of each. When another process appended meanwhile,
the frontier is extended over its rows after cheap checks (leaf hash, seq, origin, the
nodes it stored), so a row slipped in behind the appenders' backs stops the appender
(fail closed) rather than being built into every later root; after a restart the
frontier is rebuilt from stored nodes in O(log n) reads.

Checkpoints are signed beside the appender, in a thread of their own: every N entries
(counting signatures of the other processes sharing the log and key directory) or T
seconds, the appender hands the size it just made durable to the checkpoint thread and
goes on appending.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import functools
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar, overload

from sqlalchemy import Connection, DateTime, Engine, LargeBinary, Table, text
from sqlalchemy.exc import DBAPIError

from broker.audit.signer import CheckpointRefused, CheckpointSigner
from broker.audit.tables import (
    ADVISORY_LOCK_KEY,
    TreeDamaged,
    audit_entry,
    audit_entry_org,
    audit_node,
    audit_subject,
    audit_subject_entry,
    chunks,
    entry_seq,
    frontier,
)
from broker.clock import utcnow
from broker.core import merkle, randomness
from broker.core.entry import (
    Entry,
    entry_json,
    format_time,
    subject_tag,
)
from broker.db import is_sqlite, ping, write_transaction, writer_lock
from broker.errors import AuditUnavailable
from broker.keys import KeyRing
from broker.settings import Settings

T = TypeVar("T")
_log = logging.getLogger("broker.audit")
APPENDER_FILLS = frozenset({"v", "origin", "id", "seq", "time"})
SUBJECT_KEY_BYTES = 32
DEFAULT_BATCH_CAP = 1000
"""Units one batch gathers at most (a loop turn's units stay together, so it may hold more)."""
MAX_PARAMETERS = 30_000
"""Bound parameters per statement: under SQLite's 32766 and PostgreSQL's 65535."""
FOREIGN_CHECK_LIMIT = 10_000
"""Rows appended by another process that the appender re-checks before trusting them."""


@dataclass(frozen=True, slots=True)
class Recorded(Generic[T]):
    """A durable entry: its position in the log, its id, and what the unit's work returned."""

    seq: int
    entry_id: str
    result: T


# --- Work units ---


class _Unit:
    """One caller's entry, work and rows, and how its caller learns it is settled.

    A thread caller blocks on `done`, a bare lock held until then (the cheapest one-shot
    event). An asyncio caller awaits `future`, which the appender resolves through its
    loop: one `call_soon_threadsafe` per loop and batch, so no request thread is woken.
    """

    __slots__ = ("done", "draft", "entry_id", "error", "future", "loop", "pre", "result",
                 "rows", "seq", "subjects", "work")

    def __init__(
        self,
        draft: Mapping[str, Any],
        work: Callable[[Connection], Any] | None,
        subjects: Sequence[bytes],
        rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.draft = draft
        self.work = work
        self.subjects = subjects
        self.rows = rows
        self.pre: _Pre | None = None
        self.seq = -1
        self.entry_id = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.loop = loop
        self.future: asyncio.Future[None] | None = None
        self.done: _thread.LockType | None = None
        if loop is None:
            self.done = _thread.allocate_lock()
            self.done.acquire()
        else:
            self.future = loop.create_future()

    def recorded(self) -> Recorded[Any]:
        if self.error is not None:
            raise self.error
        return Recorded(self.seq, self.entry_id, self.result)


def _wake(units: list[_Unit]) -> None:
    """In a caller's event loop: resolve the futures of its settled units."""
    for unit in units:
        if unit.future is not None and not unit.future.done():
            unit.future.set_result(None)


def _settle(units: Iterable[_Unit]) -> None:
    """Tell every caller of `units` that its unit is settled (durable, or failed)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Unit]] = {}
    for unit in units:
        if unit.loop is None:
            if unit.done is not None:
                unit.done.release()
        else:
            by_loop.setdefault(unit.loop, []).append(unit)
    for loop, group in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to tell
            loop.call_soon_threadsafe(_wake, group)


@dataclass(slots=True)
class _Built:
    """An entry ready to insert: its rows, and the subject keys it created."""

    entry_row: dict[str, Any]
    leaf: bytes
    org_rows: list[dict[str, Any]]
    subject_rows: list[dict[str, Any]]
    new_tokens: list[bytes]


class _SubjectKeys:
    """Subject keys of one batch: read once, created on first use, inserted only if used."""

    def __init__(self, driver: _Driver, units: Sequence[_Unit]) -> None:
        tokens = sorted({
            t for u in units
            for t in (u.pre.tags.values() if u.pre is not None else _unit_tokens(u))
        })
        self.known: dict[bytes, bytes] = {}
        for chunk in chunks(tokens):
            rows = driver.rows(
                "SELECT token, subject_key FROM audit_subject"  # noqa: S608 - marks only
                f" WHERE token IN ({_marks(len(chunk))})",
                chunk,
            )
            self.known.update((bytes(t), bytes(k)) for t, k in rows)
        self.created: dict[bytes, bytes] = {}
        self.stored: set[bytes] = set()

    def key(self, token: bytes) -> tuple[bytes, bool]:
        """The subject's key, and whether this batch created it."""
        if token in self.known:
            return self.known[token], False
        if token not in self.created:
            self.created[token] = secrets.token_bytes(SUBJECT_KEY_BYTES)
        return self.created[token], True

    def rows_to_store(self, tokens: Iterable[bytes]) -> list[dict[str, Any]]:
        rows = []
        for token in tokens:
            if token not in self.stored:
                self.stored.add(token)
                rows.append({"token": token, "subject_key": self.created[token]})
        return rows


def _unit_tokens(unit: _Unit) -> list[bytes]:
    """Every subject token a unit names (checked in the caller's thread by `record`)."""
    tokens = list(unit.subjects)
    for item in unit.draft.get("items") or ():
        tokens.extend(item.get("subjects") or ())
    return tokens


def _check_tokens(unit: _Unit) -> None:
    """Refuse a malformed draft in the caller's thread, before it can fail a batch."""
    try:
        tokens = _unit_tokens(unit)
    except (AttributeError, TypeError):
        raise TypeError("draft items must be mappings") from None
    for token in tokens:
        if not isinstance(token, bytes) or not token:
            raise TypeError("subject tokens are non-empty bytes (blind-index tokens)")


def _json_strings(values: list[str]) -> bytes:
    """A JSON array of ASCII strings as the entry holds it (placeholders and tags)."""
    return json.dumps(values, separators=(",", ":")).encode()


def new_entry_id() -> str:
    """``ae_``, the millisecond clock in 12 hex digits, then 64 random bits.

    Ids in time order land at the right edge of the unique index on `entry_id`, as
    `seq` does; fully random ids would each touch a random page of it, which measured
    about half the appender's insert time. The random part keeps ids unique across
    processes (two ids of one millisecond collide with odds of 2**-64).
    """
    return f"ae_{time.time_ns() // 1_000_000:012x}{randomness.token_hex(8)}"


PLACEHOLDER_TIME: Final = "1970-01-01T00:00:00.000Z"
_PLACEHOLDER_TAIL: Final = f',"seq":0,"time":"{PLACEHOLDER_TIME}","v":1}}'.encode()
"""How canonical bytes end before the appender knows seq and time: in RFC 8785 key order
`seq`, `time` and `v` are the last three members of an entry."""


@dataclass(slots=True)
class _Pre:
    """An entry encoded in its caller's thread, but for what only the appender knows: its
    seq and time (a fixed tail of the bytes) and its subject tags (which need the subjects'
    keys, read in the append transaction) stand in as placeholders. The appender splices
    them in, so the work it does while it holds the log's write lock stays small."""

    data: bytes
    action: str
    org: str | None
    purpose: str | None
    orgs: list[str]
    tags: dict[str, bytes]  # placeholder -> subject token, items' and loose alike
    loose: list[str]  # placeholders of subjects outside any item, sorted
    loose_array: bytes  # how `objects.subject_tags` holds them in `data`


def _placeholder() -> str:
    return randomness.token_urlsafe(32)  # 43 characters, like a real tag; unique in the entry


def pre_encode(unit: _Unit, origin: str) -> None:
    """Validate and encode a unit's entry (see `_Pre`): in the caller's thread, or for a
    unit with `work`, by the appender after the work ran. A malformed draft fails here."""
    draft = dict(unit.draft)
    clash = APPENDER_FILLS.intersection(draft)
    if clash:
        raise ValueError(f"the appender fills {', '.join(sorted(clash))}; leave them out")
    entry_id = new_entry_id()
    by_token: dict[bytes, str] = {}

    def tag(token: bytes) -> str:
        if token not in by_token:
            by_token[token] = _placeholder()
        return by_token[token]

    items = []
    for item in draft.get("items") or ():
        item = dict(item)
        if "subjects" in item:
            item["subject_tags"] = [
                *item.get("subject_tags", ()),
                *(tag(t) for t in item.pop("subjects")),
            ]
        items.append(item)
    if items:
        draft["items"] = items
    in_items = set(by_token)
    loose = sorted(tag(t) for t in dict.fromkeys(unit.subjects) if t not in in_items)
    if loose:
        draft["objects"] = {**(draft.get("objects") or {}), "subject_tags": loose}
    entry = Entry.model_validate(
        {**draft, "v": 1, "origin": origin, "id": entry_id, "seq": 0, "time": PLACEHOLDER_TIME}
    )
    data = entry_json(entry)
    if not data.endswith(_PLACEHOLDER_TAIL):  # RFC 8785 puts seq, time, v last, always
        raise RuntimeError("canonical entry bytes do not end with seq, time and v")
    orgs = {entry.actor.org, *(i.source for i in entry.items)} - {None}
    unit.entry_id = entry_id
    unit.pre = _Pre(
        data=data[: -len(_PLACEHOLDER_TAIL)],
        action=entry.action,
        org=entry.actor.org,
        purpose=entry.purpose,
        orgs=sorted(o for o in orgs if o),
        tags={placeholder: token for token, placeholder in by_token.items()},
        loose=loose,
        loose_array=_json_strings(loose) if loose else b"",
    )


def _splice(
    unit: _Unit, pre: _Pre, seq: int, moment: datetime, stamp: str, keys: _SubjectKeys
) -> _Built:
    """Finish a pre-encoded entry: real subject tags, seq and time."""
    data = pre.data
    created: list[bytes] = []
    real: dict[str, str] = {}
    for placeholder, token in pre.tags.items():
        key, new = keys.key(token)
        if new and token not in created:
            created.append(token)
        real[placeholder] = subject_tag(key, unit.entry_id)
    if pre.loose:
        data = data.replace(pre.loose_array,
                            _json_strings(sorted(real[p] for p in pre.loose)))
    for placeholder, tag in real.items():
        data = data.replace(placeholder.encode(), tag.encode())
    data += b',"seq":%d,"time":"%s","v":1}' % (seq, stamp.encode())
    leaf = merkle.leaf_hash(data)
    return _Built(
        entry_row={
            "seq": seq,
            "entry_id": unit.entry_id,
            "action": pre.action,
            "org": pre.org,
            "purpose": pre.purpose,
            "time": moment,
            "bytes": data,
            "leaf_hash": leaf,
        },
        leaf=leaf,
        org_rows=[{"org": org, "seq": seq} for org in pre.orgs],
        subject_rows=[{"token": t, "seq": seq} for t in dict.fromkeys(pre.tags.values())],
        new_tokens=created,
    )


def extend_checked(
    driver: _Driver, cached: merkle.CompactRange, size: int, origin: str
) -> merkle.CompactRange:
    """Extend our frontier by the rows another appender wrote since, checking each row's
    leaf hash, seq and origin and the nodes it completed: a row slipped in behind the
    appenders' backs is refused (fail closed) instead of being built into every later
    root. These checks are cheap (no parsing); live verification does the full ones."""
    rows = driver.rows(
        "SELECT seq, bytes, leaf_hash FROM audit_entry WHERE seq >= ? AND seq < ? ORDER BY seq",
        (cached.size, size),
    )
    tree = cached.copy()
    completed: list[tuple[int, int, bytes]] = []
    origin_member = b'"origin":' + json.dumps(origin).encode()
    for seq, raw, leaf in rows:
        data = bytes(raw)
        if (
            int(seq) != tree.size
            or entry_seq(data) != tree.size
            or origin_member not in data
            or merkle.leaf_hash(data) != bytes(leaf)
        ):
            raise TreeDamaged(f"entry {tree.size} was not written by an appender")
        completed.extend(tree.append(bytes(leaf)))
    if tree.size != size:
        raise TreeDamaged(f"entry {tree.size} is missing")
    stored = driver_nodes(driver, [(level, index) for level, index, _ in completed])
    for (level, index, computed), found in zip(completed, stored, strict=True):
        if computed != found:
            raise TreeDamaged(f"tree node ({level}, {index}) does not match the entries")
    return tree


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
    driver = _Driver(conn)
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


class _Driver:
    """The appender's own statements, sent straight to the driver on the batch connection.

    The appender runs a handful of fixed statements per batch while every request of the
    process waits for it; SQLAlchemy's per-statement machinery (compilation cache look-up,
    events, result wrapping, expanding `IN` parameters) costs more than these statements
    themselves, so they bypass it. They run inside the batch's SQLAlchemy transaction, on
    its connection. Placeholders are written `?` and adapted to the driver's style.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.raw: Any = conn.connection.driver_connection
        self.qmark = conn.dialect.paramstyle == "qmark"

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql if self.qmark else sql.replace("?", "%s"), tuple(params))
            found: list[tuple[Any, ...]] = cursor.fetchall()
        finally:
            cursor.close()
        return found

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql if self.qmark else sql.replace("?", "%s"), tuple(params))
        finally:
            cursor.close()


def _marks(count: int) -> str:
    return ",".join(["?"] * count)


def driver_tail(driver: _Driver) -> tuple[int, bytes | None]:
    """`tables.tree_tail` through the driver: (size, last leaf hash)."""
    rows = driver.rows("SELECT seq, leaf_hash FROM audit_entry ORDER BY seq DESC LIMIT 1")
    if not rows:
        return 0, None
    return int(rows[0][0]) + 1, bytes(rows[0][1])


def driver_nodes(driver: _Driver, coords: Sequence[tuple[int, int]]) -> list[bytes]:
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


# --- The appender ---


class _RowsRefused(Exception):
    """The merged insert of a batch's plain rows failed (the batch is written again)."""


def _insert_isolated(conn: Connection, unit: _Unit) -> bool:
    """Insert one unit's plain rows in a savepoint; on failure the unit gets
    `AuditUnavailable` (its caller's answer) and nothing of it stays."""
    savepoint = conn.begin_nested()
    try:
        for table, rows in unit.rows:
            if rows:
                insert_rows(conn, table, [dict(row) for row in rows])
    except Exception as exc:  # noqa: BLE001 - the unit fails, the batch goes on
        savepoint.rollback()
        _log.error("audit rows refused; one act is not recorded",
                   extra={"error_type": type(exc).__name__})
        unit.error = AuditUnavailable("The audit log could not record the act.")
        return False
    savepoint.commit()
    return True


_Merged = dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]]


def _merge_rows(merged: _Merged, unit: _Unit) -> None:
    """Add a unit's plain rows to the batch's, one list per table and column set."""
    for table, rows in unit.rows:
        for row in rows:
            merged.setdefault((table, tuple(row)), []).append(dict(row))


def _insert_merged(conn: Connection, merged: _Merged) -> None:
    for (table, _), rows in merged.items():
        try:
            insert_rows(conn, table, rows)
        except Exception as exc:
            raise _RowsRefused from exc


class _BatchConnection:
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
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                conn.close()


_STOP = object()


class AuditLog:
    """The audit appender of one process; see the module docstring.

    `start()` runs the group-commit thread and the checkpoint thread beside it; without
    them, for command-line use, `record` appends synchronously in the caller's thread.
    """

    def __init__(
        self,
        engine: Engine,
        keys: KeyRing,
        settings: Settings,
        *,
        batch_cap: int = DEFAULT_BATCH_CAP,
        signer: CheckpointSigner | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._settings = settings
        self._origin = settings.audit_origin
        self._postgres = not is_sqlite(engine)
        self._batch_cap = max(1, batch_cap)
        self._clock = clock
        self.signer = signer or CheckpointSigner(engine, keys, settings)
        # Queued: lists of units (a loop turn's units travel together), or _STOP.
        self._queue: queue.SimpleQueue[list[_Unit] | object] = queue.SimpleQueue()
        self._held: dict[asyncio.AbstractEventLoop, list[_Unit]] = {}
        self._lock = threading.Lock()
        self._door = threading.Lock()  # no unit enters the queue behind the stop marker
        self._cache: merkle.CompactRange | None = None
        self._cache_tail: bytes | None = None
        self._thread: threading.Thread | None = None
        self._signer_thread: threading.Thread | None = None
        self._signatures: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._batch_connection = _BatchConnection(engine)
        self._closed = False
        self._last_failed = False
        self.damaged: str | None = None
        self._signed_size: int | None = None
        self._last_signed_at = time.monotonic()
        self.signer_problem: str | None = None

    # -- lifecycle --

    def start(self) -> None:
        """Start the appender thread (idempotent)."""
        if self._thread is not None:
            return
        if self._closed:
            raise RuntimeError("the audit log is closed")
        try:
            remembered = self.signer.remembered()
        except CheckpointRefused as exc:
            # Appends go on; checkpoints wait until the state is repaired.
            remembered, self.signer_problem = None, exc.detail
            _log.error("checkpoint signer state unreadable")
        self._signed_size = remembered.size if remembered else None
        signer = threading.Thread(target=self._sign_forever, name="audit-checkpoints",
                                  daemon=True)
        signer.start()
        self._signer_thread = signer
        self._thread = threading.Thread(target=self._run, name="audit-appender", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self._thread = None
            self._signatures.put(None)
            signer.join()
            raise

    def close(self) -> None:
        """Append what is queued, then stop the thread. Later records fail (503)."""
        with self._door:
            if self._closed:
                return
            self._closed = True
            if self._thread is not None:
                self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join()
        if self._signer_thread is not None:  # told to stop by the appender as it ended
            self._signer_thread.join()
        self._batch_connection.close()

    def use_keys(self, keys: KeyRing) -> None:
        """Switch to a reloaded key ring (after a rotation): later checkpoints use its
        active checkpoint key, and verification accepts every version it holds."""
        self._keys = keys
        self.signer.use_keys(keys)

    @property
    def healthy(self) -> bool:
        """False once closed, when either thread died, when the stored tree is damaged, or
        after a failed append while the database does not answer."""
        if self._closed or any(
            thread is not None and not thread.is_alive()
            for thread in (self._thread, self._signer_thread)
        ):
            return False
        if self.damaged is not None:
            return False
        return not self._last_failed or ping(self._engine)

    # -- recording --

    @overload
    def record(
        self,
        draft: Mapping[str, Any],
        *,
        work: None = None,
        rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
        subjects: Sequence[bytes] = (),
    ) -> Recorded[None]: ...

    @overload
    def record(
        self,
        draft: Mapping[str, Any],
        *,
        work: Callable[[Connection], T],
        rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
        subjects: Sequence[bytes] = (),
    ) -> Recorded[T]: ...

    def record(
        self,
        draft: Mapping[str, Any],
        *,
        work: Callable[[Connection], Any] | None = None,
        rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
        subjects: Sequence[bytes] = (),
    ) -> Recorded[Any]:
        """Append one entry; block until it is durable.

        `work` runs in the append's transaction (in a savepoint, so its own exception
        reaches the caller with nothing of it written); `rows` are plain inserts, as
        `(table, rows)`, written in the same transaction without a savepoint, merged with
        the batch's other rows for the same table (a failing row fails the whole batch).
        Any failure of the append itself is `AuditUnavailable`.
        """
        unit = _Unit(draft, work, tuple(subjects), rows)
        if not self._enqueue(unit):
            self._append([unit])
        assert unit.done is not None  # noqa: S101 - a thread caller's unit has its lock
        unit.done.acquire()
        return unit.recorded()

    async def record_async(
        self,
        draft: Mapping[str, Any],
        *,
        rows: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]] = (),
        subjects: Sequence[bytes] = (),
    ) -> Recorded[None]:
        """`record` for a coroutine: await the entry's durability without holding a
        thread. Without a running appender thread, the append runs in the thread pool."""
        if self._thread is None:
            return await asyncio.to_thread(self.record, draft, rows=rows, subjects=subjects)
        loop = asyncio.get_running_loop()
        unit = _Unit(draft, None, tuple(subjects), rows, loop)
        self._check_open(unit)
        # Held back until the loop's next turn, then queued with every unit its other
        # requests made meanwhile: the appender wakes once for all of them and writes
        # them as one batch, where queued one by one each wake-up would take what had
        # arrived so far, often one unit, and pay a transaction and an fsync for it.
        held = self._held.get(loop)
        if held is None:
            held = self._held[loop] = []
            loop.call_soon(self._release_held, loop)
        held.append(unit)
        assert unit.future is not None  # noqa: S101 - an asyncio caller's unit has its future
        # A cancelled request cancels only its wait: the unit stays queued, its entry is
        # appended all the same, and `_wake` passes over a future already done.
        await unit.future
        return unit.recorded()

    def _check_open(self, unit: _Unit) -> None:
        """Check and encode an asyncio caller's unit; `AuditUnavailable` once closed."""
        _check_tokens(unit)
        pre_encode(unit, self._origin)
        if self._closed:
            raise AuditUnavailable("The audit log is closed.")

    def _release_held(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`: queue the units its requests recorded since the last turn, all at
        once (or fail them, if the log closed meanwhile)."""
        units = self._held.pop(loop, [])
        with self._door:
            if not self._closed:
                self._queue.put(units)
                return
        for unit in units:
            unit.error = AuditUnavailable("The audit log is closed.")
        _wake(units)

    def _enqueue(self, unit: _Unit) -> bool:
        """Check and encode a unit, and queue it if the appender thread runs; whether it
        was queued (read once, so a `start()` meanwhile cannot lose the unit)."""
        _check_tokens(unit)
        if unit.work is None:
            pre_encode(unit, self._origin)
        thread = self._thread
        if thread is not None and threading.current_thread() is thread:
            raise RuntimeError("audit work must not record entries itself")
        with self._door:
            if self._closed:
                raise AuditUnavailable("The audit log is closed.")
            if thread is not None:
                self._queue.put([unit])
        return thread is not None

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            # Whatever stopped the thread, nobody is left waiting for an answer.
            with self._door:
                self._closed = True
            self._drain()
            self._batch_connection.close()
            self._signatures.put(None)  # the checkpoint thread signs what was asked, then ends

    def _serve(self) -> None:
        get, get_nowait, cap = self._queue.get, self._queue.get_nowait, self._batch_cap
        while True:
            try:
                first = get(timeout=self._checkpoint_wait())
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            stop = first is _STOP
            # On SQLite the batch is gathered once the writer lock is ours: what arrived
            # while another process wrote joins it, so under load the lock is taken once
            # for more entries instead of more often for fewer.
            with self._batch_connection.turn():
                batch: list[_Unit] = [] if stop else list(first)  # type: ignore[call-overload]
                while not stop and len(batch) < cap:
                    try:
                        more = get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                    else:
                        batch.extend(more)  # type: ignore[arg-type]
                if batch:
                    self._commit(batch)
            if batch:
                _settle(batch)
                self._checkpoint_if_due()
            if stop:
                return

    def _drain(self) -> None:
        """Fail whatever was queued behind the stop marker."""
        while True:
            try:
                units = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(units, list):
                for unit in units:
                    unit.error = AuditUnavailable("The audit log is closed.")
                _settle(units)

    def _append(self, units: list[_Unit]) -> None:
        self._commit(units)
        _settle(units)

    def _commit(self, units: list[_Unit]) -> None:
        """Write a batch, or fail every unit of it that has no error of its own yet."""
        with self._lock:
            try:
                tree, tail = self._write_batch(units)
            except Exception as exc:  # noqa: BLE001 - fail closed, whatever went wrong
                self._cache = None
                self._last_failed = True
                self.damaged = str(exc) if isinstance(exc, TreeDamaged) else None
                _log.error(
                    "audit append failed; the batch is refused",
                    extra={"error_type": type(exc).__name__, "batch": len(units)},
                )
                for unit in units:
                    if unit.error is None:
                        unit.error = AuditUnavailable("The audit log could not record the act.")
                return
            self._cache, self._cache_tail = tree, tail
            self._last_failed = False
            self.damaged = None

    def _write_batch(self, units: list[_Unit]) -> tuple[merkle.CompactRange, bytes | None]:
        """`_write`, once more when it failed in a way a second try can mend (nothing of a
        failed try was committed): one caller's rows failed the merged insert (again with
        each unit's rows apart, so only that caller fails), or the appender's kept
        connection was lost (the server restarted, an idle connection was cut: again on
        a new one, as the pool's pre-ping would have opened)."""
        try:
            return self._write(units)
        except _RowsRefused:
            _log.warning("audit batch rows refused; the batch is written again",
                         extra={"batch": len(units)})
            isolate = True
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            _log.warning("audit connection lost; the batch is written again",
                         extra={"batch": len(units)})
            isolate = False
        for unit in units:
            unit.error, unit.result, unit.seq = None, None, -1
        return self._write(units, isolate=isolate)

    def _tree(self, driver: _Driver) -> tuple[merkle.CompactRange, bytes | None]:
        """The frontier at the stored size: the cached one if the stored tail is ours, the
        cached one extended by rows another appender wrote (checked on the way), or one
        rebuilt from stored nodes."""
        size, tail = driver_tail(driver)
        cached = self._cache
        if cached is None:
            return frontier(driver.conn, size), tail
        if cached.size == size and self._cache_tail == tail:
            return cached.copy(), tail
        if cached.size < size <= cached.size + FOREIGN_CHECK_LIMIT:
            return extend_checked(driver, cached, size, self._origin), tail
        return frontier(driver.conn, size), tail

    def _write(
        self, units: list[_Unit], *, isolate: bool = False
    ) -> tuple[merkle.CompactRange, bytes | None]:
        """One transaction for the batch; returns the new frontier and last leaf hash.

        Units' plain rows are merged into one insert per table and shape; if that insert
        fails, `_RowsRefused` says so and `isolate` writes the batch again with each unit's
        rows in a savepoint of their own, before its entry: a unit whose rows fail gets
        `AuditUnavailable` and no entry, and the rest of the batch is written."""
        on_thread = self._thread is not None and threading.current_thread() is self._thread
        with (self._batch_connection.transaction() if on_thread
              else write_transaction(self._engine)) as conn:
            if self._postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            driver = _Driver(conn)
            tree, tail = self._tree(driver)
            moment = self._clock()
            stamp = format_time(moment)
            keys = _SubjectKeys(driver, units)
            entries: list[dict[str, Any]] = []
            nodes: list[dict[str, Any]] = []
            orgs: list[dict[str, Any]] = []
            subjects: list[dict[str, Any]] = []
            new_subjects: list[dict[str, Any]] = []
            extra: _Merged = {}
            for unit in units:
                if isolate and unit.rows and not _insert_isolated(conn, unit):
                    continue
                built = self._run_unit(conn, unit, tree.size, moment, stamp, keys)
                if built is None:
                    continue
                if not isolate:
                    _merge_rows(extra, unit)
                unit.seq = tree.size
                entries.append(built.entry_row)
                nodes.extend(
                    {"level": lv, "idx": ix, "hash": h} for lv, ix, h in tree.append(built.leaf)
                )
                tail = built.leaf
                orgs.extend(built.org_rows)
                subjects.extend(built.subject_rows)
                new_subjects.extend(keys.rows_to_store(built.new_tokens))
            for table, rows in (
                (audit_subject, new_subjects),
                (audit_entry, entries),
                (audit_node, nodes),
                (audit_entry_org, orgs),
                (audit_subject_entry, subjects),
            ):
                if rows:
                    insert_rows(conn, table, rows)
            _insert_merged(conn, extra)
        return tree, tail

    def _run_unit(
        self,
        conn: Connection,
        unit: _Unit,
        seq: int,
        moment: datetime,
        stamp: str,
        keys: _SubjectKeys,
    ) -> _Built | None:
        """Run a unit's work in a savepoint and build its entry; None (with the unit's
        error set) when either fails, leaving nothing of it behind."""
        if unit.work is None:
            try:
                if unit.pre is None:
                    pre_encode(unit, self._origin)
                assert unit.pre is not None  # noqa: S101 - pre_encode sets it or raises
                return _splice(unit, unit.pre, seq, moment, stamp, keys)
            except Exception as exc:  # noqa: BLE001 - the caller's own error, handed back
                unit.error = exc
                return None
        savepoint = conn.begin_nested()
        try:
            unit.result = unit.work(conn)
            pre_encode(unit, self._origin)
            assert unit.pre is not None  # noqa: S101 - pre_encode sets it or raises
            built = _splice(unit, unit.pre, seq, moment, stamp, keys)
        except Exception as exc:  # noqa: BLE001 - the caller's own error, handed back
            savepoint.rollback()
            unit.error, unit.result = exc, None
            return None
        savepoint.commit()
        return built

    # -- checkpoints --

    def _checkpoint_wait(self) -> float:
        elapsed = time.monotonic() - self._last_signed_at
        return max(0.05, self._settings.checkpoint_every_seconds - elapsed)

    def _checkpoint_if_due(self) -> None:
        """Ask for a signature when N entries or T seconds have passed since the last one
        (this process's, or another's it reads from the signer's state)."""
        size = self._cache.size if self._cache is not None else None
        signed = self._signed_size or 0
        if size is None or size <= signed:
            self._last_signed_at = time.monotonic()
            return
        every = self._settings.checkpoint_every_entries
        due_by_count = size - signed >= every
        due_by_time = (
            time.monotonic() - self._last_signed_at >= self._settings.checkpoint_every_seconds
        )
        if not (due_by_count or due_by_time):
            return
        if not due_by_time:
            signed = self._signed_elsewhere(signed)
            if size - signed < every:
                return
        self._last_signed_at = time.monotonic()
        # From here on this size counts as signed: a refused signature waits a full period
        # before the next try rather than being asked for after every batch.
        self._signed_size = size
        self._signatures.put(size)

    def _signed_elsewhere(self, signed: int) -> int:
        """The last signed size, counting signatures of other processes' appenders (each
        process would otherwise sign every N entries of the shared log on its own)."""
        try:
            state = self.signer.remembered()
        except Exception:  # noqa: BLE001 - the signature asked for reports the problem
            return signed
        if state is not None and state.size > signed:
            self._signed_size = state.size
            return state.size
        return signed

    def _sign_forever(self) -> None:
        """The checkpoint thread: sign the sizes asked for until told to stop.

        Signing reads back and hashes every entry since the last signature and writes a
        checkpoint of its own; done in the appender thread, it held every request of the
        process for that long (tens of milliseconds under load, the tail of the answer
        times). Here the appender goes on meanwhile. Sizes asked for while a signature was
        being made (or waited for another process's) are signed as one: the largest."""
        stop = False
        while not stop:
            size = self._signatures.get()
            while True:
                try:
                    more = self._signatures.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                elif size is None or more > size:
                    size = more
            if size is None:
                return
            try:
                self.signer.sign_at(size)
            except Exception as exc:  # noqa: BLE001 - a refused signature must not stop the thread
                self.signer_problem = str(exc)
                _log.error("checkpoint not signed", extra={"error_type": type(exc).__name__})
                continue
            self.signer_problem = None
