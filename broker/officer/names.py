"""The policy page: the live pack's rules in words, and the history of packs made live.

The history reads the `policy_load` and `policy_version` tables that `broker.services.packs`
writes on every activation; names of organisations, purposes, categories and legal bases
come from the pack itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Engine, select

from broker.clock import as_utc
from broker.core.policy.load import Pack
from broker.services.packs import LOADS, VERSIONS

HISTORY_LIMIT: Final = 100


@dataclass(frozen=True, slots=True)
class Load:
    """One activation of a pack."""

    loaded_at: datetime
    hash: str
    pack: str
    version: str
    loaded_by: str


def history(engine: Engine, *, limit: int = HISTORY_LIMIT) -> list[Load]:
    """The most recent activations, newest first."""
    query = (
        select(LOADS.c.loaded_at, LOADS.c.hash, VERSIONS.c.pack, VERSIONS.c.version,
               LOADS.c.loaded_by)
        .join(VERSIONS, VERSIONS.c.hash == LOADS.c.hash)
        .order_by(LOADS.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Load(as_utc(at), h, p, v, by) for at, h, p, v, by in rows]


@dataclass(frozen=True, slots=True)
class Names:
    """Readable names of a pack's identifiers; an unknown id reads as itself."""

    pack: Pack

    def org(self, ident: str | None) -> str:
        if ident is None:
            return "—"
        found = self.pack.organisations.get(ident)
        if found is not None:
            return found.name
        members = self.pack.expand(ident)
        if members and ident not in self.pack.organisations:
            return f"{ident} ({', '.join(sorted(self.org(m) for m in members))})"
        return ident

    def purpose(self, ident: str | None) -> str:
        found = self.pack.purposes.get(ident or "")
        return found.title if found else (ident or "—")

    def category(self, ident: str | None) -> str:
        found = self.pack.categories.get(ident or "")
        return found.title if found else (ident or "—")

    def legal_basis(self, ident: str | None) -> str:
        found = self.pack.legal_bases.get(ident or "")
        return found.title if found else (ident or "—")
