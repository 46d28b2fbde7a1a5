"""Entries encoded in the caller and spliced by the appender equal entries built whole.

`record` encodes an entry in its caller's thread with placeholders for seq, time and
subject tags; the appender splices the real values in while it holds the write lock.
Hypothesis draws drafts with subjects in items and outside them; both ways must give the
same entry (ids and the tags keyed to them aside), canonical bytes, and sorted loose tags.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from broker.audit.entry import decode_entry, format_time, subject_tag
from broker.audit.store import _build, _Driver, _splice, _SubjectKeys, _Unit, pre_encode
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


def _normalised(data: bytes, entry_id: str, keys: _SubjectKeys,
                subjects: set[bytes]) -> dict[str, Any]:
    """The entry as a dict with its id dropped and each tag named by its token."""
    entry = decode_entry(data).model_dump(mode="json")
    assert entry.pop("id") == entry_id
    names = {subject_tag(keys.key(t)[0], entry_id): t.hex() for t in subjects}
    for item in entry["items"]:
        item["subject_tags"] = [names[tag] for tag in item["subject_tags"]]
    loose = entry["objects"].get("subject_tags")
    if loose is not None:
        assert loose == sorted(loose)
        entry["objects"]["subject_tags"] = sorted(names[tag] for tag in loose)
    return entry


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=drafts(), seq=st.integers(0, 2**40))
def test_a_spliced_entry_equals_one_built_whole(
    engine: Engine, drawn: tuple[dict[str, Any], list[bytes]], seq: int
) -> None:
    draft, loose = drawn
    moment = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    stamp = format_time(moment)
    spliced = _Unit(draft, None, tuple(loose))
    pre_encode(spliced, ORIGIN)
    assert spliced.pre is not None
    whole = _Unit(draft, None, tuple(loose))
    subjects = set(loose) | {t for item in draft["items"] for t in item["subjects"]}
    with write_transaction(engine) as conn:
        keys = _SubjectKeys(_Driver(conn), [spliced, whole])
        a = _splice(spliced, spliced.pre, seq, moment, stamp, keys)
        b = _build(whole, seq, ORIGIN, moment, stamp, keys)
        conn.rollback()
    assert a.entry_row["seq"] == b.entry_row["seq"] == seq
    assert decode_entry(a.entry_row["bytes"]).time == stamp
    assert {r["token"] for r in a.subject_rows} == {r["token"] for r in b.subject_rows}
    assert a.org_rows == b.org_rows
    assert _normalised(a.entry_row["bytes"], spliced.entry_id, keys, subjects) == \
        _normalised(b.entry_row["bytes"], whole.entry_id, keys, subjects)
