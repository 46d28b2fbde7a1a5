"""Entries encoded with placeholders and spliced by the appender are the drafts' entries.

`record` encodes an entry in its caller's thread with placeholders for seq, time and
subject tags; the appender splices the real values in while it holds the write lock.
Hypothesis draws drafts with subjects in items and outside them; the stored bytes must be
canonical and say exactly what the draft said, with each subject's tag keyed to the entry
and the loose tags sorted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from broker.audit.driver import Driver
from broker.audit.encoding import pre_encode, splice
from broker.audit.pending import Pending
from broker.audit.writes import SubjectKeys
from broker.core.entry import Entry, decode_entry, format_time, subject_tag
from broker.core.merkle import leaf_hash
from broker.db import write_transaction

ORIGIN = "sluis.test/audit"
tokens = st.binary(min_size=4, max_size=8)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def drafts(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes]]:
    items = [
        {"signal_id": draw(texts), "legal_basis": "wpg-art-16", "category": draw(texts),
         "source": draw(st.sampled_from(["politie", "gemeente"])),
         "fields": {"observed_at": {"generalise": "month"}},
         "subjects": draw(st.lists(tokens, max_size=3))}
        for _ in range(draw(st.integers(0, 3)))
    ]
    draft = {
        "action": "disclosure", "outcome": "granted",
        "actor": {"client": "cl_1", "org": "gemeente", "roles": ["requester"]},
        "purpose": draw(st.one_of(st.none(), texts)),
        "items": items,
        "objects": {"note": draw(texts), "count": draw(st.integers(-(2**53 - 1), 2**53 - 1))},
    }
    return draft, draw(st.lists(tokens, max_size=3))


def _tags_named(data: bytes, entry_id: str, keys: SubjectKeys,
                subjects: set[bytes]) -> dict[str, Any]:
    """The stored entry as a dict, each tag replaced by its token (hex); loose tags must be
    sorted as stored."""
    entry = decode_entry(data).model_dump(mode="json")
    assert entry["id"] == entry_id
    names = {subject_tag(keys.key(t)[0], entry_id): t.hex() for t in subjects}
    for item in entry["items"]:
        item["subject_tags"] = [names[tag] for tag in item["subject_tags"]]
    loose = entry["objects"].get("subject_tags")
    if loose is not None:
        assert loose == sorted(loose)
        entry["objects"]["subject_tags"] = sorted(names[tag] for tag in loose)
    return entry


def _expected(draft: dict[str, Any], loose: list[bytes], entry_id: str, seq: int,
              stamp: str) -> dict[str, Any]:
    """What the entry must say, built from the draft without the store's code."""
    items = []
    for item in draft["items"]:
        item = dict(item)
        item["subject_tags"] = [t.hex() for t in item.pop("subjects")]
        items.append(item)
    in_items = {t for item in draft["items"] for t in item["subjects"]}
    objects = dict(draft["objects"])
    outside = sorted({t.hex() for t in loose if t not in in_items})
    if outside:
        objects["subject_tags"] = outside
    entry = Entry.model_validate({**draft, "items": items, "objects": objects, "v": 1,
                                  "origin": ORIGIN, "id": entry_id, "seq": seq, "time": stamp})
    return entry.model_dump(mode="json")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=drafts(), seq=st.integers(0, 2**40))
def test_a_spliced_entry_is_the_drafts_entry(
    engine: Engine, drawn: tuple[dict[str, Any], list[bytes]], seq: int
) -> None:
    draft, loose = drawn
    moment = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    stamp = format_time(moment)
    unit = Pending(draft, None, tuple(loose))
    pre_encode(unit, ORIGIN)
    assert unit.pre is not None
    subjects = set(loose) | {t for item in draft["items"] for t in item["subjects"]}
    with write_transaction(engine) as conn:
        keys = SubjectKeys(Driver(conn), [unit])
        built = splice(unit, unit.pre, seq, moment, stamp, keys)
        conn.rollback()
    data = built.entry_row["bytes"]
    assert built.entry_row["seq"] == seq
    assert built.leaf == leaf_hash(data)
    assert {r["token"] for r in built.subject_rows} == subjects
    assert _tags_named(data, unit.entry_id, keys, subjects) == \
        _expected(draft, loose, unit.entry_id, seq, stamp)
