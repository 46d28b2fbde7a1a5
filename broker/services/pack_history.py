"""Reading the packs that were live: their loads, their stored text, and what changed.

`broker.services.packs` writes the history (`policy_version` once per pack, `policy_load`
per activation); the newest load is the live pack. The plain functions here read it for
the administrator's command line; those taking a `Reader` serve the privacy officer (the
API and the officer's policy page) and record the read as an `audit_read` before anything
of it is returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, select

from broker.clock import as_utc, rfc3339
from broker.core.policy.diff import PackDiff, diff_packs
from broker.core.policy.evaluate import CompiledPolicy
from broker.errors import FieldProblem, NotFound, ValidationFailed
from broker.models import policy_load as LOADS
from broker.models import policy_version as VERSIONS
from broker.runtime import Runtime
from broker.services.oversight import Reader, record_read
from broker.services.packs import stored_pack

HASH_PREFIX: Final = "sha256:"
REFERENCE: Final = re.compile(r"(sha256:)?[0-9a-f]{6,64}")
"""A pack named by its hash, or by the first six or more hex digits of it."""
PAGE_VERSIONS: Final = 50
"""Versions the officer's policy page compares, newest first."""


@dataclass(frozen=True, slots=True)
class Load:
    """One activation of a pack: which, when, by whom, and whether it is the live one."""

    hash: str
    pack: str
    version: str
    loaded_at: datetime
    loaded_by: str
    live: bool

    def as_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "pack": self.pack, "version": self.version,
                "loaded_at": rfc3339(self.loaded_at), "loaded_by": self.loaded_by,
                "live": self.live}


@dataclass(frozen=True, slots=True)
class StoredPack:
    """A recorded pack: its name, version label, hash, canonical text and first load."""

    hash: str
    pack: str
    version: str
    first_loaded_at: datetime
    canonical: str
    live: bool

    def as_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "pack": self.pack, "version": self.version,
                "first_loaded_at": rfc3339(self.first_loaded_at), "live": self.live,
                "canonical": self.canonical}


@dataclass(frozen=True, slots=True)
class Version:
    """A load on the officer's page, with what changed against the load before it (None
    for the first, or when either pack's stored text no longer loads)."""

    load: Load
    previous: str | None
    changes: PackDiff | None


def _live_hash(conn: Connection) -> str | None:
    row = conn.execute(select(LOADS.c.hash).order_by(LOADS.c.id.desc()).limit(1)).first()
    return row[0] if row else None


def loads(engine: Engine, *, limit: int | None = None) -> list[Load]:
    """Every recorded activation (or the newest `limit`), newest first."""
    query = (select(LOADS.c.hash, VERSIONS.c.pack, VERSIONS.c.version, LOADS.c.loaded_at,
                    LOADS.c.loaded_by)
             .join(VERSIONS, VERSIONS.c.hash == LOADS.c.hash)
             .order_by(LOADS.c.id.desc()).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Load(h, p, v, as_utc(at), by, live=index == 0)
            for index, (h, p, v, at, by) in enumerate(rows)]


def invalid_reference(loc: tuple[str, ...], msg: str) -> ValidationFailed:
    return ValidationFailed("Not a pack hash.", errors=[FieldProblem(loc, msg)])


def resolve(engine: Engine, reference: str, *, loc: tuple[str, ...] = ("path", "hash")
            ) -> str:
    """The full hash of the recorded pack `reference` names: its hash, or a prefix of it
    that no other recorded pack shares. 404 for none, 422 for a malformed or ambiguous one."""
    if not REFERENCE.fullmatch(reference):
        raise invalid_reference(loc, "not a sha256: hash or a prefix of six or more hex digits")
    wanted = reference if reference.startswith(HASH_PREFIX) else HASH_PREFIX + reference
    # Hex digits only: nothing in the pattern has a meaning in LIKE.
    query = select(VERSIONS.c.hash).where(VERSIONS.c.hash.startswith(wanted)).limit(2)
    with engine.connect() as conn:
        found = [row[0] for row in conn.execute(query)]
    if not found:
        raise NotFound("No recorded pack has this hash.")
    if len(found) > 1:
        raise invalid_reference(loc, "more than one recorded pack has a hash beginning so")
    return str(found[0])


def stored(engine: Engine, reference: str, *, loc: tuple[str, ...] = ("path", "hash")
           ) -> StoredPack:
    """The recorded pack `reference` names (see `resolve`), with its canonical text."""
    pack_hash = resolve(engine, reference, loc=loc)
    with engine.connect() as conn:
        row = conn.execute(select(VERSIONS.c.pack, VERSIONS.c.version,
                                  VERSIONS.c.first_loaded_at, VERSIONS.c.canonical)
                           .where(VERSIONS.c.hash == pack_hash)).one()
        live = _live_hash(conn) == pack_hash
    return StoredPack(pack_hash, row.pack, row.version, as_utc(row.first_loaded_at),
                      row.canonical, live)


def compiled(engine: Engine, reference: str, *, loc: tuple[str, ...] = ("path", "hash")
             ) -> CompiledPolicy:
    """The recorded pack `reference` names, loaded and compiled from its stored text."""
    pack_hash = resolve(engine, reference, loc=loc)
    with engine.connect() as conn:
        pack = stored_pack(conn, pack_hash)
    if pack is None:
        # Stored by an older broker whose pack language this one no longer reads.
        raise invalid_reference(loc, "the stored pack does not load in this broker version")
    return CompiledPolicy(pack)


# --- the privacy officer's reads (audited) -------------------------------------------------


def history(runtime: Runtime, reader: Reader) -> list[Load]:
    """Every activation, newest first (the read recorded first)."""
    record_read(runtime, reader, {"read": "policy_history"})
    return loads(runtime.engine)


def pack_text(runtime: Runtime, reader: Reader, reference: str) -> StoredPack:
    """One recorded pack's canonical text and facts (the read recorded before they leave)."""
    found = stored(runtime.engine, reference)
    record_read(runtime, reader, {"read": "policy_pack", "hash": found.hash})
    return found


def diff(runtime: Runtime, reader: Reader, before: str, after: str) -> PackDiff:
    """What changes from one recorded pack to another (the read recorded first)."""
    old = compiled(runtime.engine, before, loc=("query", "from"))
    new = compiled(runtime.engine, after, loc=("query", "to"))
    record_read(runtime, reader, {"read": "policy_diff", "from": old.hash, "to": new.hash})
    return diff_packs(old, new)


def versions(runtime: Runtime, reader: Reader, *, limit: int = PAGE_VERSIONS
             ) -> list[Version]:
    """The newest loads, newest first, each with what changed against the load before it
    (the read recorded first, as the officer's policy page)."""
    record_read(runtime, reader, {"read": "officer_policy"})
    found = loads(runtime.engine, limit=limit + 1)
    policies: dict[str, CompiledPolicy | None] = {}

    def policy(pack_hash: str) -> CompiledPolicy | None:
        if pack_hash not in policies:
            with runtime.engine.connect() as conn:
                pack = stored_pack(conn, pack_hash)
            policies[pack_hash] = CompiledPolicy(pack) if pack is not None else None
        return policies[pack_hash]

    shown = []
    for index, load in enumerate(found[:limit]):
        before = found[index + 1] if index + 1 < len(found) else None
        changes = None
        if before is not None:
            old, new = policy(before.hash), policy(load.hash)
            changes = diff_packs(old, new) if old is not None and new is not None else None
        shown.append(Version(load, before.hash if before else None, changes))
    return shown
