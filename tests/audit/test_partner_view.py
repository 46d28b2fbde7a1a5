"""A partner's view of the audit log: a source sees only its own signals' items, a requester
of other organisations' signals only what its answer gave (refs, no source its rule hides),
and a trimmed entry comes without bytes or leaf hash (which would show, or confirm guesses
of, what it withholds). The privacy officer sees every entry whole.

The API tests run on SQLite and PostgreSQL; `trim` itself is pure and tested directly.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.audit.partner_view import trim
from broker.core import merkle
from broker.core.policy.concealment import Concealment
from tests.api.disclosure_kit import BAG_ID, energy, hennep

Headers = Callable[..., dict[str, str]]


def full_view(org: str | None = "gemeente", **changes: Any) -> dict[str, Any]:
    """A decoded entry as `reads.entry_view` gives it: `org` asked, two sources' items."""
    view: dict[str, Any] = {
        "v": 1, "origin": "sluis.example/audit",
        "seq": 7, "id": "ae_0123456789abcdef0123", "time": "2026-11-28T10:00:00.000Z",
        "action": "disclosure", "outcome": "granted", "reason": None,
        "actor": {"client": "cl_gemeente", "org": org, "roles": ["requester"],
                  "acting_user_tag": "tag-1"},
        "purpose": "integrale-controle", "case_reference": "ZAAK-1",
        "legal_basis": None, "policy": {"pack": "demo", "hash": "sha256:00"},
        "request_id": "req-1",
        "items": [
            {"signal_id": "sig_a", "rule": "open", "legal_basis": "b", "category": "c",
             "source": "politie", "fields": {"location.postcode": "reveal"},
             "subject_tags": ["t1"]},
            {"signal_id": "sig_b", "rule": "hidden", "legal_basis": "b", "category": "c",
             "source": "netbeheerder", "fields": {}, "subject_tags": ["t2"]},
        ],
        "objects": {"disclosure_id": "dsc_x", "released": 2},
        "confidential_until": None,
    }
    view.update(changes)
    return view


CONCEALED = Concealment(rules=frozenset({"open", "hidden"}), revealing=frozenset({"open"}))
"""`open` shows its source, `hidden` hides it (but names neither a single-source basis nor
a single source)."""


def refs(signal_id: str) -> str:
    return "sg_" + signal_id


def test_the_requester_sees_its_answer_in_its_entry_and_not_a_hidden_source() -> None:
    shown, whole = trim(full_view(), "gemeente", CONCEALED, refs)
    assert not whole and "id" not in shown
    assert [i.get("source") for i in shown["items"]] == ["politie", None]
    assert [i.get("signal_id") for i in shown["items"]] == [None, None]
    assert [i["ref"] for i in shown["items"]] == ["sg_sig_a", "sg_sig_b"]
    assert shown["items"][1]["rule"] == "hidden" and "subject_tags" not in shown["items"][1]
    assert (shown["actor"]["client"], shown["case_reference"], shown["objects"]) == (
        "cl_gemeente", "ZAAK-1", {"disclosure_id": "dsc_x", "released": 2})


def test_what_names_a_hidden_source_is_withheld_as_the_answer_withholds_it() -> None:
    anonymous = Concealment(rules=frozenset({"open", "hidden"}), revealing=frozenset({"open"}),
                            anonymous=frozenset({"hidden"}), telling_bases=frozenset({"b"}))
    view = full_view()
    view["items"][1]["fields"] = {"location.postcode": "reveal"}
    shown, _ = trim(view, "gemeente", anonymous, refs)
    assert shown["items"][1] == {
        "ref": "sg_sig_b", "category": "c", "fields": {"location.postcode": None}}
    assert shown["items"][0]["legal_basis"] == "b"  # `open` shows its source: nothing to hide
    # a pack not in the history hides everything
    shown, _ = trim(view, "gemeente", Concealment(), refs)
    assert all(i.get("source") is None and i.get("rule") is None
               and i.get("legal_basis") is None for i in shown["items"])


def test_an_entry_of_own_signals_only_is_whole_for_its_requester() -> None:
    own = full_view(org="netbeheerder")
    own["items"] = own["items"][1:]
    shown, whole = trim(own, "netbeheerder", Concealment(), refs)
    assert whole and shown == own
    # another organisation's signal in it makes it a trimmed view
    shown, whole = trim(full_view(org="netbeheerder"), "netbeheerder", CONCEALED, refs)
    assert not whole and shown["items"][1]["signal_id"] == "sig_b"
    assert shown["items"][0].get("signal_id") is None


def test_a_hit_shows_its_requester_only_the_yes_and_the_sources_its_answer_named() -> None:
    hit = full_view(action="hit", objects={"hit": True})
    shown, whole = trim(hit, "gemeente", CONCEALED, refs)
    assert not whole and shown["items"] == []
    assert shown["objects"] == {"hit": True, "sources": ["politie"]}
    miss = full_view(action="hit", objects={"hit": False}, items=[])
    assert trim(miss, "gemeente", CONCEALED, refs) == (miss, True)


