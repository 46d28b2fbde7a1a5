"""The checkpoint signer: signs the tree's head, but never a head that rewrites what it signed.

The signer remembers the last (size, root) it signed in a state file beside the key ring
(`<key_dir>/checkpoint-signer.json`, owner-only), apart from the database. Before signing
a new head it checks a consistency proof from the remembered head to the current tree:
a database restored from an older backup, truncated, or rewritten is refused
(`CheckpointRefused`), so the broker never vouches for a history that contradicts one it
already published. One key ring signs for one log: pointing a key directory at another
database is, to the signer, exactly such a rewrite.

Signing is serialised between threads and processes with an exclusive `flock` on
`checkpoint-signer.lock`, so two broker processes sharing the key directory never lose
each other's state updates.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from broker.audit.leadership import SignerLeadership
from broker.audit.tables import (
    TreeDamaged,
    audit_checkpoint,
    entry_rows,
    frontier,
    node_source,
    stored_root,
    tree_size,
)
from broker.clock import as_utc, rfc3339, utcnow
from broker.core import merkle
from broker.core.checkpoint import (
    CheckpointInvalid,
    Verifier,
    open_checkpoint,
    signed_checkpoint,
)
from broker.db import write_transaction
from broker.errors import AuditUnavailable
from broker.keys import KeyRing
from broker.settings import Settings

STATE_FILE: Final = "checkpoint-signer.json"
RECHECK_LIMIT: Final = 100_000
"""Entries since the last signed head that the signer re-hashes before signing."""
LOCK_FILE: Final = "checkpoint-signer.lock"


class CheckpointRefused(AuditUnavailable):
    """The current log does not extend the last head the signer signed (rolled back or
    rewritten), or the signer's state cannot be read: no checkpoint is signed."""

    code = "checkpoint_refused"
    title = "Checkpoint refused"


@dataclass(frozen=True, slots=True)
class SignerState:
    """The last head this signer signed."""

    origin: str
    size: int
    root: bytes
    signed_at: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as stored in `audit_checkpoint`."""

    id: int
    size: int
    root: bytes
    time: datetime
    note: str


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    """The most recently stored checkpoint, whatever its size."""
    row = conn.execute(
        select(audit_checkpoint).order_by(audit_checkpoint.c.id.desc()).limit(1)
    ).first()
    return _stored(row) if row is not None else None


def all_checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    """Every stored checkpoint, oldest first."""
    rows = conn.execute(select(audit_checkpoint).order_by(audit_checkpoint.c.id)).all()
    return [_stored(row) for row in rows]


def _stored(row: object) -> StoredCheckpoint:
    return StoredCheckpoint(
        id=int(row.id),  # type: ignore[attr-defined]
        size=int(row.size),  # type: ignore[attr-defined]
        root=bytes(row.root_hash),  # type: ignore[attr-defined]
        time=as_utc(row.time),  # type: ignore[attr-defined]
        note=str(row.note),  # type: ignore[attr-defined]
    )


def continuity_problem(
    conn: Connection, state: SignerState | None, origin: str, size: int, root: bytes
) -> str | None:
    """Why the tree (size, root) does not extend the signer's last head, or None if it does."""
    if state is None:
        return None
    if state.origin != origin:
        return (
            f"the checkpoint signer's state belongs to the log {state.origin!r}, "
            f"not {origin!r}"
        )
    if size < state.size:
        return (
            f"the log holds {size} entries, but a checkpoint of {state.size} entries was "
            "already signed: the database was rolled back or truncated"
        )
    if size == state.size:
        if root != state.root:
            return f"the log's root at size {size} differs from the root already signed"
        return None
    plan = merkle.consistency_proof_nodes(state.size, size)
    try:
        proof = merkle.fold_plan(plan, node_source(conn, merkle.plan_nodes(plan)))
    except TreeDamaged as exc:
        return f"no consistency proof from the last signed checkpoint: {exc}"
    if not merkle.verify_consistency(state.size, size, state.root, root, proof):
        return (
            f"the log is not an extension of the checkpoint of {state.size} entries "
            "already signed: its history was rewritten"
        )
    return None


