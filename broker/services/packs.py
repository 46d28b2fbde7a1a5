"""Making a policy pack live: history, audit entry, and the atomic swap.

The database's newest recorded pack is the live pack of every node: only `broker policy
load` and the reload API record one, and a database without any takes the folder's pack
of the first process that opens it. A process whose folder holds another pack follows
the database (and logs that it does).

Each pack's canonical text is stored once by hash; every activation is a
`policy_load` row and a `policy_loaded` audit entry in one transaction. A
reload refused because the pack does not load is a `refusal` entry and a
warning (docs/security.md row 26); the live pack stays.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Connection, select

from broker.audit.appender import AuditLog
from broker.audit.drafts import draft
from broker.auth.actors import Actor, system_actor
from broker.clock import utcnow
from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.load import Pack, load_pack, load_pack_from_text
from broker.errors import PackInvalid
from broker.follower import Follower
from broker.models import policy_load as LOADS
from broker.models import policy_version as VERSIONS
from broker.runtime import LivePolicy, Runtime

_log = logging.getLogger("broker.core.policy")


def last_loaded_hash(conn: Connection) -> str | None:
    row = conn.execute(select(LOADS.c.hash).order_by(LOADS.c.id.desc()).limit(1)).first()
    return row[0] if row else None


def _store(conn: Connection, pack: Pack, by: str) -> None:
    now = utcnow()
    known = conn.execute(select(VERSIONS.c.hash).where(VERSIONS.c.hash == pack.hash)).first()
    if known is None:
        conn.execute(
            VERSIONS.insert().values(
                hash=pack.hash,
                pack=pack.name,
                version=pack.version,
                canonical=pack.canonical.decode("utf-8"),
                first_loaded_at=now,
            )
        )
    conn.execute(LOADS.insert().values(hash=pack.hash, loaded_at=now, loaded_by=by[:100]))


def record_load(
    audit: AuditLog, pack: Pack, *, actor: Actor, request_id: str | None, previous: str | None
) -> int:
    """Store the pack's version and load event with its audit entry; return the entry's seq."""
    entry = draft("policy_loaded", actor, pack=pack, request_id=request_id,
                  objects={"previous_hash": previous, "version": pack.version})
    return audit.record(entry, work=lambda conn: _store(conn, pack, actor.label)).seq


def live(pack: Pack) -> LivePolicy:
    return LivePolicy(pack, CompiledPolicy(pack), utcnow())


def activate(
    runtime: Runtime, pack: Pack, *, actor: Actor, request_id: str | None = None
) -> tuple[str, str]:
    """Make `pack` the live pack (audited); return (new hash, previous hash)."""
    # The database's live pack, which another node may have changed since this one read it.
    with runtime.engine.connect() as conn:
        previous = last_loaded_hash(conn) or runtime.policy.pack.hash
    record_load(runtime.audit, pack, actor=actor, request_id=request_id, previous=previous)
    runtime.policy = live(pack)
    return pack.hash, previous


def record_refused_reload(
    runtime: Runtime, error: PackInvalid, *, actor: Actor, request_id: str | None
) -> int:
    """Audit and log a reload refused because the pack does not load; return the seq.

    The entry names the pack that stays live and how many problems the new one has, never
    the problems themselves: their messages may quote the pack's text."""
    live_pack = runtime.policy.pack
    entry = draft("refusal", actor, outcome="refused", reason=error.code, pack=live_pack,
                  request_id=request_id,
                  objects={"request": "policy_reload", "problems": len(error.errors)})
    seq = runtime.audit.record(entry).seq
    _log.warning("policy reload refused: the live pack stays", extra={
        "event": "policy_reload_refused", "reason": error.code, "count": len(error.errors),
        "hash": live_pack.hash, "seq": seq, "request_id": request_id,
    })
    return seq


def reload_from_dir(
    runtime: Runtime, directory: Path | None, *, actor: Actor, request_id: str | None = None
) -> tuple[str, str]:
    """Load a pack folder and make it live; a pack that does not check leaves the live one
    (and the refusal is audited before `PackInvalid` reaches the caller)."""
    try:
        pack = load_pack(directory or runtime.settings.policy_dir)
    except PackInvalid as exc:
        record_refused_reload(runtime, exc, actor=actor, request_id=request_id)
        raise
    return activate(runtime, pack, actor=actor, request_id=request_id)


def stored_pack(conn: Connection, pack_hash: str) -> Pack | None:
    """A pack exactly as it was loaded, from history, for reading an old rule."""
    row = conn.execute(select(VERSIONS.c.canonical).where(VERSIONS.c.hash == pack_hash)).first()
    if row is None:
        return None
    try:
        return load_pack_from_text({"pack.json": row[0]})
    except PackInvalid:
        return None


def starting_pack(conn: Connection) -> tuple[str | None, Pack | None]:
    """The database's live pack for a starting process: (its hash, the pack), (hash, None)
    when the recorded pack does not load, (None, None) on a database without one."""
    newest = last_loaded_hash(conn)
    return newest, (stored_pack(conn, newest) if newest is not None else None)


def record_first(runtime: Runtime) -> None:
    """Record the live pack as the first of a database that has none (audited)."""
    record_load(runtime.audit, runtime.policy.pack, actor=system_actor("startup"),
                request_id=None, previous=None)


def follow_once(runtime: Runtime) -> bool:
    """Switch to the newest pack recorded in the database, if it is not the live one."""
    with runtime.engine.connect() as conn:
        newest = last_loaded_hash(conn)
        if newest is None or newest == runtime.policy.pack.hash:
            return False
        pack = stored_pack(conn, newest)
    if pack is None:
        return False
    runtime.policy = live(pack)
    return True


class PackFollower(Follower):
    """Keeps every broker process on the newest recorded pack (a reload reaches one process)."""

    name = "pack-follower"

    def __init__(self, runtime: Runtime, interval: float) -> None:
        super().__init__(interval)
        self._runtime = runtime

    def step(self) -> None:
        follow_once(self._runtime)

    def trouble(self, error: Exception) -> None:
        _log.warning("could not check for a newer policy pack",
                     extra={"error_type": type(error).__name__})
