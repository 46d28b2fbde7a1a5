"""A partner's view of the audit log: a source sees only its own signals' items, a requester
no source its rule hides, and a trimmed entry comes without bytes or leaf hash (which would
show, or confirm guesses of, what it withholds). The privacy officer sees every entry whole.

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
from tests.api.disclosure_kit import BAG_ID, energy, hennep

Headers = Callable[..., dict[str, str]]


def full_view(**changes: Any) -> dict[str, Any]:
    """An entry view as `service.entry_view` gives it: gemeente asked, two sources' items."""
    view: dict[str, Any] = {
        "seq": 7, "id": "ae_0123456789abcdef0123", "time": "2026-11-28T10:00:00.000Z",
        "action": "disclosure", "outcome": "granted", "reason": None, "refusal_reason": None,
        "client": "cl_gemeente", "org": "gemeente", "roles": ["requester"],
        "acting_user": "tag-1", "purpose": "integrale-controle", "case_reference": "ZAAK-1",
        "legal_basis": None, "policy_pack": "demo", "policy_hash": "sha256:00",
        "request_id": "req-1",
        "items": [
            {"signal_id": "sig_a", "rule": "open", "legal_basis": "b", "category": "c",
             "source": "politie", "fields": {"location.postcode": "reveal"},
             "subject_hashes": ["t1"]},
            {"signal_id": "sig_b", "rule": "hidden", "legal_basis": "b", "category": "c",
             "source": "netbeheerder", "fields": {}, "subject_hashes": ["t2"]},
        ],
        "objects": {"disclosure_id": "dsc_x", "released": 2},
        "confidential_until": None, "redacted": False,
    }
    view.update(changes)
    return view


def reveals(rule: str | None) -> bool:
    return rule == "open"


def test_the_requester_sees_its_entry_but_not_a_hidden_source() -> None:
    shown, whole = trim(full_view(), "gemeente", reveals)
    assert not whole and shown["redacted"] is True and shown["id"] is None
    assert [i["source"] for i in shown["items"]] == ["politie", None]
    assert [i["signal_id"] for i in shown["items"]] == ["sig_a", None]
    assert shown["items"][1]["rule"] == "hidden" and shown["items"][1]["subject_hashes"] == ["t2"]
    assert (shown["client"], shown["case_reference"], shown["objects"]) == (
        "cl_gemeente", "ZAAK-1", {"disclosure_id": "dsc_x", "released": 2})


def test_an_entry_that_hides_nothing_from_its_requester_is_whole() -> None:
    view = full_view()
    view["items"] = view["items"][:1]
    shown, whole = trim(view, "gemeente", reveals)
    assert whole and shown == view
    # a hidden source that is the reader itself hides nothing from it
    own = full_view(org="netbeheerder")
    shown, whole = trim(own, "netbeheerder", lambda rule: False)
    assert shown["items"][1]["source"] == "netbeheerder"
    assert not whole  # politie's source is hidden by the (here) non-revealing rule


def test_a_source_sees_only_its_own_items_and_no_requester_details() -> None:
    shown, whole = trim(full_view(), "netbeheerder", reveals)
    assert not whole and shown["redacted"] is True
    assert [i["signal_id"] for i in shown["items"]] == ["sig_b"]
    assert shown["items"][0]["source"] == "netbeheerder"
    assert (shown["org"], shown["purpose"], shown["time"], shown["policy_hash"]) == (
        "gemeente", "integrale-controle", "2026-11-28T10:00:00.000Z", "sha256:00")
    for withheld in ("id", "client", "roles", "acting_user", "case_reference", "request_id"):
        assert shown[withheld] is None, withheld
    assert shown["objects"] == {}
    assert set(shown) == set(full_view())


def test_a_source_keeps_the_recipient_of_a_reidentification() -> None:
    view = full_view(action="reidentification_decided", org="riec",
                     objects={"recipient": "gemeente", "approved": True})
    shown, _ = trim(view, "politie", reveals)
    assert shown["objects"] == {"recipient": "gemeente"}


def test_a_damaged_entry_shows_nothing_to_a_partner() -> None:
    assert trim({"seq": 3, "damaged": True}, "gemeente", reveals) == (
        {"seq": 3, "damaged": True, "redacted": True}, False)


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
    return {"seq": disclosed.json()["audit_seq"], "ids": ids}


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
        assert (shown["org"], shown["purpose"]) == ("gemeente", "integrale-controle")
        assert shown["case_reference"] is None and shown["client"] is None
        assert shown["id"] is None
        assert listed(api, headers, seq) == shown


def test_the_requester_and_the_officer_see_the_whole_entry_with_its_bytes(
    api: TestClient, auth_headers: Headers, two_sources: dict[str, Any]
) -> None:
    seq = two_sources["seq"]
    for headers in (auth_headers("gemeente", ["requester"]),
                    auth_headers("riec", ["privacy_officer"])):
        body = entry(api, headers, seq)
        assert body["redacted"] is False and bytes_match(body)
        assert {i["source"] for i in body["entry"]["items"]} == {"netbeheerder", "politie"}
        assert body["entry"]["case_reference"] == "ZAAK-2026-9"
        assert body["entry"]["id"].startswith("ae_")
        assert listed(api, headers, seq) == body["entry"]


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
    assert item["source"] is None and item["rule"] == "netbeheerder-hennep-energiefraude"
    assert item["signal_id"] is None  # asked for by id under another purpose, it could show
    assert item["category"] == released["category"]
    assert own["entry"]["case_reference"] == "EF-2026-3" and own["entry"]["id"] is None
    assert "politie" not in str(own)
    assert listed(api, requester, seq) == own["entry"]
    # the source itself sees its item (and that the netbeheerder received it)
    seen_by_source = entry(api, politie, seq)["entry"]
    assert seen_by_source["items"][0]["source"] == "politie"
    assert seen_by_source["org"] == "netbeheerder"
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
    "subject_hashes": st.lists(st.sampled_from(["t1", "t2"]), max_size=2),
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
    shown, whole = trim(view, reader, reveals)
    assert set(shown) == set(view)
    if whole:
        assert shown == view
    else:
        assert shown["redacted"] is True and shown["id"] is None
    for item in shown["items"]:
        hidden = item["source"] not in (None, reader) and not reveals(item["rule"])
        assert not hidden, item  # never a source the rule hides from the reader
    if actor != reader:
        assert all(i["source"] == reader for i in shown["items"])
        assert shown["client"] is None and shown["case_reference"] is None
        assert set(shown["objects"]) <= {"recipient"}
    else:
        assert len(shown["items"]) == len(items)
