"""Another organisation's signal by id (docs/security.md row 17): 404 and an audited denial.

The denial is audited the same way whether the signal belongs to another organisation
(live or erased) or never existed, so neither the answer nor the caller's own audit
entries tell which. The caller's own erased signals are a plain 404. Both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.audit.tables import audit_entry
from broker.core.entry import Entry, decode_entry
from broker.runtime import Runtime
from broker.services.signals import new_signal_id
from tests.api.disclosure_kit import drugs

Headers = Callable[..., dict[str, str]]


def log_size(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_entry)).scalar_one())


def entries_since(runtime: Runtime, seq: int) -> list[Entry]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(audit_entry.c.bytes).where(audit_entry.c.seq >= seq)
                            .order_by(audit_entry.c.seq)).all()
    return [decode_entry(bytes(row[0])) for row in rows]


def without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "instance"}


def denial(entry: Entry) -> tuple[Any, ...]:
    """What an entry of a denied read or erasure says, except the ids that differ."""
    return (entry.action, entry.outcome, entry.reason, entry.actor.org, entry.items,
            entry.policy, entry.objects["request"])


def test_another_organisations_signal_is_404_and_an_audited_denial(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    politie = auth_headers("politie", ["contributor"])
    gemeente = auth_headers("gemeente", ["contributor"])
    created = api.post("/v1/signals", json=drugs(), headers=politie)
    assert created.status_code == 201
    theirs = created.json()["id"]
    erased = api.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
    assert api.delete(f"/v1/signals/{erased}", headers=politie).status_code == 204
    never = new_signal_id()

    answers: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str], Entry] = {}
    for method, request in (("GET", "signal_read"), ("DELETE", "signal_erase")):
        for label, signal_id in (("theirs", theirs), ("erased", erased), ("never", never)):
            size = log_size(runtime)
            answer = api.request(method, f"/v1/signals/{signal_id}", headers=gemeente)
            assert answer.status_code == 404, (method, label)
            answers[method, label] = without_instance(answer.json())
            (entry,) = entries_since(runtime, size)
            assert (entry.action, entry.outcome, entry.reason) == (
                "refusal", "refused", "unknown_signal")
            assert entry.objects == {"request": request, "signal_id": signal_id}
            assert entry.actor.org == "gemeente" and entry.actor.roles == ["contributor"]
            assert entry.actor.acting_user_tag is not None
            assert entry.request_id == answer.headers["x-request-id"]
            seen[method, label] = entry
        # No oracle: a foreign, an erased and an unknown id look alike, answer and entry.
        assert answers[method, "theirs"] == answers[method, "erased"] == answers[method, "never"]
        assert denial(seen[method, "theirs"]) == denial(seen[method, "never"]) \
            == denial(seen[method, "erased"])
    # The owner's signal is untouched, and the owner's reads are no denials: neither of
    # its live signal nor of its erased one (the same 404 as everyone gets).
    size = log_size(runtime)
    assert api.get(f"/v1/signals/{theirs}", headers=politie).status_code == 200
    for method in ("GET", "DELETE"):
        answer = api.request(method, f"/v1/signals/{erased}", headers=politie)
        assert answer.status_code == 404
        assert without_instance(answer.json()) == answers[method, "never"]
    assert entries_since(runtime, size) == []


def test_an_id_that_names_no_signal_is_404_and_not_logged(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Caller input that cannot be a signal id stays out of the log (it could carry
    anything); the answer is the same 404."""
    gemeente = auth_headers("gemeente", ["contributor"])
    shaped = api.get(f"/v1/signals/{new_signal_id()}", headers=gemeente)
    size = log_size(runtime)
    for odd in ("nope", "sig_" + "A" * 24, new_signal_id() + "x", new_signal_id() + "%0A",
                "111222333"):
        for method in ("GET", "DELETE"):
            answer = api.request(method, f"/v1/signals/{odd}", headers=gemeente)
            assert answer.status_code == 404
            assert without_instance(answer.json()) == without_instance(shaped.json())
    assert log_size(runtime) == size
