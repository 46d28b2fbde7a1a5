"""Legal holds: a privacy officer keeps the organisation's signal from retraction and the
retention run until the hold is lifted; every step audited. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from broker import migrate
from broker.auth.actors import system_actor
from broker.clock import utcnow
from broker.db import make_engine
from broker.runtime import Runtime
from broker.services import retention
from tests.api.disclosure_kit import drugs, energy

Headers = Callable[..., dict[str, str]]
PROBLEM = "application/problem+json"


def _actions(runtime: Runtime, since: int) -> list[tuple[str, str | None]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, action, bytes FROM audit_entry WHERE seq >= :s"
                                 " ORDER BY seq"), {"s": since}).all()
    reasons = []
    for _seq, action, data in rows:
        raw = bytes(data)
        reason = "legal_hold" if b'"reason":"legal_hold"' in raw else None
        reasons.append((action, reason))
    return reasons


def _size(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_entry")).scalar_one())


def test_a_held_signal_survives_retraction_and_retention_until_the_hold_is_lifted(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    officer = auth_headers("netbeheerder", ["privacy_officer"])
    signal_id = api.post("/v1/signals", json=energy(), headers=netbeheerder).json()["id"]
    start = _size(runtime)

    placed = api.post(f"/v1/signals/{signal_id}/hold", json={"case_reference": "RB-2026-17"},
                      headers=officer)
    assert placed.status_code == 201, placed.text
    assert placed.json()["case_reference"] == "RB-2026-17"
    assert api.get(f"/v1/signals/{signal_id}/hold", headers=officer).json() == placed.json()
    again = api.post(f"/v1/signals/{signal_id}/hold", json={"case_reference": "RB-2026-18"},
                     headers=officer)
    assert again.status_code == 409

    refused = api.delete(f"/v1/signals/{signal_id}", headers=netbeheerder)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == PROBLEM
    later = utcnow() + timedelta(days=4000)
    assert retention.run_retention(runtime, system_actor("test"), now=later).erased == 0
    assert api.get(f"/v1/signals/{signal_id}", headers=netbeheerder).status_code == 200

    assert api.delete(f"/v1/signals/{signal_id}/hold", headers=officer).status_code == 204
    assert api.get(f"/v1/signals/{signal_id}/hold", headers=officer).status_code == 404
    assert retention.run_retention(runtime, system_actor("test"), now=later).erased == 1
    assert api.get(f"/v1/signals/{signal_id}", headers=netbeheerder).status_code == 404
    assert _actions(runtime, start) == [
        ("legal_hold_placed", None),
        ("refusal", "legal_hold"),
        ("retention_run", None),
        ("legal_hold_lifted", None),
        ("retention_run", None),
    ]


def test_a_hold_covers_only_the_officers_own_live_signals(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    politie = auth_headers("politie", ["contributor"])
    theirs = api.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
    officer = auth_headers("netbeheerder", ["privacy_officer"])
    for signal_id in (theirs, "sig_" + "a" * 24, "not-an-id"):
        answer = api.post(f"/v1/signals/{signal_id}/hold", json={"case_reference": "RB-1"},
                          headers=officer)
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == PROBLEM
        assert api.delete(f"/v1/signals/{signal_id}/hold", headers=officer).status_code == 404
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM legal_hold")).scalar_one() == 0


def test_a_hold_names_a_case_number_not_free_text(
    api: TestClient, auth_headers: Headers
) -> None:
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    signal_id = api.post("/v1/signals", json=energy(), headers=netbeheerder).json()["id"]
    officer = auth_headers("netbeheerder", ["privacy_officer"])
    for body in ({}, {"case_reference": "Jan Jansen, Kanaalstraat 12"},
                 {"case_reference": "RB-1", "note": "x"}):
        answer = api.post(f"/v1/signals/{signal_id}/hold", json=body, headers=officer)
        assert answer.status_code == 422, answer.text
        assert "Jansen" not in answer.text


def test_only_a_privacy_officer_places_a_hold(
    api: TestClient, auth_headers: Headers
) -> None:
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    signal_id = api.post("/v1/signals", json=energy(), headers=netbeheerder).json()["id"]
    answer = api.post(f"/v1/signals/{signal_id}/hold", json={"case_reference": "RB-1"},
                      headers=netbeheerder)
    assert answer.status_code == 403


def test_an_officer_lists_the_organisations_holds_newest_first_in_pages(
    api: TestClient, auth_headers: Headers
) -> None:
    politie = auth_headers("politie", ["contributor"])
    officer = auth_headers("politie", ["privacy_officer"])
    other_officer = auth_headers("netbeheerder", ["privacy_officer"])
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    ours = [api.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
            for _ in range(5)]
    theirs = api.post("/v1/signals", json=energy(), headers=netbeheerder).json()["id"]
    cases = ["RB-1", "RB-2", "RB-1", "RB-2", "RB-1"]
    for signal_id, case in zip(ours, cases, strict=True):
        assert api.post(f"/v1/signals/{signal_id}/hold", json={"case_reference": case},
                        headers=officer).status_code == 201
    assert api.post(f"/v1/signals/{theirs}/hold", json={"case_reference": "RB-9"},
                    headers=other_officer).status_code == 201
    assert api.delete(f"/v1/signals/{ours[3]}/hold", headers=officer).status_code == 204

    seen: list[dict[str, str]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/legal-holds", params=params, headers=officer)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 2
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    held = [ours[4], ours[2], ours[1], ours[0]]  # newest first; the lifted one is gone
    assert [h["signal_id"] for h in seen] == held
    assert {h["category"] for h in seen} == {"drugsgerelateerde-melding"}
    assert all(set(h) == {"signal_id", "category", "case_reference", "placed_by",
                          "placed_at"} for h in seen)
    assert theirs not in {h["signal_id"] for h in seen}

    one_case = api.get("/v1/legal-holds", params={"case_reference": "RB-1"}, headers=officer)
    assert [h["signal_id"] for h in one_case.json()["items"]] == [ours[4], ours[2], ours[0]]
    assert api.get("/v1/legal-holds", headers=other_officer).json()["items"][0][
        "signal_id"] == theirs


def test_bad_list_parameters_are_problems(api: TestClient, auth_headers: Headers) -> None:
    officer = auth_headers("politie", ["privacy_officer"])
    for params in ({"cursor": "not-a-cursor"}, {"limit": "0"}, {"limit": "1001"},
                   {"case_reference": " RB 1"}, {"cursor": "cjF8MjAyNi0wMS0wMXxyZXFfeA"}):
        answer = api.get("/v1/legal-holds", params=params, headers=officer)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"] == PROBLEM
    requester = auth_headers("politie", ["requester"])
    assert api.get("/v1/legal-holds", headers=requester).status_code == 403


def test_holds_placed_before_0006_are_listed_after_it(
    api: TestClient, auth_headers: Headers, runtime: Runtime, db_url: str
) -> None:
    """Migration 0006 gives each hold its signal's organisation (the list reads holds by
    it): holds placed at 0005 are listed after the upgrade, and 0005 comes back."""
    politie = auth_headers("politie", ["contributor"])
    officer = auth_headers("politie", ["privacy_officer"])
    held = [api.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
            for _ in range(2)]
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0005")
        with engine.begin() as conn:  # placed as 0005 placed them: no organisation
            for n, signal_id in enumerate(held):
                conn.execute(text(
                    "INSERT INTO legal_hold (signal_id, case_reference, placed_by, placed_at)"
                    " VALUES (:s, 'RB-5', 'cl_x', :t)"),
                    {"s": signal_id, "t": utcnow() + timedelta(seconds=n)})
        migrate.upgrade(engine)
        with engine.connect() as conn:
            orgs = conn.execute(text("SELECT DISTINCT org FROM legal_hold")).scalars().all()
    finally:
        engine.dispose()
    assert orgs == ["politie"]
    listed = api.get("/v1/legal-holds", headers=officer)
    assert [h["signal_id"] for h in listed.json()["items"]] == held[::-1]
    assert api.delete(f"/v1/signals/{held[0]}", headers=politie).status_code == 409


def test_0006_refuses_a_hold_of_no_stored_signal_and_changes_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO legal_hold (signal_id, case_reference, placed_by, placed_at)"
                " VALUES ('sig_gone', 'RB-5', 'cl_x', :t)"), {"t": utcnow()})
        with pytest.raises(RuntimeError, match="1 legal holds name no stored signal"):
            migrate.upgrade(engine)
        assert migrate.current_revision(engine) == "0005"
    finally:
        engine.dispose()
