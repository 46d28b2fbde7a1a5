"""What a partner (any reader but the privacy officer) may see of an audit entry.

docs/api.md lets a partner read the entries of its own organisation's acts and those about its
own signals. Seeing such an entry whole would tell it more than its answers did: a signal's
id, the same under every purpose, would join what the purposes keep apart; a hit or an area
summary would show the signals behind a yes or a count; a source organisation would learn
what other sources' signals the same request released. So:

- the organisation that acted (the requester) sees of its act no more than its answer
  said. An item of a signal that is not its own shows the `ref` the answer gave (made
  again with the pseudonym key version the entry records) in place of the `signal_id`,
  and, as the answer did (`broker.core.policy.concealment`), no source its rule hides, nor
  the rule or legal basis that would name that source (nor, then, the rule's transforms),
  nor the item's subject hashes (which would tell which items concern the same subject);
  a hit shows only `hit` and the sources its answer named, an area summary only the area
  and the counts it was given. Its own signals' items stay whole. The rest of the entry
  (client, person, case reference, purpose, pack, request id, the act's objects) is its
  own request;
- a source organisation sees only its own signals' items, with the recipient, time,
  action, outcome, purpose, legal basis and policy: not the requesting client, person,
  case reference, request id, or the act's other objects (a re-identification's
  `recipient` stays).

An entry's canonical bytes and leaf hash go only with a view that withholds nothing: the
bytes would show what the view hides, and a leaf hash would let a reader confirm guesses
of it. A trimmed view is marked `redacted`, carries neither, and also withholds the
entry's random `id`, so that guesses cannot be checked against the inclusion proofs anyone
may fetch either. Its receipt still proves the entry's place in the log to whoever holds
the bytes: the privacy officer.

A rule whose pack is not in the policy history, or is not in that pack, counts as hiding
its source, its rule and its legal basis (fail closed); an entry that records no pseudonym
key version (or one the ring no longer holds) shows `ref` null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from sqlalchemy import Connection

from broker.audit.compact import RULE_FIELDS
from broker.core.policy.concealment import Concealment, cached_concealment, concealment
from broker.core.transforms import pseudonymiser_for
from broker.keys import KeyRing
from broker.services.packs import stored_pack

SOURCE_VIEW_FIELDS: Final = (
    "seq", "time", "action", "outcome", "reason", "refusal_reason", "org", "purpose",
    "legal_basis", "policy_pack", "policy_hash", "confidential_until",
)
"""What a source organisation sees of an entry besides its own items."""
SOURCE_VIEW_OBJECTS: Final = ("recipient",)
"""Objects a source organisation sees: who received (re-identification entries name it)."""
HIT_OBJECTS: Final = ("hit", "subject_tags")
"""What the requester sees of a hit's objects: yes or no (and the asked subject's tag,
which a miss records there), besides the sources its answer named."""
AREA_SUMMARY_OBJECTS: Final = ("area", "area_level", "counts", "subject_tags")
"""What the requester sees of an area summary's objects: the area and the counts it got."""
REF_KEY: Final = "pseudonym_key"
"""The disclosure entry's object naming the pseudonym key version its refs were made with."""
FAIL_CLOSED: Final = Concealment()

Ref = Callable[[str], str | None]


def entry_concealment(conn: Connection, pack_hash: str | None) -> Concealment:
    """The concealment of the entry's pack; withholding everything for an unknown pack."""
    if pack_hash is None:
        return FAIL_CLOSED
    found = cached_concealment(pack_hash)
    if found is not None:
        return found
    pack = stored_pack(conn, pack_hash)
    return FAIL_CLOSED if pack is None else concealment(pack)


def _no_ref(signal_id: str) -> str | None:
    return None


