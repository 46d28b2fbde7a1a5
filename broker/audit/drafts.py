"""The one builder of audit entry drafts: every accountable act describes itself through `draft`.

A draft is an entry without what only the appender knows (`v`, `origin`, `id`, `seq`,
`time`); the appender validates it against the closed entry shape (`broker.core.entry`)
and encodes it canonically. Building every draft here keeps the entry format in one
place: an act names what it did, who did it, under which pack and for what, and nothing
else. Values of signals never appear in a draft; subjects are given as blind-index tokens
(an item's `subjects`, or the appender's `subjects` argument) and become keyed tags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Protocol

from broker.auth.actors import Actor, system_actor


class PackRef(Protocol):
    """What a draft records of the policy pack in force: its name and content hash."""

    @property
    def name(self) -> str: ...
    @property
    def hash(self) -> str: ...


def draft(
    action: str,
    actor: Actor | None,
    *,
    outcome: str = "granted",
    reason: str | None = None,
    request_id: str | None = None,
    pack: PackRef | None = None,
    purpose: str | None = None,
    case_reference: str | None = None,
    legal_basis: str | None = None,
    items: Sequence[dict[str, Any]] = (),
    objects: dict[str, Any] | None = None,
    confidential_until: date | None = None,
) -> dict[str, Any]:
    """The draft of one act's entry. `actor` None is the administrator's command line;
    `pack` None for acts that no policy decides (sign-in, a read of the log)."""
    return {
        "action": action,
        "outcome": outcome,
        "reason": reason,
        "actor": (actor or system_actor("cli")).as_entry(),
        "purpose": purpose,
        "case_reference": case_reference,
        "legal_basis": legal_basis,
        "policy": {"pack": pack.name, "hash": pack.hash} if pack is not None else None,
        "request_id": request_id,
        "items": items if type(items) is list else list(items),
        "objects": objects if objects is not None else {},
        "confidential_until": confidential_until.isoformat() if confidential_until else None,
    }


def without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's `objects` of only the values given: an absent filter is not logged."""
    return {key: value for key, value in values.items() if value is not None}