def test_an_area_summary_shows_its_requester_only_the_counts_it_got() -> None:
    counts = {"area": "3072", "area_level": "pc4", "counts": {"c": None}}
    summary = full_view(action="area_summary", items=[], objects=counts)
    assert trim(summary, "gemeente", CONCEALED) == (summary, True)
    more = full_view(action="area_summary", items=[], objects={**counts, "true_counts": {"c": 2}})
    shown, whole = trim(more, "gemeente", CONCEALED)
    assert not whole and shown["objects"] == counts


def test_a_source_sees_only_its_own_items_and_no_requester_details() -> None:
    shown, whole = trim(full_view(), "netbeheerder", CONCEALED)
    assert not whole and "id" not in shown
    assert [i["signal_id"] for i in shown["items"]] == ["sig_b"]
    assert shown["items"][0]["source"] == "netbeheerder"
    assert (shown["actor"]["org"], shown["purpose"], shown["time"], shown["policy"]) == (
        "gemeente", "integrale-controle", "2026-11-28T10:00:00.000Z",
        {"pack": "demo", "hash": "sha256:00"})
    for withheld in ("id", "case_reference", "request_id"):
        assert withheld not in shown, withheld
    assert shown["actor"] == {"org": "gemeente"}  # no client, roles or person
    assert shown["objects"] == {}
    assert set(shown) == set(full_view()) - {"id", "case_reference", "request_id"}


def test_a_source_keeps_the_recipient_of_a_reidentification() -> None:
    view = full_view(action="reidentification_decided", org="riec",
                     objects={"recipient": "gemeente", "approved": True})
    shown, _ = trim(view, "politie", CONCEALED)
    assert shown["objects"] == {"recipient": "gemeente"}


def test_a_damaged_entry_shows_nothing_to_a_partner() -> None:
    assert trim({"seq": 3, "damaged": True}, "gemeente", CONCEALED) == (
        {"seq": 3, "damaged": True}, False)


# --- through the API, on both databases --------------------------------------------------


@pytest.fixture
def two_sources(api: TestClient, auth_headers: Headers) -> dict[str, Any]:
    """The gemeente asks about an address with an energy signal of the netbeheerder and a
    hennep signal of the politie; both rules show their source to the gemeente."""
    ids = {}
    for org, signal in (("netbeheerder", energy()), ("politie", hennep())):
        answer = api.post("/v1/signals", json=signal,
                          headers=auth_headers(org, ["contributor"]))
        assert answer.status_code == 201, answer.text
        ids[org] = answer.json()["id"]
    body = {"purpose": "integrale-controle", "case_reference": "ZAAK-2026-9",
            "query": {"subject": {"bag_id": BAG_ID}}}
    disclosed = api.post("/v1/disclosures", json=body,
                         headers=auth_headers("gemeente", ["requester"]))
    assert disclosed.status_code == 200, disclosed.text
    assert {s["source"] for s in disclosed.json()["signals"]} == {"netbeheerder", "politie"}
    return {"seq": disclosed.json()["audit_seq"], "ids": ids,
            "refs": [s["ref"] for s in disclosed.json()["signals"]]}


