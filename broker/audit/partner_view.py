"""What a partner (any reader but the privacy officer) may see of an audit entry.

docs/api.md lets a partner read the entries of its own organisation's acts and those about its
own signals. Seeing such an entry whole would tell it more than its answers did: a signal's
id, the same under every purpose, would join what the purposes keep apart; a hit or an area
summary would show the signals behind a yes or a count; a source organisation would learn
what other sources' signals the same request released. So a partner's view is the entry
object itself with what it may not see removed (docs/audit.md, "What a partner is shown"):

- the organisation that acted (the requester) sees of its act no more than its answer
  said. An item of a signal that is not its own carries the `ref` the answer gave (made
  again with the pseudonym key version the entry records) in place of its `signal_id`
  and `subject_tags` (which would tell which items concern the same subject), and, as the
  answer did (`broker.core.policy.concealment`), no `source` its rule hides, nor the
  `rule` or `legal_basis` that would name that source (nor, then, the rule's transforms:
  `fields` maps each released path to null, and `objects.rule_fields` leaves the rule
  out); a hit shows no items and in `objects` only `hit` (and a miss's subject tag) and
  the `sources` its answer named, an area summary only the area and the counts it was
  given. Its own signals' items stay whole, and so does the rest of the entry (its own
  request);
- a source organisation sees only its own signals' items (and the `rule_fields` they
  use), with `v`, `origin`, `seq`, `time`, `action`, `outcome`, `reason`, the recipient
  (`actor.org`), `purpose`, `legal_basis`, `policy` and `confidential_until`: not the
  requesting client, roles or person, the case reference, the request id, or the act's
  other objects (a re-identification's `recipient` stays).

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

from broker.audit.compact import RULE_FIELDS, released_fields
from broker.core.policy.concealment import Concealment, cached_concealment, concealment
from broker.core.transforms import pseudonymiser_for
from broker.keys import KeyRing
from broker.services.packs import stored_pack

SOURCE_VIEW_FIELDS: Final = (
    "v", "origin", "seq", "time", "action", "outcome", "reason", "purpose", "legal_basis",
    "policy", "confidential_until",
)
"""What a source organisation sees of an entry besides the recipient and its own items."""
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def acting_org(entry: Mapping[str, Any]) -> str | None:
    """The organisation that acted (`actor.org`), if any."""
    org = _mapping(entry.get("actor")).get("org")
    return org if isinstance(org, str) else None


def pack_hash(entry: Mapping[str, Any]) -> str | None:
    """The hash of the pack that decided the act (`policy.hash`), if any."""
    found = _mapping(entry.get("policy")).get("hash")
    return found if isinstance(found, str) else None


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


def refs_for(entry: Mapping[str, Any], keys: KeyRing | None) -> Ref:
    """The refs a disclosure's answer gave its requester, by signal id (None when unknown)."""
    objects = _mapping(entry.get("objects"))
    version = objects.get(REF_KEY) if entry.get("action") == "disclosure" else None
    org, purpose = acting_org(entry), entry.get("purpose")
    if keys is None or type(version) is not int or org is None or not isinstance(purpose, str):
        return _no_ref
    try:
        material = keys.version("pseudonym", version).material
    except KeyError:
        return _no_ref
    return pseudonymiser_for(material, org, purpose).signal_ref


def _answered_item(item: Mapping[str, Any], objects: Mapping[str, Any],
                   concealed: Concealment, ref: Ref) -> dict[str, Any]:
    """An item of another organisation's signal as the requester's answer gave it."""
    rule = item.get("rule")
    signal_id = item.get("signal_id")
    shown: dict[str, Any] = {
        "ref": ref(signal_id) if isinstance(signal_id, str) else None,
        "category": item.get("category"),
    }
    shown_rule = concealed.shown_rule(rule)
    if shown_rule is not None:
        shown["rule"] = shown_rule
        shown["fields"] = dict(_mapping(item.get("fields")))
    else:  # the paths its answer gave, not the transforms that would name the rule
        shown["fields"] = dict.fromkeys(released_fields(item, objects))
    basis = concealed.shown_basis(rule, item.get("legal_basis"))
    if basis is not None:
        shown["legal_basis"] = basis
    if concealed.shows_source(rule) and "source" in item:
        shown["source"] = item["source"]
    return shown


def _requester_view(entry: Mapping[str, Any], org: str, concealed: Concealment, ref: Ref
                    ) -> dict[str, Any]:
    action = entry.get("action")
    items = [i for i in entry.get("items") or () if isinstance(i, Mapping)]
    objects = _mapping(entry.get("objects"))
    if action == "hit":
        shown = {k: objects[k] for k in HIT_OBJECTS if k in objects}
        if objects.get("hit"):
            shown["sources"] = sorted({i.get("source") for i in items
                                       if concealed.shows_source(i.get("rule"))})
        return {**entry, "items": [], "objects": shown}
    if action == "area_summary":
        return {**entry, "items": [],
                "objects": {k: objects[k] for k in AREA_SUMMARY_OBJECTS if k in objects}}
    kept = dict(objects)
    shared = objects.get(RULE_FIELDS)
    if isinstance(shared, Mapping):  # the fields written once per rule name the rules
        kept[RULE_FIELDS] = {rule: fields for rule, fields in shared.items()
                             if concealed.shown_rule(rule) is not None}
    return {**entry, "objects": kept, "items": [
        dict(item) if item.get("source") == org
        else _answered_item(item, objects, concealed, ref) for item in items]}


def _source_view(entry: Mapping[str, Any], org: str) -> dict[str, Any]:
    items = [dict(i) for i in entry.get("items") or ()
             if isinstance(i, Mapping) and i.get("source") == org]
    objects = _mapping(entry.get("objects"))
    shown_objects = {k: objects[k] for k in SOURCE_VIEW_OBJECTS if k in objects}
    shared = objects.get(RULE_FIELDS)
    used = {i.get("rule") for i in items if not i.get("fields")}
    if isinstance(shared, Mapping) and used & set(shared):  # only what its own items use
        shown_objects[RULE_FIELDS] = {r: f for r, f in shared.items() if r in used}
    return {
        **{name: entry[name] for name in SOURCE_VIEW_FIELDS if name in entry},
        "actor": {"org": acting_org(entry)},
        "items": items,
        "objects": shown_objects,
    }


def trim(entry: Mapping[str, Any], org: str, concealed: Concealment, ref: Ref = _no_ref
         ) -> tuple[dict[str, Any], bool]:
    """(the view `org` may see of the decoded `entry`, whether it is the whole entry).

    `concealed` is the concealment of the entry's pack; `ref(signal_id)` the ref the
    requester's answer gave for a signal. A view that is not whole has no `id`; the caller
    must then mark it `redacted` and not hand out the entry's bytes or leaf hash.
    """
    if entry.get("damaged"):
        return {"seq": entry.get("seq"), "damaged": True}, False
    if acting_org(entry) == org:
        trimmed = _requester_view(entry, org, concealed, ref)
    else:
        trimmed = _source_view(entry, org)
    if trimmed == entry:
        return trimmed, True
    trimmed.pop("id", None)
    return trimmed, False


def partner_view(conn: Connection, entry: Mapping[str, Any], org: str,
                 keys: KeyRing | None = None) -> tuple[dict[str, Any], bool]:
    """`trim` under the concealment of the entry's own pack, with the refs made again from
    `keys` (without them, `ref` is null)."""
    return trim(entry, org, entry_concealment(conn, pack_hash(entry)), refs_for(entry, keys))
