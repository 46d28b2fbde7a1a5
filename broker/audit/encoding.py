"""Encoding an audit entry before the appender numbers it, and finishing it once it does.

An entry's canonical bytes (RFC 8785) are made in its caller's thread (`pre_encode`), but
for what only the appender knows: its seq and time, and its subject tags, which need the
subjects' keys read in the append transaction. Those stand in as placeholders, and
`splice` fills them in while the appender holds the log's write lock, so the work done
under that lock stays small. The entry format is described in docs/audit.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from broker.audit.pending import Pending
from broker.core import merkle, randomness
from broker.core.entry import Entry, entry_json, subject_tag

if TYPE_CHECKING:
    from broker.audit.writes import SubjectKeys

APPENDER_FILLS: Final = frozenset({"v", "origin", "id", "seq", "time"})
PLACEHOLDER_TIME: Final = "1970-01-01T00:00:00.000Z"
_PLACEHOLDER_TAIL: Final = f',"seq":0,"time":"{PLACEHOLDER_TIME}","v":1}}'.encode()
"""How canonical bytes end before the appender knows seq and time: in RFC 8785 key order
`seq`, `time` and `v` are the last three members of an entry."""


def new_entry_id() -> str:
    """``ae_``, the millisecond clock in 12 hex digits, then 64 random bits.

    Ids in time order land at the right edge of the unique index on `entry_id`, as
    `seq` does; fully random ids would each touch a random page of it, which measured
    about half the appender's insert time. The random part keeps ids unique across
    processes (two ids of one millisecond collide with odds of 2**-64).
    """
    return f"ae_{time.time_ns() // 1_000_000:012x}{randomness.token_hex(8)}"


def check_tokens(pending: Pending) -> None:
    """Refuse a malformed draft in the caller's thread, before it can fail a batch."""
    try:
        tokens = pending.tokens()
    except (AttributeError, TypeError):
        raise TypeError("draft items must be mappings") from None
    for token in tokens:
        if not isinstance(token, bytes) or not token:
            raise TypeError("subject tokens are non-empty bytes (blind-index tokens)")


def _json_strings(values: list[str]) -> bytes:
    """A JSON array of ASCII strings as the entry holds it (placeholders and tags)."""
    return json.dumps(values, separators=(",", ":")).encode()


@dataclass(slots=True)
class Encoded:
    """An entry encoded in its caller's thread, but for what only the appender knows: its
    seq and time (a fixed tail of the bytes) and its subject tags (which need the subjects'
    keys, read in the append transaction) stand in as placeholders. The appender splices
    them in, so the work it does while it holds the log's write lock stays small."""

    data: bytes
    action: str
    org: str | None
    purpose: str | None
    orgs: list[str]
    tags: dict[str, bytes]  # placeholder -> subject token, items' and loose alike
    loose: list[str]  # placeholders of subjects outside any item, sorted
    loose_array: bytes  # how `objects.subject_tags` holds them in `data`


@dataclass(slots=True)
class EntryRows:
    """A finished entry ready to insert: its rows, and the subject keys it created."""

    entry_row: dict[str, Any]
    leaf: bytes
    org_rows: list[dict[str, Any]]
    subject_rows: list[dict[str, Any]]
    new_tokens: list[bytes]


def _placeholder() -> str:
    return randomness.token_urlsafe(32)  # 43 characters, like a real tag; unique in the entry


def pre_encode(pending: Pending, origin: str) -> None:
    """Validate and encode an entry (see `Encoded`): in the caller's thread, or for an
    entry with `work`, by the appender after the work ran. A malformed draft fails here."""
    given = pending.draft
    clash = APPENDER_FILLS.intersection(given)
    if clash:
        raise ValueError(f"the appender fills {', '.join(sorted(clash))}; leave them out")
    entry_id = new_entry_id()
    by_token: dict[bytes, str] = {}

    def tag(token: bytes) -> str:
        found = by_token.get(token)
        if found is None:
            found = by_token[token] = _placeholder()
        return found

    items = []
    for item in given.get("items") or ():
        item = dict(item)
        if "subjects" in item:
            item["subject_tags"] = [
                *item.get("subject_tags", ()), *[tag(t) for t in item.pop("subjects")]]
        items.append(item)
    draft = {**given}  # the one copy: the caller's draft stays as it was
    if items:
        draft["items"] = items
    in_items = set(by_token)
    loose = sorted([tag(t) for t in dict.fromkeys(pending.subjects) if t not in in_items])
    if loose:
        draft["objects"] = {**(draft.get("objects") or {}), "subject_tags": loose}
    draft.update(v=1, origin=origin, id=entry_id, seq=0, time=PLACEHOLDER_TIME)
    entry = Entry.model_validate(draft)
    data = entry_json(entry)
    if not data.endswith(_PLACEHOLDER_TAIL):  # RFC 8785 puts seq, time, v last, always
        raise RuntimeError("canonical entry bytes do not end with seq, time and v")
    orgs = {entry.actor.org, *(i.source for i in entry.items)} - {None}
    pending.entry_id = entry_id
    pending.pre = Encoded(
        data=data[: -len(_PLACEHOLDER_TAIL)],
        action=entry.action,
        org=entry.actor.org,
        purpose=entry.purpose,
        orgs=sorted(o for o in orgs if o),
        tags={placeholder: token for token, placeholder in by_token.items()},
        loose=loose,
        loose_array=_json_strings(loose) if loose else b"",
    )


def splice(
    pending: Pending, pre: Encoded, seq: int, moment: datetime, stamp: str, keys: SubjectKeys
) -> EntryRows:
    """Finish a pre-encoded entry: real subject tags, seq and time."""
    data = pre.data
    created: list[bytes] = []
    real: dict[str, str] = {}
    for placeholder, token in pre.tags.items():
        key, new = keys.key(token)
        if new and token not in created:
            created.append(token)
        real[placeholder] = subject_tag(key, pending.entry_id)
    if pre.loose:
        data = data.replace(pre.loose_array,
                            _json_strings(sorted(real[p] for p in pre.loose)))
    for placeholder, tag in real.items():
        data = data.replace(placeholder.encode(), tag.encode())
    data += b',"seq":%d,"time":"%s","v":1}' % (seq, stamp.encode())
    leaf = merkle.leaf_hash(data)
    return EntryRows(
        entry_row={
            "seq": seq,
            "entry_id": pending.entry_id,
            "action": pre.action,
            "org": pre.org,
            "purpose": pre.purpose,
            "time": moment,
            "bytes": data,
            "leaf_hash": leaf,
        },
        leaf=leaf,
        org_rows=[{"org": org, "seq": seq} for org in pre.orgs],
        subject_rows=[{"token": t, "seq": seq} for t in dict.fromkeys(pre.tags.values())],
        new_tokens=created,
    )
