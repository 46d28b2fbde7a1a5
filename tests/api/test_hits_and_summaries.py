"""POST /v1/hits and /v1/area-summaries, and the abuse limits on requests for signals.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.auth.clients import create_client
from broker.runtime import Runtime, open_runtime
from broker.settings import Settings
from tests.api.disclosure_kit import (
    BAG_ID,
    BSN,
    drugs,
    energy,
    entries_since,
    entry_at,
    hennep,
    log_size,
    log_verifies,
    published_count,
)

Headers = Callable[..., dict[str, str]]
RIEC_CATEGORIES = [
    "bedrijfsvestiging-risico", "drugsgerelateerde-melding", "energie-afwijking",
    "fiscale-schuld", "hennepteelt-vermoeden", "inschrijving-brp-afwijking",
    "milieu-overtreding", "onrechtmatige-bewoning", "overlast-melding",
    "voertuig-op-naam-bedrijf",
]


def hit(api: TestClient, headers: dict[str, str], subject: dict[str, str],
        purpose: str = "fiscale-handhaving", case: str | None = "FH-1") -> Any:
    body: dict[str, Any] = {"purpose": purpose, "subject": subject}
    if case:
        body["case_reference"] = case
    return api.post("/v1/hits", json=body, headers=headers)


def summary(api: TestClient, headers: dict[str, str], postcode: str,
            purpose: str = "ondermijningsbeeld") -> Any:
    return api.post("/v1/area-summaries", json={"purpose": purpose, "area": {"postcode": postcode}},
                    headers=headers)


def test_hit_answers_without_content_and_is_audited(
    api: TestClient, submit: Any, auth_headers: Headers, runtime: Runtime
) -> None:
    energy_id = submit("netbeheerder", energy())
    submit("politie", hennep())  # wpg-art-16: the Belastingdienst has no rule for it
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    answer = hit(api, belastingdienst, {"bag_id": BAG_ID})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("hit", "sources")} == {"hit": True, "sources": ["netbeheerder"]}
    assert set(body) == {"hit", "sources", "audit_seq", "policy_hash"}
    entry = entry_at(runtime, body["audit_seq"])
    assert (entry.action, entry.outcome, entry.purpose) == ("hit", "granted",
                                                            "fiscale-handhaving")
    ((item),) = entry.items
    assert item.signal_id == energy_id and item.rule == "belastingdienst-energie-hit"
    assert item.fields == {} and len(item.subject_tags) == 1
    assert entry.objects["hit"] is True


def test_no_hit_and_hidden_sources(
    api: TestClient, submit: Any, auth_headers: Headers, runtime: Runtime
) -> None:
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    miss = hit(api, belastingdienst, {"bsn": BSN})
    assert miss.status_code == 200
    assert (miss.json()["hit"], miss.json()["sources"]) == (False, [])
    entry = entry_at(runtime, miss.json()["audit_seq"])
    assert entry.items == [] and len(entry.objects["subject_tags"]) == 1  # type: ignore[arg-type]
    submit("politie", hennep(basis="wpg-art-19"))
    corporation = auth_headers("woningcorporatie", ["requester"])
    hidden = hit(api, corporation, {"bag_id": BAG_ID}, purpose="woonfraude", case="WF-3")
    assert (hidden.json()["hit"], hidden.json()["sources"]) == (True, [])
    # A purpose no rule names the corporation for is refused outright.
    other = hit(api, corporation, {"bag_id": BAG_ID}, purpose="openbare-orde", case=None)
    assert other.status_code == 403


def test_hit_purpose_checks(api: TestClient, auth_headers: Headers, runtime: Runtime) -> None:
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    assert hit(api, belastingdienst, {"bsn": BSN}, case=None).status_code == 422
    before = log_size(runtime)
    assert hit(api, belastingdienst, {"bsn": BSN}, purpose="geen-doel").status_code == 422
    assert hit(api, belastingdienst, {"bsn": BSN}, purpose="bibob-toets").status_code == 403
    assert [e.reason for e in entries_since(runtime, before)] == ["unknown_purpose",
                                                                  "purpose_not_allowed"]
    assert hit(api, belastingdienst, {"bsn": "111222334"}).status_code == 422


def test_area_summary_counts_and_suppresses(
    api: TestClient, submit: Any, auth_headers: Headers, runtime: Runtime
) -> None:
    energy_ids = [
        submit("netbeheerder", energy(bag_id=f"05990100000000{number:02d}", number=number,
                                      postcode="3072AB" if number < 4 else "3072AC"))
        for number in range(1, 7)]
    submit("politie", hennep(basis="wpg-art-20"))
    submit("politie", drugs(basis="wpg-art-20"))
    submit("politie", hennep(basis="wpg-art-16"))  # no riec rule: not counted at all
    riec = auth_headers("riec", ["requester"])
    answer = summary(api, riec, "3072")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["area"] == {"postcode": "3072"}
    counts = {c["category"]: (c["count"], c["suppressed"]) for c in body["categories"]}
    assert sorted(counts) == RIEC_CATEGORIES
    # Six signals, shown as the cell key method publishes exactly those six.
    shown = published_count(runtime, energy_ids)
    assert counts["energie-afwijking"] == (shown, shown is None)
    assert counts["hennepteelt-vermoeden"] == (None, True)
    assert counts["drugsgerelateerde-melding"] == (None, True)
    assert counts["overlast-melding"] == (None, True)  # none at all looks like a few
    entry = entry_at(runtime, body["audit_seq"])
    assert entry.action == "area_summary" and entry.items == []
    assert entry.objects["counts"] == {c: n for c, (n, _) in counts.items()}
    pc6 = {c["category"]: c["count"] for c in summary(api, riec, "3072 ab").json()["categories"]}
    # Three at 3072AB: at most 3 + 3 after noise, below five.
    assert pc6["energie-afwijking"] is None
    assert log_verifies(runtime)


def test_area_summary_refusals(api: TestClient, auth_headers: Headers) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    assert summary(api, gemeente, "3072").status_code == 403
    riec = auth_headers("riec", ["requester"])
    assert summary(api, riec, "30").status_code == 422
    officer = auth_headers("riec", ["privacy_officer"])
    assert summary(api, officer, "3072").status_code == 403


# --- abuse limits ---------------------------------------------------------------------


@pytest.fixture
def limited(settings: Settings) -> Iterator[tuple[TestClient, Runtime, Callable[..., Any]]]:
    """A broker allowing 6 requests a minute per client and purpose, 2 subjects an hour."""
    tight = settings.model_copy(update={"request_rate_per_minute": 6,
                                        "fishing_subjects_per_hour": 2})
    runtime = open_runtime(tight)
    try:
        with TestClient(create_app(tight, runtime=runtime)) as client:

            def headers(org: str) -> dict[str, str]:
                made, secret = create_client(runtime, org=org, name="t", roles=["requester"])
                token = client.post("/oauth/token", data={
                    "grant_type": "client_credentials", "client_id": made.id,
                    "client_secret": secret}).json()["access_token"]
                return {"Authorization": f"Bearer {token}", "X-Acting-User": "emp-1"}

            yield client, runtime, headers
    finally:
        runtime.close()


def test_rate_limit_per_client_and_purpose(
    limited: tuple[TestClient, Runtime, Callable[..., Any]],
) -> None:
    client, _, headers = limited
    riec = headers("riec")
    assert [summary(client, riec, "3072").status_code for _ in range(6)] == [200] * 6
    refused = summary(client, riec, "3072")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["code"] == "rate_limited"
    # Another purpose and another client have their own buckets.
    gemeente = headers("gemeente")
    assert hit(client, gemeente, {"bsn": BSN}, purpose="openbare-orde",
               case=None).status_code == 200


def test_fishing_for_subjects_raises_one_alert(
    limited: tuple[TestClient, Runtime, Callable[..., Any]],
) -> None:
    client, runtime, headers = limited
    gemeente = headers("gemeente")

    def ask(bsn: str) -> Any:
        return hit(client, gemeente, {"bsn": bsn}, purpose="openbare-orde", case=None)

    assert [ask(BSN).status_code, ask("123456782").status_code] == [200, 200]
    before = log_size(runtime)
    third = ask("100000009")
    assert third.status_code == 429 and "distinct subjects" in third.json()["detail"]
    assert int(third.headers["retry-after"]) > 3000  # until the first leaves the hour
    (alert,) = entries_since(runtime, before)
    assert (alert.action, alert.reason, alert.actor.org) == ("alert", "too_many_subjects",
                                                            "gemeente")
    assert "100000009" not in alert.model_dump_json()
    fourth = ask("200000007")
    assert fourth.status_code == 429 and "distinct subjects" in fourth.json()["detail"]
    assert log_size(runtime) == before + 1  # still over: no second alert
    assert ask(BSN).status_code == 200  # a subject already asked about passes
    assert log_verifies(runtime)
