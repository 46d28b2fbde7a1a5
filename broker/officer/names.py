"""The pages' words for a pack's identifiers: names of organisations, purposes,
categories, legal bases and attributes, as the pack itself gives them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.core.policy.load import Pack


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

    def attribute(self, path: str, categories: Iterable[str] = ()) -> str | None:
        """The pack's title of an `attributes.` path in one of `categories` (every category
        when none is named); None when the pack gives it none."""
        name = path.removeprefix("attributes.")
        if name == path:
            return None
        wanted = list(categories) or list(self.pack.categories)
        for ident in wanted:
            category = self.pack.categories.get(ident)
            spec = category.attributes.get(name) if category else None
            if spec is not None and spec.title:
                return spec.title
        return None
