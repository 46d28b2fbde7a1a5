"""One shape for an entry: wherever the API serves an entry (`entry` of a single read, an
item of the list, a line of the export), it is the object its canonical bytes decode to;
a partner's view of it is that object with members removed (and, in an item of a signal
not its own, the `ref` its answer gave in place of the signal's id). On SQLite and
PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.disclosure_kit import BAG_ID, energy, hennep

Headers = Callable[..., dict[str, str]]
STAND_INS = {"ref"}
"""The one member a partner's item has that the entry's item has not: the answer's ref."""


def within(shown: Any, whole: Any, path: str = "entry") -> None:
    """`shown` is `whole` with members removed (objects) or elements left out (arrays)."""
    if isinstance(shown, dict):
        assert isinstance(whole, dict), path
        for key, value in shown.items():
            if key in STAND_INS and path.startswith("entry.items"):
                continue
            assert key in whole, f"{path}.{key} is not in the entry"
            within(value, whole[key], f"{path}.{key}")
    elif isinstance(shown, list) and path.endswith(".items"):
        assert isinstance(whole, list), path
        for item in shown:  # each shown item is one of the entry's items, trimmed
            assert any(_fits(item, candidate, path) for candidate in whole), (path, item)
    else:
        assert shown == whole, path


def _fits(item: Any, candidate: Any, path: str) -> bool:
    try:
        within(item, candidate, path + "[]")
    except AssertionError:
        return False
    return True


@pytest.fixture
def disclosed(api: TestClient, auth_headers: Headers) -> int:
    """The gemeente's disclosure of a netbeheerder's and a politie's signal: its seq."""
    for org, signal in (("netbeheerder", energy()), ("politie", hennep())):
        answer = api.post("/v1/signals", json=signal,
                          headers=auth_headers(org, ["contributor"]))
        assert answer.status_code == 201, answer.text
    asked = api.post("/v1/disclosures", headers=auth_headers(
        "gemeente", ["requester"], acting_user="emp-1"), json={
        "purpose": "integrale-controle", "case_reference": "ZAAK-2026-77",
        "query": {"subject": {"bag_id": BAG_ID}}})
    assert asked.status_code == 200, asked.text
    assert len(asked.json()["signals"]) == 2
    seq: int = asked.json()["audit_seq"]
    return seq


def read(api: TestClient, headers: dict[str, str], seq: int) -> tuple[dict[str, Any], Any]:
    """(the single read of entry `seq`, its item in the list)."""
    body = api.get(f"/v1/audit/entries/{seq}", headers=headers)
    assert body.status_code == 200, body.text
    page = api.get("/v1/audit/entries", headers=headers, params={"action": "disclosure"})
    assert page.status_code == 200, page.text
    (listed,) = [i for i in page.json()["items"] if i["seq"] == seq]
    found: dict[str, Any] = body.json()
    return found, listed


def test_the_officers_entry_is_the_decoded_canonical_entry_everywhere(
    api: TestClient, auth_headers: Headers, disclosed: int
) -> None:
    officer = auth_headers("riec", ["privacy_officer"])
    body, listed = read(api, officer, disclosed)
    decoded = json.loads(base64.b64decode(body["entry_b64"]))
    assert body["redacted"] is False
    assert body["entry"] == decoded == listed
    assert set(decoded) >= {"v", "origin", "actor", "policy", "items"}
    assert decoded["actor"]["org"] == "gemeente" and decoded["seq"] == disclosed
    assert all("subject_tags" in item for item in decoded["items"])
    # the export carries the same bytes
    export = api.get("/v1/audit/export", headers=officer)
    assert export.status_code == 200
    lines = [json.loads(line) for line in export.text.splitlines()]
    (line,) = [x for x in lines if x.get("seq") == disclosed]
    assert line["entry_b64"] == body["entry_b64"]


@pytest.mark.parametrize("org", ["gemeente", "netbeheerder", "politie"])
def test_a_partners_redacted_view_is_that_entry_minus_members(
    api: TestClient, auth_headers: Headers, disclosed: int, org: str
) -> None:
    whole, _ = read(api, auth_headers("riec", ["privacy_officer"]), disclosed)
    entry = whole["entry"]
    body, listed = read(api, auth_headers(org, ["requester", "contributor"]), disclosed)
    shown = body["entry"]
    assert body["redacted"] is True and body["entry_b64"] is None
    assert shown == listed
    within(shown, entry)
    assert shown != entry and "id" not in shown
    if org == "gemeente":  # its own request whole; the signals as its answer gave them
        assert shown["actor"] == entry["actor"]
        assert [sorted(i) for i in shown["items"]] == [
            ["category", "fields", "legal_basis", "ref", "rule", "source"]] * 2
    else:  # a source: its own item, and who received it
        assert shown["actor"] == {"org": "gemeente"}
        assert [i["source"] for i in shown["items"]] == [org]
        assert "case_reference" not in shown and "request_id" not in shown
