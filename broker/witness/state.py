"""The witness's state: one SQLite file in its state folder, never the broker's database.

Two tables. `checkpoints` holds, per origin, the latest checkpoint the witness cosigned
(size, root, and the note with the log's signatures and the cosignature). `refusals` keeps
refused requests whose checkpoint a trusted log key signed, as evidence of what that log
presented: once per origin, reason and checkpoint body, with how often and when it was
last seen. Requests nobody trusted signed (malformed, unknown origin, no signature) are only
logged: anyone can send those, and they prove nothing about a log.

Checking a request against the latest state and recording the new state happen in one
`BEGIN IMMEDIATE` transaction, and the update is a compare-and-swap on the stored size, so
two concurrent requests can never roll the witness back (tlog-witness's race).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from broker.core.checkpoint import Checkpoint
from broker.core.witness import Latest, Refusal, Submission, judge

DATABASE_NAME = "witness.db"
BUSY_TIMEOUT_SECONDS = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note TEXT NOT NULL,
    cosigned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    times INTEGER NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER NOT NULL,
    request BLOB NOT NULL,
    digest BLOB NOT NULL UNIQUE
);
"""


@dataclass(frozen=True, slots=True)
class Cosigned:
    """The latest checkpoint cosigned for an origin."""

    origin: str
    size: int
    root: bytes
    note: str
    cosigned_at: int


@dataclass(frozen=True, slots=True)
class RefusalRecord:
    """A refused, log-signed request kept as evidence."""

    first_seen: int
    last_seen: int
    times: int
    origin: str
    reason: str
    status: int
    request: bytes


Cosign = Callable[[str], str]
"""Cosign a checkpoint body: returns the cosignature line(s), newline-terminated."""


class WitnessState:
    """The SQLite file of one witness; a connection per call, so threads may share it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / DATABASE_NAME
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        with closing(conn):
            # FULL: a cosignature is a promise; NORMAL may lose it on power loss.
            conn.execute("PRAGMA synchronous=FULL")
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            # IMMEDIATE takes the write lock before the read, so the check and the write
            # see the same state, across threads and processes alike.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def add(self, submission: Submission, checkpoint: Checkpoint, cosign: Cosign) -> str:
        """Judge `checkpoint` against the latest state, record it and return its cosignature.

        A `Refusal` is kept as evidence in the same transaction, then raised.
        """
        refused: Refusal | None = None
        with self._transaction() as conn:
            latest = _latest(conn, checkpoint.origin)
            try:
                judge(submission, checkpoint, latest)
            except Refusal as refusal:
                _keep_refusal(conn, submission, refusal)
                refused = refusal  # raised once the evidence is committed
            else:
                lines = cosign(submission.body)
                _swap(conn, checkpoint, latest, submission.note + lines)
        if refused is not None:
            raise refused
        return lines

    def latest(self, origin: str) -> Cosigned | None:
        """The latest cosigned checkpoint of `origin`, if any."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT origin, size, root, note, cosigned_at FROM checkpoints WHERE origin = ?",
                (origin,)).fetchone()
        return None if row is None else Cosigned(*row)

    def refusals(self) -> list[RefusalRecord]:
        """Every refusal kept as evidence, oldest first."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT first_seen, last_seen, times, origin, reason, status, request "
                "FROM refusals ORDER BY id").fetchall()
        return [RefusalRecord(*row) for row in rows]


def _latest(conn: sqlite3.Connection, origin: str) -> Latest:
    row = conn.execute("SELECT size, root FROM checkpoints WHERE origin = ?",
                       (origin,)).fetchone()
    return Latest() if row is None else Latest(row[0], bytes(row[1]))


def _swap(conn: sqlite3.Connection, checkpoint: Checkpoint, latest: Latest, note: str) -> None:
    """Record the new checkpoint only if the stored size is still `latest.size`."""
    now = int(time.time())
    values = (checkpoint.size, checkpoint.root, note, now, checkpoint.origin)
    if latest.size == 0:
        changed = conn.execute(
            "INSERT INTO checkpoints (size, root, note, cosigned_at, origin) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET size = excluded.size, "
            "root = excluded.root, note = excluded.note, cosigned_at = excluded.cosigned_at "
            "WHERE checkpoints.size = 0", values).rowcount
    else:
        changed = conn.execute(
            "UPDATE checkpoints SET size = ?, root = ?, note = ?, cosigned_at = ? "
            "WHERE origin = ? AND size = ?", (*values, latest.size)).rowcount
    if changed != 1:
        # Unreachable while every writer takes the write lock first; if one did not, answer
        # as the spec does for a stale old size rather than overwrite what it wrote.
        current = _latest(conn, checkpoint.origin).size
        raise Refusal(409, "old_size_stale", f"the latest cosigned size is {current}",
                      latest_size=current)


def _keep_refusal(conn: sqlite3.Connection, submission: Submission, refusal: Refusal) -> None:
    digest = hashlib.sha256("\n".join(
        (submission.origin, refusal.reason, submission.body)).encode("utf-8")).digest()
    now = int(time.time())
    conn.execute(
        "INSERT INTO refusals (first_seen, last_seen, times, origin, reason, status, request, "
        "digest) VALUES (?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET "
        "last_seen = excluded.last_seen, times = refusals.times + 1",
        (now, now, submission.origin, refusal.reason, refusal.status, submission.request,
         digest))

