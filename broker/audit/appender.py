"""The one audit appender: group commit of entries into the insert-only Merkle log.

Callers (request threads) hand an entry to `AuditLog.record` and block until it is
durable; coroutines await `AuditLog.record_async`, whose entries wait for the event loop's
next turn and are queued together, so one wake-up of the appender takes all that the
loop's requests recorded meanwhile. One appender thread takes every queued entry (up to a
cap), opens one write transaction (SQLite `BEGIN IMMEDIATE`; PostgreSQL
`pg_advisory_xact_lock`, so several processes serialise), writes the batch
(`broker.audit.writes`), commits, and only then tells each caller its `seq`. Fail closed:
if the transaction fails, every caller of the batch gets `AuditUnavailable` and nothing is
written.

The tree's right frontier (a `CompactRange`) is cached between batches and checked
against the stored tail at the start of each (`writes.stored_frontier`); after a restart
it is rebuilt from stored nodes in O(log n) reads. Checkpoints are signed beside the
appender, in a thread of their own (`broker.audit.schedule`). How the log is kept and
checked is described in docs/audit.md.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar, overload

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.exc import DBAPIError

from broker.audit.driver import BatchConnection, Driver
from broker.audit.encoding import check_tokens, pre_encode
from broker.audit.guard import LogGuard, LogUntrusted
from broker.audit.pending import Pending, Recorded, settle
from broker.audit.schedule import CheckpointSchedule
from broker.audit.signer import CheckpointSigner
from broker.audit.tables import ADVISORY_LOCK_KEY, TreeDamaged
from broker.audit.writes import RowsRefused, stored_frontier, write_entries
from broker.clock import utcnow
from broker.core import merkle
from broker.db import is_sqlite, ping, write_transaction
from broker.errors import AuditUnavailable
from broker.keys import KeyRing
from broker.settings import Settings

T = TypeVar("T")
_log = logging.getLogger("broker.audit")
DEFAULT_BATCH_CAP: Final = 1000
"""Entries one batch gathers at most (a loop turn's entries stay together, so it may hold
more)."""
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
        self._origin = settings.audit_origin
        self._postgres = not is_sqlite(engine)
        self._batch_cap = max(1, batch_cap)
        self._clock = clock
        self.signer = signer or CheckpointSigner(engine, keys, settings)
        self._schedule = CheckpointSchedule(self.signer, settings)
        self.guard = LogGuard(self.signer)
        # Queued: lists of entries (a loop turn's entries travel together), or _STOP.
        self._queue: queue.SimpleQueue[list[Pending] | object] = queue.SimpleQueue()
        self._held: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
        self._lock = threading.Lock()
        self._door = threading.Lock()  # no entry enters the queue behind the stop marker
        self._cache: merkle.CompactRange | None = None
        self._cache_tail: bytes | None = None
        self._thread: threading.Thread | None = None
        self._batch_connection = BatchConnection(engine)
        self._closed = False
        self._last_failed = False
        self.damaged: str | None = None

    # -- lifecycle --

    def start(self) -> None:
        """Start the appender thread (idempotent)."""
        if self._thread is not None:
            return
        if self._closed:
            raise RuntimeError("the audit log is closed")
        self.guard.check()
        self._schedule.start()
        self._thread = threading.Thread(target=self._run, name="audit-appender", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self._thread = None
            self._schedule.stop()
            self._schedule.join()
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
        self._schedule.join()  # told to stop by the appender as it ended
        self.signer.close()
        self._batch_connection.close()

    def use_keys(self, keys: KeyRing) -> None:
        """Switch to a reloaded key ring (after a rotation): later checkpoints use its
        active checkpoint key, and verification accepts every version it holds."""
        self._keys = keys
        self.signer.use_keys(keys)

    @property
    def signer_problem(self) -> str | None:
        """Why the last checkpoint was not signed (None once one is)."""
        return self._schedule.problem

    @property
    def healthy(self) -> bool:
        """False once closed, when either thread died, when the stored tree is damaged, or
        after a failed append while the database does not answer."""
        if self._closed or self._schedule.died or (
            self._thread is not None and not self._thread.is_alive()
        ):
            return False
        if self.damaged is not None or self.guard.problem is not None:
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
        pending = Pending(draft, work, tuple(subjects), rows)
        if not self._enqueue(pending):
            self._append([pending])
        assert pending.done is not None  # noqa: S101 - a thread caller's entry has its lock
        pending.done.acquire()
        return pending.recorded()

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
        pending = Pending(draft, None, tuple(subjects), rows, loop)
        self._check_open(pending)
        # Held back until the loop's next turn, then queued with every entry its other
        # requests made meanwhile: the appender wakes once for all of them and writes
        # them as one batch, where queued one by one each wake-up would take what had
        # arrived so far, often one entry, and pay a transaction and an fsync for it.
        held = self._held.get(loop)
        if held is None:
            held = self._held[loop] = []
            loop.call_soon(self._release_held, loop)
        held.append(pending)
        assert pending.future is not None  # noqa: S101 - an asyncio caller's entry has its future
        # A cancelled request cancels only its wait: the entry stays queued, it is
        # appended all the same, and settling passes over a future already done.
        await pending.future
        return pending.recorded()

    def _check_open(self, pending: Pending) -> None:
        """Check and encode an asyncio caller's entry; `AuditUnavailable` once closed."""
        check_tokens(pending)
        pre_encode(pending, self._origin)
        if self._closed:
            raise AuditUnavailable("The audit log is closed.")
        self.guard.refuse()

    def _release_held(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`: queue the entries its requests recorded since the last turn, all at
        once (or fail them, if the log closed meanwhile)."""
        batch = self._held.pop(loop, [])
        with self._door:
            if not self._closed:
                self._queue.put(batch)
                return
        for pending in batch:
            pending.error = AuditUnavailable("The audit log is closed.")
        settle(batch)

    def _enqueue(self, pending: Pending) -> bool:
        """Check and encode an entry, and queue it if the appender thread runs; whether it
        was queued (read once, so a `start()` meanwhile cannot lose the entry)."""
        check_tokens(pending)
        if pending.work is None:
            pre_encode(pending, self._origin)
        thread = self._thread
        if thread is not None and threading.current_thread() is thread:
            raise RuntimeError("audit work must not record entries itself")
        self.guard.refuse()
        with self._door:
            if self._closed:
                raise AuditUnavailable("The audit log is closed.")
            if thread is not None:
                self._queue.put([pending])
        return thread is not None

    # -- the appender thread --

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            # Whatever stopped the thread, nobody is left waiting for an answer.
            with self._door:
                self._closed = True
            self._drain()
            self._batch_connection.close()
            self._schedule.stop()  # the checkpoint thread signs what was asked, then ends

    def _serve(self) -> None:
        get, get_nowait, cap = self._queue.get, self._queue.get_nowait, self._batch_cap
        while True:
            try:
                first = get(timeout=self._schedule.wait())
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            stop = first is _STOP
            # On SQLite the batch is gathered once the writer lock is ours: what arrived
            # while another process wrote joins it, so under load the lock is taken once
            # for more entries instead of more often for fewer.
            with self._batch_connection.turn():
                batch: list[Pending] = [] if stop else list(first)  # type: ignore[call-overload]
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
                settle(batch)
                self._checkpoint_if_due()
            if stop:
                return

    def _checkpoint_if_due(self) -> None:
        if self.guard.problem is not None:
            return  # nothing is signed over a log behind or forked
        cache = self._cache
        self._schedule.sign_if_due(cache.size if cache is not None else None)

    def _drain(self) -> None:
        """Fail whatever was queued behind the stop marker."""
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(batch, list):
                for pending in batch:
                    pending.error = AuditUnavailable("The audit log is closed.")
                settle(batch)

    def _append(self, batch: list[Pending]) -> None:
        self._commit(batch)
        settle(batch)

    def _commit(self, batch: list[Pending]) -> None:
        """Write a batch, or fail every entry of it that has no error of its own yet."""
        with self._lock:
            try:
                tree, tail = self._write_batch(batch)
            except Exception as exc:  # noqa: BLE001 - fail closed, whatever went wrong
                self._cache = None
                self._last_failed = True
                self.damaged = str(exc) if isinstance(exc, TreeDamaged) else None
                _log.error(
                    "audit append failed; the batch is refused",
                    extra={"error_type": type(exc).__name__, "batch": len(batch)},
                )
                refusal = (exc if isinstance(exc, LogUntrusted)
                           else AuditUnavailable("The audit log could not record the act."))
                for pending in batch:
                    if pending.error is None:
                        pending.error = refusal
                return
            self._cache, self._cache_tail = tree, tail
            self._last_failed = False
            self.damaged = None

    def _write_batch(self, batch: list[Pending]) -> tuple[merkle.CompactRange, bytes | None]:
        """`_write`, once more when it failed in a way a second try can mend (nothing of a
        failed try was committed): one caller's rows failed the merged insert (again with
        each entry's rows apart, so only that caller fails), or the appender's kept
        connection was lost (the server restarted, an idle connection was cut: again on
        a new one, as the pool's pre-ping would have opened)."""
        try:
            return self._write(batch)
        except RowsRefused:
            _log.warning("audit batch rows refused; the batch is written again",
                         extra={"batch": len(batch)})
            isolate = True
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            _log.warning("audit connection lost; the batch is written again",
                         extra={"batch": len(batch)})
            isolate = False
        for pending in batch:
            pending.error, pending.result, pending.seq = None, None, -1
        return self._write(batch, isolate=isolate)

    def _write(
        self, batch: list[Pending], *, isolate: bool = False
    ) -> tuple[merkle.CompactRange, bytes | None]:
        """One transaction for the batch (see `writes.write_entries`); returns the new
        frontier and last leaf hash."""
        on_thread = self._thread is not None and threading.current_thread() is self._thread
        with (self._batch_connection.transaction() if on_thread
              else write_transaction(self._engine)) as conn:
            if self._postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            driver = Driver(conn)
            tree, tail = stored_frontier(driver, self._cache, self._cache_tail, self._origin)
            if tree.size < self.guard.floor:
                self.guard.problem = (f"the log holds {tree.size} entries, but a checkpoint "
                                      f"of {self.guard.floor} was signed or seen")
                self.guard.refuse()
            tail = write_entries(conn, driver, tree, tail, batch, self._clock(), self._origin,
                                 isolate=isolate)
        return tree, tail
