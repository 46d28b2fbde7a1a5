"""Key rotation as an accountable act, and every broker process following it.

The key ring lives in the database (`broker.services.keyring`). A rotation adds a version
there, makes it live in the process that rotated and records a `key_rotated` entry. Every
other process, on this node or another, notices through its `KeyFollower`, which reads
the ring's marker (one small query) once a second and reloads the ring when it changed:
request paths never touch the database for keys.

Rotating the key-encryption key (KEK) is two acts: `rotate_kek` wraps every version under
a new KEK as well (copy the KEK file to every node then), `retire_kek` destroys the older
KEKs: every sealed record under an older master key version is first wrapped under the
active one, then those master versions and every wrap under an older KEK are deleted, so
a backup taken before is unreadable from then on (docs/operations.md, "Keys").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from sqlalchemy import Connection, Table, select, update

from broker.audit.drafts import draft
from broker.auth.actors import Actor
from broker.db import write_transaction
from broker.follower import Follower
from broker.keys import ROTATABLE, KeyRing
from broker.models import idempotency_record, reidentification, signal
from broker.runtime import Runtime
from broker.sealing import Unreadable, rewrap
from broker.services import keyring

KEY_FOLLOW_SECONDS: Final = 1.0
_log = logging.getLogger("broker.keys")

SEALED: Final[tuple[tuple[Table, Callable[[object], bytes]], ...]] = (
    (signal, lambda row: str(row.id).encode()),  # type: ignore[attr-defined]
    (reidentification,
     lambda row: f"reidentification|{row.id}".encode()),  # type: ignore[attr-defined]
    (idempotency_record,
     lambda row: f"idem|{row.client_id}|{row.key}".encode()),  # type: ignore[attr-defined]
)
"""The tables of sealed records, and each row's additional data (as sealed)."""


def use_ring(runtime: Runtime, ring: KeyRing) -> None:
    """Make `ring` the live key ring: one assignment each for requests and the audit log."""
    runtime.keys = ring
    runtime.audit.use_keys(ring)


def reload_ring(runtime: Runtime) -> KeyRing:
    """Load the database's ring into this process and return it."""
    ring = keyring.load(runtime.engine, keyring.read_keks(keyring.kek_path(runtime.settings))).ring
    use_ring(runtime, ring)
    return ring


def rotate(runtime: Runtime, name: str, *, actor: Actor, request_id: str | None) -> int:
    """Add a version of key `name`, make it active in this process, and audit it."""
    if name not in ROTATABLE:
        raise ValueError(name)
    keks = keyring.read_keks(keyring.kek_path(runtime.settings))
    version = keyring.add_version(runtime.engine, keks, name)
    reload_ring(runtime)
    runtime.audit.record(draft("key_rotated", actor, request_id=request_id,
                               objects={"key": name, "version": version}))
    return version


def rotate_kek(runtime: Runtime, *, actor: Actor) -> str:
    """Add a key-encryption key in force (audited); returns its id."""
    path = keyring.kek_path(runtime.settings)
    kek_id = keyring.rotate_kek(runtime.engine, path)
    # A new master version too: retiring the old KEK then destroys the master versions a
    # backup taken before could be read with (their records are wrapped anew first).
    master = keyring.add_version(runtime.engine, keyring.read_keks(path), "master")
    reload_ring(runtime)
    runtime.audit.record(draft("key_rotated", actor,
                               objects={"key": "kek", "id": kek_id, "master_version": master}))
    return kek_id


def _rewrap_table(conn: Connection, ring: KeyRing, table: Table,
                  aad: Callable[[object], bytes]) -> int:
    master = ring.active("master")
    rows = conn.execute(select(table).where(table.c.key_version != master.version,
                                            table.c.wrapped_key.is_not(None))).all()
    key = table.primary_key.columns.values()[0]
    moved = 0
    for row in rows:
        try:
            wrapped = rewrap(ring, row.key_version, bytes(row.wrapped_key), aad(row), master)
        except Unreadable:
            continue  # a record that does not open stays as it is: its old key goes
        conn.execute(update(table).where(key == getattr(row, key.name))
                     .values(key_version=master.version, wrapped_key=wrapped))
        moved += 1
    return moved


def retire_kek(runtime: Runtime, *, actor: Actor) -> dict[str, int]:
    """Destroy every key-encryption key but the one in force, and every master version
    older than the active one (after wrapping their records under it). Audited."""
    path = keyring.kek_path(runtime.settings)
    keks = keyring.read_keks(path)
    ring = reload_ring(runtime)
    if ring.unreadable:
        raise ValueError("some key versions cannot be unwrapped here: retire on a node "
                         "whose key-encryption key file is current")
    old_masters = sorted(v for v in ring.symmetric["master"] if v != ring.active("master").version)
    with write_transaction(runtime.engine) as conn:
        moved = sum(_rewrap_table(conn, ring, table, aad) for table, aad in SEALED)
        deleted = keyring.retire(conn, keks[0], old_masters)
    keyring.write_keks(path, keks[:1])
    reload_ring(runtime)
    figures = {"keks_retired": len(keks) - 1, "master_versions_destroyed": len(old_masters),
               "records_rewrapped": moved, "wraps_deleted": deleted}
    runtime.audit.record(draft("key_rotated", actor, objects={"key": "kek-retired", **figures}))
    return figures


def follow_keys(runtime: Runtime) -> bool:
    """Reload the key ring if the database's ring changed since it was loaded; True if so."""
    with runtime.engine.connect() as conn:
        marker = keyring.marker(conn)
    if marker == runtime.keys.marker:
        return False
    reload_ring(runtime)
    _log.info("key ring reloaded", extra={"event": "keys_reloaded"})
    return True


class KeyFollower(Follower):
    """Keeps a broker process on the database's current ring (a rotation elsewhere
    reaches it within `interval` seconds)."""

    name = "key-follower"

    def __init__(self, runtime: Runtime, interval: float = KEY_FOLLOW_SECONDS) -> None:
        super().__init__(interval)
        self._runtime = runtime
        self._complained = False

    def step(self) -> None:
        follow_keys(self._runtime)
        self._complained = False

    def trouble(self, error: Exception) -> None:
        if not self._complained:  # once per trouble, not once a second
            _log.warning("the key ring does not load; the live key ring stays",
                         extra={"event": "keys_not_reloaded",
                                "error_type": type(error).__name__})
        self._complained = True
