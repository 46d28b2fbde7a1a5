"""The one audit appender: group commit of entries into the insert-only Merkle log.

Callers (request threads) hand a work unit to `AuditLog.record` and block until their
entry is durable. One appender thread takes every queued unit (up to a cap), opens one
write transaction (SQLite `BEGIN IMMEDIATE`; PostgreSQL `pg_advisory_xact_lock`, so
several processes serialise), runs each unit's `work` in a savepoint, numbers and encodes
the entries, inserts them with the tree nodes they complete, commits, and only then tells
each caller its `seq`. Fail closed: if the transaction fails, every caller of the batch
gets `AuditUnavailable` and nothing is written.

The tree's right frontier (a `CompactRange`) is cached between batches and checked
against the stored tail at the start of each. When another process appended meanwhile,
the frontier is extended over its rows after cheap checks (leaf hash, seq, origin, the
nodes it stored), so a row slipped in behind the appenders' backs stops the appender
(fail closed) rather than being built into every later root; after a restart the
frontier is rebuilt from stored nodes in O(log n) reads.
"""

from __future__ import annotations

import _thread
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import Connection, Engine, Table, select, text

from broker.audit import merkle
from broker.audit.entry import (
    MAX_SAFE_INTEGER,
    Entry,
    canonical_json,
    format_time,
    subject_tag,
)
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
    read_nodes,
    tree_tail,
)
from broker.clock import utcnow
from broker.db import is_sqlite, ping, write_transaction
from broker.errors import AuditUnavailable
from broker.keys import KeyRing
from broker.settings import Settings