def entry(api: TestClient, headers: dict[str, str], seq: int) -> dict[str, Any]:
    answer = api.get(f"/v1/audit/entries/{seq}", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def listed(api: TestClient, headers: dict[str, str], seq: int) -> dict[str, Any]:
    answer = api.get("/v1/audit/entries", headers=headers, params={"action": "disclosure"})
    assert answer.status_code == 200, answer.text
    (item,) = [i for i in answer.json()["items"] if i["seq"] == seq]
    found: dict[str, Any] = item
    return found


def bytes_match(body: dict[str, Any]) -> bool:
    data = base64.b64decode(body["entry_b64"])
    return base64.b64decode(body["leaf_hash"]) == merkle.leaf_hash(data)


def test_each_source_sees_only_its_own_items(
    api: TestClient, auth_headers: Headers, two_sources: dict[str, Any]
) -> None:
    seq, ids = two_sources["seq"], two_sources["ids"]
    for org in ("netbeheerder", "politie"):
        headers = auth_headers(org, ["contributor"])
        body = entry(api, headers, seq)
        assert body["redacted"] is True
        assert body["entry_b64"] is None and body["leaf_hash"] is None
        shown = body["entry"]
        assert [i["signal_id"] for i in shown["items"]] == [ids[org]]
        assert (shown["actor"]["org"], shown["purpose"]) == ("gemeente", "integrale-controle")
        assert "case_reference" not in shown and shown["actor"] == {"org": "gemeente"}
        assert "id" not in shown
        assert listed(api, headers, seq) == shown


def test_the_officer_sees_the_whole_entry_with_its_bytes_the_requester_its_answer(
    api: TestClient, auth_headers: Headers, two_sources: dict[str, Any]
) -> None:
    seq = two_sources["seq"]
    officer = auth_headers("riec", ["privacy_officer"])
    body = entry(api, officer, seq)
    assert body["redacted"] is False and bytes_match(body)
    assert {i["source"] for i in body["entry"]["items"]} == {"netbeheerder", "politie"}
    assert body["entry"]["case_reference"] == "ZAAK-2026-9"
    assert body["entry"]["id"].startswith("ae_")
    assert listed(api, officer, seq) == body["entry"]
    requester = auth_headers("gemeente", ["requester"])
    own = entry(api, requester, seq)
    assert own["redacted"] is True and own["entry_b64"] is None and own["leaf_hash"] is None
    assert {i["source"] for i in own["entry"]["items"]} == {"netbeheerder", "politie"}
    assert {i["ref"] for i in own["entry"]["items"]} == set(two_sources["refs"])
    assert {i.get("signal_id") for i in own["entry"]["items"]} == {None}
    assert own["entry"]["case_reference"] == "ZAAK-2026-9"
    assert listed(api, requester, seq) == own["entry"]


def test_a_source_the_rule_hides_stays_hidden_from_the_requester(
    api: TestClient, auth_headers: Headers
) -> None:
    """netbeheerder-hennep-energiefraude has `reveal_source: false`: the netbeheerder gets
    the politie's hennep signal without its source, and its audit entry must not add it."""
    politie = auth_headers("politie", ["contributor"])
    signal = api.post("/v1/signals", json=hennep(basis="wpg-art-19"), headers=politie)
    assert signal.status_code == 201, signal.text
    requester = auth_headers("netbeheerder", ["requester"])
    body = {"purpose": "energiefraude", "case_reference": "EF-2026-3",
            "query": {"subject": {"bag_id": BAG_ID}}}
    disclosed = api.post("/v1/disclosures", json=body, headers=requester)
    assert disclosed.status_code == 200, disclosed.text
    (released,) = disclosed.json()["signals"]
    assert "source" not in released or released["source"] is None
    seq = disclosed.json()["audit_seq"]
    own = entry(api, requester, seq)
    assert own["redacted"] is True and own["entry_b64"] is None and own["leaf_hash"] is None
    (item,) = own["entry"]["items"]
    assert item == {"ref": released["ref"], "category": released["category"],
                    "fields": dict.fromkeys(released["fields"])}
    assert own["entry"]["case_reference"] == "EF-2026-3" and "id" not in own["entry"]
    assert "politie" not in str(own)
    assert listed(api, requester, seq) == own["entry"]
    # the source itself sees its item (and that the netbeheerder received it)
    seen_by_source = entry(api, politie, seq)["entry"]
    assert seen_by_source["items"][0]["source"] == "politie"
    assert seen_by_source["actor"]["org"] == "netbeheerder"
    # and the officer the whole entry, whose bytes do name the source
    officer = entry(api, auth_headers("riec", ["privacy_officer"]), seq)
    assert bytes_match(officer) and b"politie" in base64.b64decode(officer["entry_b64"])
    # the receipt still proves the entry's place to whoever holds the bytes
    assert api.get(f"/v1/audit/entries/{seq}/receipt", headers=requester).status_code == 200


ORGS = ("gemeente", "politie", "netbeheerder", "riec")
item_strategy = st.fixed_dictionaries({
    "signal_id": st.sampled_from(["sig_a", "sig_b", "sig_c"]),
    "rule": st.sampled_from(["open", "hidden", None]),
    "legal_basis": st.just("b"), "category": st.just("c"),
    "source": st.sampled_from((*ORGS, None)), "fields": st.just({}),
    "subject_tags": st.lists(st.sampled_from(["t1", "t2"]), max_size=2),
})


@settings(max_examples=200, deadline=None)
@given(actor=st.sampled_from((*ORGS, None)), reader=st.sampled_from(ORGS),
       items=st.lists(item_strategy, max_size=4),
       objects=st.dictionaries(st.sampled_from(["recipient", "disclosure_id", "n"]),
                               st.sampled_from(ORGS), max_size=3))
def test_a_trimmed_view_never_shows_more_than_the_reader_may_know(
    actor: str | None, reader: str, items: list[dict[str, Any]], objects: dict[str, Any]
) -> None:
    view = full_view(org=actor, items=items, objects=objects)
    shown, whole = trim(view, reader, CONCEALED, refs)
    assert set(shown) <= set(view)
    if whole:
        assert shown == view
    else:
        assert "id" not in shown
    for item in shown["items"]:
        hidden = item.get("source") not in (None, reader) and not CONCEALED.shows_source(
            item.get("rule"))
        assert not hidden, item  # never a source the rule hides from the reader
        if item.get("source") != reader:  # no id of a signal not its own
            assert "signal_id" not in item and "subject_tags" not in item
    if actor != reader:
        assert all(i["source"] == reader for i in shown["items"])
        assert "client" not in shown["actor"] and "case_reference" not in shown
        assert set(shown["objects"]) <= {"recipient"}
    else:
        assert len(shown["items"]) == len(items)