def refs_for(view: Mapping[str, Any], keys: KeyRing | None) -> Ref:
    """The refs a disclosure's answer gave its requester, by signal id (None when unknown)."""
    objects = view.get("objects") or {}
    version = objects.get(REF_KEY) if view.get("action") == "disclosure" else None
    org, purpose = view.get("org"), view.get("purpose")
    if (keys is None or type(version) is not int or not isinstance(org, str)
            or not isinstance(purpose, str)):
        return _no_ref
    try:
        material = keys.version("pseudonym", version).material
    except KeyError:
        return _no_ref
    return pseudonymiser_for(material, org, purpose).signal_ref


def _answered_item(item: Mapping[str, Any], concealed: Concealment, ref: Ref
                   ) -> dict[str, Any]:
    """An item of another organisation's signal as the requester's answer gave it."""
    rule = item.get("rule")
    shown_rule = concealed.shown_rule(rule)
    fields = item.get("fields") or {}
    signal_id = item.get("signal_id")
    return {
        "ref": ref(signal_id) if isinstance(signal_id, str) else None,
        "signal_id": None,
        "rule": shown_rule,
        "legal_basis": concealed.shown_basis(rule, item.get("legal_basis")),
        "category": item.get("category"),
        "source": item.get("source") if concealed.shows_source(rule) else None,
        "fields": dict(fields) if shown_rule is not None else dict.fromkeys(fields),
        "subject_hashes": [],
    }


def _requester_view(view: Mapping[str, Any], org: str, concealed: Concealment, ref: Ref
                    ) -> dict[str, Any]:
    action = view.get("action")
    items = list(view.get("items") or ())
    objects: Mapping[str, Any] = view.get("objects") or {}
    if action == "hit":
        shown = {k: objects[k] for k in HIT_OBJECTS if k in objects}
        if objects.get("hit"):
            shown["sources"] = sorted({i.get("source") for i in items
                                       if concealed.shows_source(i.get("rule"))})
        return {**view, "items": [], "objects": shown}
    if action == "area_summary":
        return {**view, "items": [],
                "objects": {k: objects[k] for k in AREA_SUMMARY_OBJECTS if k in objects}}
    shared = objects.get(RULE_FIELDS)
    if isinstance(shared, Mapping):  # the fields written once per rule name the rules
        objects = {**objects, RULE_FIELDS: {
            rule: fields for rule, fields in shared.items()
            if concealed.shown_rule(rule) is not None}}
    return {**view, "objects": objects, "items": [
        item if item.get("source") == org else _answered_item(item, concealed, ref)
        for item in items]}


def trim(view: Mapping[str, Any], org: str, concealed: Concealment, ref: Ref = _no_ref
         ) -> tuple[dict[str, Any], bool]:
    """(the view `org` may see of an entry's full `view`, whether it is the whole view).

    `concealed` is the concealment of the entry's pack; `ref(signal_id)` the ref the
    requester's answer gave for a signal. A view that is not whole is marked `redacted`
    and has no `id`; the caller must then not hand out the entry's bytes or leaf hash.
    """
    if view.get("damaged"):
        return {"seq": view["seq"], "damaged": True, "redacted": True}, False
    view = {k: v for k, v in view.items() if k != "redacted"}
    if view.get("org") == org:
        trimmed = _requester_view(view, org, concealed, ref)
    else:
        items = view.get("items") or ()
        objects = view.get("objects") or {}
        trimmed = {
            **dict.fromkeys(view),
            **{name: view.get(name) for name in SOURCE_VIEW_FIELDS},
            "id": view.get("id"),
            "items": [item for item in items if item.get("source") == org],
            "objects": {k: objects[k] for k in SOURCE_VIEW_OBJECTS if k in objects},
        }
    if trimmed == view:
        return {**trimmed, "redacted": False}, True
    return {**trimmed, "id": None, "redacted": True}, False


def partner_view(conn: Connection, view: Mapping[str, Any], org: str,
                 keys: KeyRing | None = None) -> tuple[dict[str, Any], bool]:
    """`trim` under the concealment of the entry's own pack, with the refs made again from
    `keys` (without them, `ref` is null)."""
    return trim(view, org, entry_concealment(conn, view.get("policy_hash")),
                refs_for(view, keys))