T = TypeVar("T")
_log = logging.getLogger("broker.audit")
APPENDER_FILLS = frozenset({"v", "origin", "id", "seq", "time"})
SUBJECT_KEY_BYTES = 32
DEFAULT_BATCH_CAP = 1000
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
    """One caller's entry and work; the caller blocks on `done` until it is settled."""

    __slots__ = ("draft", "done", "entry_id", "error", "result", "seq", "subjects", "work")

    def __init__(
        self,
        draft: Mapping[str, Any],
        work: Callable[[Connection], Any] | None,
        subjects: Sequence[bytes],
    ) -> None:
        self.draft = draft
        self.work = work
        self.subjects = subjects
        self.seq = -1
        self.entry_id = ""
        self.result: Any = None
        self.error: BaseException | None = None
        # A bare lock is the cheapest one-shot event: held now, released when settled.
        self.done = _thread.allocate_lock()
        self.done.acquire()


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

    def __init__(self, conn: Connection, units: Sequence[_Unit]) -> None:
        tokens = sorted({t for u in units for t in _unit_tokens(u)})
        self.known: dict[bytes, bytes] = {}
        for chunk in chunks(tokens):
            rows = conn.execute(
                select(audit_subject.c.token, audit_subject.c.subject_key).where(
                    audit_subject.c.token.in_(chunk)
                )
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


_sorted_json = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def _small_ints(value: Any) -> bool:
    """No integer beyond 2**53 anywhere in a JSON value (RFC 8785 / I-JSON)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int and not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
            return False
    return True


def entry_bytes(dumped: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of a validated entry (the model admits no floats), fast.

    The C encoder with sorted keys gives RFC 8785 when every key is ASCII (code point
    order is then UTF-16 order) and every integer lies within 2**53. An ASCII result
    proves the first; only `objects` and the items' transform parameters hold integers
    the model does not bound. Anything else goes through `canonical_json` (slower, equal
    to the `rfc8785` package by property test). The tests hold stored entries to
    `decode_entry`, which re-encodes them with `rfc8785`.
    """
    try:
        data = _sorted_json(dumped).encode("utf-8")
    except UnicodeEncodeError:
        return canonical_json(dumped)
    if data.isascii() and _small_ints([dumped["objects"], [i["fields"] for i in dumped["items"]]]):
        return data
    return canonical_json(dumped)


def new_entry_id() -> str:
    return "ae_" + secrets.token_hex(10)


def _build(
    unit: _Unit, seq: int, origin: str, moment: datetime, stamp: str, keys: _SubjectKeys
) -> _Built:
    """Number, tag and encode one unit's entry."""
    draft = dict(unit.draft)
    clash = APPENDER_FILLS.intersection(draft)
    if clash:
        raise ValueError(f"the appender fills {', '.join(sorted(clash))}; leave them out")
    entry_id = new_entry_id()
    tokens: dict[bytes, None] = {}
    created: list[bytes] = []

    def tag(token: bytes) -> str:
        key, new = keys.key(token)
        if new:
            created.append(token)
        tokens[token] = None
        return subject_tag(key, entry_id)

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
    in_items = set(tokens)
    loose = [tag(t) for t in dict.fromkeys(unit.subjects) if t not in in_items]
    if loose:
        # The entry shape has no top-level tag list: subjects the act concerns outside
        # any item are tagged under objects.subject_tags.
        draft["objects"] = {**(draft.get("objects") or {}), "subject_tags": sorted(loose)}
    entry = Entry.model_validate(
        {**draft, "v": 1, "origin": origin, "id": entry_id, "seq": seq, "time": stamp}
    )
    data = entry_bytes(entry.model_dump(mode="json"))
    leaf = merkle.leaf_hash(data)
    orgs = {entry.actor.org, *(i.source for i in entry.items)} - {None}
    unit.entry_id = entry_id
    return _Built(
        entry_row={
            "seq": seq,
            "entry_id": entry_id,
            "action": entry.action,
            "org": entry.actor.org,
            "purpose": entry.purpose,
            "time": moment,
            "bytes": data,
            "leaf_hash": leaf,
        },
        leaf=leaf,
        org_rows=[{"org": org, "seq": seq} for org in sorted(o for o in orgs if o)],
        subject_rows=[{"token": t, "seq": seq} for t in tokens],
        new_tokens=created,
    )


def extend_checked(
    conn: Connection, cached: merkle.CompactRange, size: int, origin: str
) -> merkle.CompactRange:
    """Extend our frontier by the rows another appender wrote since, checking each row's
    leaf hash, seq and origin and the nodes it completed: a row slipped in behind the
    appenders' backs is refused (fail closed) instead of being built into every later
    root. These checks are cheap (no parsing); live verification does the full ones."""
    rows = conn.execute(
        select(audit_entry.c.seq, audit_entry.c.bytes, audit_entry.c.leaf_hash)
        .where(audit_entry.c.seq >= cached.size, audit_entry.c.seq < size)
        .order_by(audit_entry.c.seq)
    ).all()
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
    stored = read_nodes(conn, [(level, index) for level, index, _ in completed])
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
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    row_marks = "(" + ",".join(["?"] * len(columns)) + ")"  # sqlite3's qmark style
    head = f"INSERT INTO {names} VALUES "  # noqa: S608
    per_statement = max(1, MAX_PARAMETERS // len(columns))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params: list[Any] = []
        for row in chunk:
            for column, process in zip(columns, processors, strict=True):
                value = row[column]
                params.append(process(value) if process is not None else value)
        conn.exec_driver_sql(head + ",".join([row_marks] * len(chunk)), tuple(params))


# --- The appender ---


_STOP = object()


class AuditLog:
    """The audit appender of one process; see the module docstring.

    `start()` runs the group-commit thread (and periodic checkpoints); without it, for
    command-line use, `record` appends synchronously in the caller's thread.
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
        self._queue: queue.SimpleQueue[_Unit | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._door = threading.Lock()  # no unit enters the queue behind the stop marker
        self._cache: merkle.CompactRange | None = None
        self._cache_tail: bytes | None = None
        self._thread: threading.Thread | None = None
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
        self._thread = threading.Thread(target=self._run, name="audit-appender", daemon=True)
        self._thread.start()

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

    def use_keys(self, keys: KeyRing) -> None:
        """Switch to a reloaded key ring (after a rotation): later checkpoints use its
        active checkpoint key, and verification accepts every version it holds."""
        self._keys = keys
        self.signer.use_keys(keys)

    @property
    def healthy(self) -> bool:
        """False once closed, when the thread died, when the stored tree is damaged, or
        after a failed append while the database does not answer."""
        if self._closed or (self._thread is not None and not self._thread.is_alive()):
            return False
        if self.damaged is not None:
            return False
        return not self._last_failed or ping(self._engine)

    # -- recording --

    @overload
    def record(
        self, draft: Mapping[str, Any], *, work: None = None, subjects: Sequence[bytes] = ()
    ) -> Recorded[None]: ...

    @overload
    def record(
        self,
        draft: Mapping[str, Any],
        *,
        work: Callable[[Connection], T],
        subjects: Sequence[bytes] = (),
    ) -> Recorded[T]: ...

    def record(
        self,
        draft: Mapping[str, Any],
        *,
        work: Callable[[Connection], Any] | None = None,
        subjects: Sequence[bytes] = (),
    ) -> Recorded[Any]:
        """Append one entry (and run `work` in its transaction); block until durable.

        `work`'s own exception reaches the caller with nothing written; any failure of
        the append itself is `AuditUnavailable`.
        """
        unit = _Unit(draft, work, tuple(subjects))
        _check_tokens(unit)
        thread = self._thread
        if thread is not None and threading.current_thread() is thread:
            raise RuntimeError("audit work must not record entries itself")
        with self._door:
            if self._closed:
                raise AuditUnavailable("The audit log is closed.")
            if thread is not None:
                self._queue.put(unit)
        if thread is None:
            self._append([unit])
        unit.done.acquire()
        if unit.error is not None:
            raise unit.error
        return Recorded(unit.seq, unit.entry_id, unit.result)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            # Whatever stopped the thread, nobody is left waiting for an answer.
            with self._door:
                self._closed = True
            self._drain()

    def _serve(self) -> None:
        get, get_nowait, cap = self._queue.get, self._queue.get_nowait, self._batch_cap
        while True:
            try:
                first = get(timeout=self._checkpoint_wait())
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            stop = first is _STOP
            batch: list[_Unit] = [] if stop else [first]  # type: ignore[list-item]
            while not stop and len(batch) < cap:
                try:
                    more = get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                else:
                    batch.append(more)  # type: ignore[arg-type]
            if batch:
                self._append(batch)
                self._checkpoint_if_due()
            if stop:
                return

    def _drain(self) -> None:
        """Fail whatever was queued behind the stop marker."""
        while True:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(unit, _Unit):
                unit.error = AuditUnavailable("The audit log is closed.")
                unit.done.release()

    def _append(self, units: list[_Unit]) -> None:
        with self._lock:
            try:
                tree, tail = self._write(units)
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
                    unit.done.release()
                return
            self._cache, self._cache_tail = tree, tail
            self._last_failed = False
            self.damaged = None
        for unit in units:
            unit.done.release()

    def _tree(self, conn: Connection) -> tuple[merkle.CompactRange, bytes | None]:
        """The frontier at the stored size: the cached one if the stored tail is ours, the
        cached one extended by rows another appender wrote (checked on the way), or one
        rebuilt from stored nodes."""
        size, tail = tree_tail(conn)
        cached = self._cache
        if cached is None:
            return frontier(conn, size), tail
        if cached.size == size and self._cache_tail == tail:
            return cached.copy(), tail
        if cached.size < size <= cached.size + FOREIGN_CHECK_LIMIT:
            return extend_checked(conn, cached, size, self._origin), tail
        return frontier(conn, size), tail

    def _write(self, units: list[_Unit]) -> tuple[merkle.CompactRange, bytes | None]:
        """One transaction for the batch; returns the new frontier and last leaf hash."""
        with write_transaction(self._engine) as conn:
            if self._postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            tree, tail = self._tree(conn)
            moment = self._clock()
            stamp = format_time(moment)
            keys = _SubjectKeys(conn, units)
            entries: list[dict[str, Any]] = []
            nodes: list[dict[str, Any]] = []
            orgs: list[dict[str, Any]] = []
            subjects: list[dict[str, Any]] = []
            new_subjects: list[dict[str, Any]] = []
            for unit in units:
                built = self._run_unit(conn, unit, tree.size, moment, stamp, keys)
                if built is None:
                    continue
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
                return _build(unit, seq, self._origin, moment, stamp, keys)
            except Exception as exc:  # noqa: BLE001 - the caller's own error, handed back
                unit.error = exc
                return None
        savepoint = conn.begin_nested()
        try:
            unit.result = unit.work(conn)
            built = _build(unit, seq, self._origin, moment, stamp, keys)
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
        """Sign when N entries or T seconds have passed since the last signature."""
        size = self._cache.size if self._cache is not None else None
        signed = self._signed_size or 0
        if size is None or size <= signed:
            self._last_signed_at = time.monotonic()
            return
        due_by_count = size - signed >= self._settings.checkpoint_every_entries
        due_by_time = (
            time.monotonic() - self._last_signed_at >= self._settings.checkpoint_every_seconds
        )
        if not (due_by_count or due_by_time):
            return
        self._last_signed_at = time.monotonic()
        try:
            checkpoint = self.signer.sign()
        except Exception as exc:  # noqa: BLE001 - a refused signature must not stop appends
            self.signer_problem = str(exc)
            # Wait a full period before trying again rather than at every batch.
            self._signed_size = size
            _log.error("checkpoint not signed", extra={"error_type": type(exc).__name__})
            return
        self.signer_problem = None
        self._signed_size = checkpoint.size