def new_entries_problem(conn: Connection, start: int, size: int, root: bytes) -> str | None:
    """Why the entries since the last signed head do not hash into the stored tree's
    `root`, or None: each row in [start, size) is present, its leaf hash is that of its
    bytes, and the tree grown from the stored frontier at `start` ends at `root`."""
    if size - start > RECHECK_LIMIT:
        return None  # too far back to re-read at signing time; live verification does it
    try:
        tree = frontier(conn, start)
    except TreeDamaged as exc:
        return str(exc)
    for seq, data, leaf in entry_rows(conn, size, start):
        if seq != tree.size or merkle.leaf_hash(data) != leaf:
            return f"entry {tree.size} does not match the stored tree"
        tree.add(leaf)
    if tree.size != size:
        return f"entry {tree.size} is missing"
    if tree.root() != root:
        return "the entries since the last checkpoint do not match the stored tree"
    return None


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class CheckpointSigner:
    """Signs C2SP checkpoints of one log with the key ring's active checkpoint key."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyRing,
        settings: Settings,
        *,
        state_path: Path | None = None,
    ) -> None:
        self.engine = engine
        self._keys = keys
        self.origin = settings.audit_origin
        self.key_name = settings.checkpoint_key_name
        self.state_path = state_path or Path(settings.key_dir) / STATE_FILE
        self._lock_path = self.state_path.with_name(
            LOCK_FILE if self.state_path.name == STATE_FILE else self.state_path.name + ".lock"
        )
        self._mutex = threading.Lock()
        self.leadership = SignerLeadership(engine)

    def close(self) -> None:
        """Give up the signer's role, if this process held it."""
        self.leadership.release()

    # -- keys --

    def use_keys(self, keys: KeyRing) -> None:
        """Switch to a reloaded key ring (one assignment: a signature in progress finishes
        with the ring it started with)."""
        self._keys = keys

    def verifier(self) -> Verifier:
        """The verifier of the active checkpoint key (what new checkpoints are signed with)."""
        active = self._keys.active_checkpoint
        return Verifier.from_public_key(self.key_name, active.public_bytes)

    def verifiers(self) -> list[Verifier]:
        """Verifiers of every checkpoint key version, for checking older checkpoints."""
        return [
            Verifier.from_public_key(self.key_name, key.public_bytes)
            for _, key in sorted(self._keys.checkpoint.items())
        ]

    # -- state --

    def remembered(self) -> SignerState | None:
        """The last head signed, from the state file; None before the first signature."""
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            root = base64.b64decode(data["root_hash"], validate=True)
            state = SignerState(
                str(data["origin"]), int(data["size"]), root, str(data["signed_at"])
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise CheckpointRefused(
                f"the checkpoint signer's state file {self.state_path.name} is unreadable"
            ) from exc
        if len(root) != merkle.HASH_SIZE or state.size < 0:
            raise CheckpointRefused(
                f"the checkpoint signer's state file {self.state_path.name} is malformed"
            )
        return state

    def _remember(self, size: int, root: bytes, signed_at: datetime) -> None:
        payload = json.dumps(
            {
                "origin": self.origin,
                "size": size,
                "root_hash": base64.b64encode(root).decode("ascii"),
                "signed_at": rfc3339(signed_at),
            },
            sort_keys=True,
        ).encode()
        directory = self.state_path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = directory / f".{self.state_path.name}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.state_path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remember_seen(self, size: int, root: bytes, signed_at: datetime) -> None:
        """Remember a checkpoint another process signed (verified, and extending the last
        head remembered), so this node refuses a log behind it as it would its own."""
        with self._mutex, _exclusive(self._lock_path):
            state = self.remembered()
            if state is None or size > state.size:
                self._remember(size, root, signed_at)

    # -- signing --

    def sign(self) -> StoredCheckpoint:
        """Sign and store a checkpoint of the current tree (reusing the latest stored one
        when it already covers exactly this head).

        CheckpointRefused when the tree does not extend the last signed head (consistency
        proof), or when the entries added since do not hash into it.
        """
        with self._mutex, _exclusive(self._lock_path):
            checkpoint = self._sign(self.remembered(), None)
        assert checkpoint is not None  # noqa: S101 - only a signature at a size gives way
        return checkpoint

    def sign_at(self, size: int) -> StoredCheckpoint | None:
        """Sign a checkpoint of the first `size` entries (durable ones: the appender's), or
        None when a head of at least that size is signed already (another process's
        appender got there first, or another process is the deployment's signer: see
        `broker.audit.leadership`). Refused as `sign` is."""
        if not self.leadership.held():
            return None
        with self._mutex, _exclusive(self._lock_path):
            state = self.remembered()
            if state is not None and state.size >= size:
                return None
            return self._sign(state, size)

    def _sign(self, state: SignerState | None, at: int | None) -> StoredCheckpoint | None:
        """Under the signing locks: sign the tree at `at` entries (None: all of them); None
        when a stored checkpoint already covers `at` entries (the state file may lag the
        table by a signature that was stored but not remembered)."""
        with self.engine.connect() as conn:
            latest = latest_checkpoint(conn)
            if at is not None and latest is not None and latest.size >= at:
                return None
            stored = tree_size(conn)
            if at is not None and at > stored:
                raise CheckpointRefused(
                    f"refusing to sign a checkpoint of {at} entries: the log holds {stored}"
                )
            size = stored if at is None else at
            try:
                root = stored_root(conn, size)
            except TreeDamaged as exc:
                raise CheckpointRefused(f"the log's tree is damaged: {exc}") from None
            problem = continuity_problem(
                conn, state, self.origin, size, root
            ) or new_entries_problem(conn, state.size if state else 0, size, root)
            if problem:
                raise CheckpointRefused(f"refusing to sign a checkpoint: {problem}")
        if latest is not None and self._reusable(latest, size, root):
            checkpoint = latest
        else:
            checkpoint = self._store(size, root)
        if state is None or (state.size, state.root) != (size, root):
            self._remember(size, root, checkpoint.time)
        return checkpoint

    def _reusable(self, latest: StoredCheckpoint, size: int, root: bytes) -> bool:
        if (latest.size, latest.root) != (size, root):
            return False
        try:
            opened = open_checkpoint(latest.note, self.verifier(), self.origin)
        except CheckpointInvalid:
            return False
        return (opened.size, opened.root) == (size, root)

    def _store(self, size: int, root: bytes) -> StoredCheckpoint:
        now = utcnow()
        key = self._keys.active_checkpoint
        note = signed_checkpoint(self.origin, size, root, self.key_name, key.private_key)
        try:
            with write_transaction(self.engine) as conn:
                new_id = conn.execute(
                    audit_checkpoint.insert()
                    .values(size=size, root_hash=root, time=now, note=note)
                    .returning(audit_checkpoint.c.id)
                ).scalar_one()
        except DBAPIError as exc:
            # The database keeps stored checkpoints growing (migration 0009): another
            # signer stored a larger one meanwhile.
            raise CheckpointRefused(
                f"a checkpoint of {size} entries is smaller than, or forks, a stored one"
            ) from exc
        return StoredCheckpoint(int(new_id), size, root, now, note)
