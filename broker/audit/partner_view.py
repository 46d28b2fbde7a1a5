"""What a partner (any reader but the privacy officer) may see of an audit entry.

docs/api.md lets a partner read the entries of its own organisation's acts and those about its
own signals. Seeing such an entry whole would tell it more than its rules do: a source
organisation would learn what other sources' signals the same request released, and a
recipient would learn the source that a rule with `reveal_source: false` hides. So:

- the organisation that acted (the requester) sees its entry whole, except, in an item
  whose rule hides the source from the recipient (unless the source is itself), the
  `source` and the `signal_id`: the id would let it ask for the same signal by id under
  another purpose whose rule does show the source (its answer gave it a per-purpose `ref`,
  never the id);
- a source organisation sees only its own signals' items, with the recipient, time,
  action, outcome, purpose, legal basis and policy: not the requesting client, person,
  case reference, request id, or the act's other objects (a re-identification's
  `recipient` stays).

An entry's canonical bytes and leaf hash go only with a view that withholds nothing: the
bytes would show what the view hides, and a leaf hash would let a reader confirm guesses
of it (a hidden source is one of a few organisations). A trimmed view is marked
`redacted`, carries neither, and also withholds the entry's random `id`, so that guesses
cannot be checked against the inclusion proofs anyone may fetch either. Its receipt still
proves the entry's place in the log to whoever holds the bytes: the privacy officer.

A rule whose pack is not in the policy history, or is not in that pack, counts as hiding
its source (fail closed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from sqlalchemy import Connection

from broker.services.packs import stored_pack

SOURCE_VIEW_FIELDS: Final = (
    "seq", "time", "action", "outcome", "reason", "refusal_reason", "org", "purpose",
    "legal_basis", "policy_pack", "policy_hash", "confidential_until",
)
"""What a source organisation sees of an entry besides its own items."""
SOURCE_VIEW_OBJECTS: Final = ("recipient",)
"""Objects a source organisation sees: who received (re-identification entries name it)."""
_CACHED_PACKS: Final = 32

_revealing: dict[str, frozenset[str]] = {}
_lock = threading.Lock()


def revealing_rules(conn: Connection, pack_hash: str | None) -> frozenset[str]:
    """Ids of the rules of the pack with this hash that reveal the source to the recipient;
    empty for an unknown pack. A pack's content never changes under its hash: cached."""
    if pack_hash is None:
        return frozenset()
    with _lock:
        found = _revealing.get(pack_hash)
    if found is not None:
        return found
    pack = stored_pack(conn, pack_hash)
    if pack is None:
        return frozenset()  # not cached: a pack recorded later would be found then
    found = frozenset(rule.id for rule in pack.rules if rule.reveal_source)
    with _lock:
        if len(_revealing) >= _CACHED_PACKS:
            _revealing.clear()
        _revealing[pack_hash] = found
    return found


def trim(
    view: Mapping[str, Any], org: str, reveals_source: Callable[[str | None], bool]
) -> tuple[dict[str, Any], bool]:
    """(the view `org` may see of an entry's full `view`, whether it is the whole view).

    `reveals_source(rule)` tells whether the rule of that id (in the entry's pack) shows
    the source to the recipient. A view that is not whole is marked `redacted` and has no
    `id`; the caller must then not hand out the entry's bytes or leaf hash.
    """
    if view.get("damaged"):
        return {"seq": view["seq"], "damaged": True, "redacted": True}, False
    view = {k: v for k, v in view.items() if k != "redacted"}
    items = list(view.get("items") or ())
    if view.get("org") == org:
        shown = [
            item if item.get("source") in (None, org) or reveals_source(item.get("rule"))
            else {**item, "source": None, "signal_id": None}
            for item in items
        ]
        trimmed = {**view, "items": shown}
    else:
        objects = view.get("objects") or {}
        trimmed = {
            **dict.fromkeys(view),
            **{name: view.get(name) for name in SOURCE_VIEW_FIELDS},
            "id": view.get("id"),
            "items": [item for item in items if item.get("source") == org],
            "objects": {k: objects[k] for k in SOURCE_VIEW_OBJECTS if k in objects},
        }
    whole = trimmed == {**view, "items": items}
    if whole:
        return {**trimmed, "redacted": False}, True
    return {**trimmed, "id": None, "redacted": True}, False


def partner_view(
    conn: Connection, view: Mapping[str, Any], org: str
) -> tuple[dict[str, Any], bool]:
    """`trim` with the reveal_source of the rules of the entry's own pack."""
    revealing = revealing_rules(conn, view.get("policy_hash"))
    return trim(view, org, lambda rule: rule in revealing)
