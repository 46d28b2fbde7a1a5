"""The request journal and the impact of a draft: real requests through the API journaled
in blind form, replayed under a draft of the demo pack (one field revealed, one rule
dropped, one added), over the API and the command line; the journal's retention.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.app import create_app
from broker.audit import reads
from broker.auth.actors import system_actor
from broker.auth.clients import create_client
from broker.cli import main
from broker.clock import utcnow
from broker.core.policy import load_pack
from broker.models import request_journal
from broker.runtime import Runtime, open_runtime
from broker.services.retention import run_retention
from broker.settings import Settings
from tests.api.disclosure_kit import BAG_ID, BSN, OTHER_BSN, POSTCODE, drugs, energy, hennep
from tests.conftest import DEMO_PACK

Headers = Callable[..., dict[str, str]]
CASE = "ZAAK-2026-0777"
ACTING = "handhaver-7"
DRUGS_RULE = "gemeente-drugs-handhaving"
DROPPED_RULE = "gemeente-hennep-handhaving"
ADDED_RULE = "belastingdienst-drugs-hit"
ADDED = f"""
  - id: {ADDED_RULE}
    description: De Belastingdienst hoort of er drugsmeldingen onder art. 16 Wpg bestaan
    recipients: [belastingdienst]
    purposes: [fiscale-handhaving]
    categories: [drugsgerelateerde-melding]
    sources: [politie]
    legal_bases: [wpg-art-16]
    access: hit
"""


def draft_folder(tmp_path: Path) -> Path:
    """The demo pack with the drugs rule's BSN revealed, the hennep rule dropped and a hit
    rule for the Belastingdienst added."""
    folder = tmp_path / "draft"
    shutil.copytree(DEMO_PACK, folder)
    (folder / "tests.yaml").unlink()  # the demo's expectations are of the demo pack
    rules = folder / "rules.yaml"
    text = rules.read_text(encoding="utf-8")
    text = text.replace("subject.bsn: pseudonymise", "subject.bsn: reveal", 1)
    start = text.index(f"  - id: {DROPPED_RULE}")
    end = text.index("  - id: ", start + 1)
    text = text[:start] + text[end:]
    rules.write_text(text.rstrip("\n") + "\n" + ADDED, encoding="utf-8")
    return folder


def last_entry(runtime: Runtime) -> dict[str, Any]:
    items, _ = reads.list_entries(runtime.engine, reads.Scope.everything(),
                                  reads.EntryFilter(), limit=1, cursor=None)
    return items[0]


def disclose(api: TestClient, headers: dict[str, str], query: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/v1/disclosures", headers=headers, json={
        "purpose": "integrale-controle", "case_reference": CASE, "query": query})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def hit(api: TestClient, headers: dict[str, str], bsn: str) -> bool:
    answer = api.post("/v1/hits", headers=headers, json={
        "purpose": "fiscale-handhaving", "case_reference": CASE, "subject": {"bsn": bsn}})
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["hit"])


def traffic(api: TestClient, submit: Any, auth_headers: Headers) -> dict[str, Any]:
    """Signals, and requests of three partners for them; what the test knows of both."""
    signal_ids = [submit("politie", drugs()), submit("politie", drugs(number=14)),
                  submit("politie", drugs(bsn=OTHER_BSN, number=16)),
                  submit("politie", hennep()), submit("netbeheerder", energy())]
    gemeente = auth_headers("gemeente", ["requester"], acting_user=ACTING)
    belastingdienst = auth_headers("belastingdienst", ["requester"], acting_user=ACTING)
    riec = auth_headers("riec", ["requester"], acting_user=ACTING)
    answers = [disclose(api, gemeente, {"subject": {"bsn": BSN}}),
               disclose(api, gemeente, {"subject": {"bsn": BSN}}),
               disclose(api, gemeente, {"area": {"postcode": POSTCODE}})]
    hits = [hit(api, belastingdienst, BSN), hit(api, belastingdienst, OTHER_BSN)]
    summary = api.post("/v1/area-summaries", headers=riec, json={
        "purpose": "ondermijningsbeeld", "area": {"postcode": POSTCODE[:4]}})
    assert summary.status_code == 200, summary.text
    return {"signal_ids": signal_ids, "answers": answers, "hits": hits,
            "refs": [s["ref"] for a in answers for s in a["signals"]]}


def expected(known: dict[str, Any]) -> dict[str, Any]:
    """The report the draft must give, counted from the live answers themselves."""
    released = [s for a in known["answers"] for s in a["signals"]]
    drugs_signals = [s for s in released if s["rule"] == DRUGS_RULE]
    hennep_signals = [s for s in released if s["rule"] == DROPPED_RULE]
    energy_signals = [s for s in released if s["rule"] == "gemeente-energie-integrale-controle"]
    assert len(drugs_signals) == 2 + 2 + 3 and len(hennep_signals) == 1
    assert len(energy_signals) == 1 and known["hits"] == [False, False]
    # Every drugs signal the gemeente got is in the field counted: the BSN it holds.
    assert all("subject.bsn" in s["fields"] for s in drugs_signals)

    def rule(rule_id: str, requests: int, affected: int, **counts: Any) -> dict[str, Any]:
        return {"rule": rule_id, "requests": requests, "affected": affected,
                "signals_gained": 0, "signals_lost": 0, "hits_gained": 0, "hits_lost": 0,
                "cells_published": 0, "cells_suppressed": 0, "fields": [], **counts}

    gemeente = {
        "recipient": "gemeente", "purpose": "integrale-controle", "requests": 3, "affected": 3,
        "rules": [
            rule(DRUGS_RULE, 3, 3, fields=[{"path": "subject.bsn", "before": "pseudonymise",
                                            "after": "reveal", "signals": len(drugs_signals)}]),
            rule("gemeente-energie-integrale-controle", 1, 0),
            rule(DROPPED_RULE, 1, 1, signals_lost=len(hennep_signals)),
        ]}
    belastingdienst = {"recipient": "belastingdienst", "purpose": "fiscale-handhaving",
                       "requests": 2, "affected": 2,
                       "rules": [rule(ADDED_RULE, 2, 2, hits_gained=2)]}
    riec = {"recipient": "riec", "purpose": "ondermijningsbeeld", "requests": 1,
            "affected": 0}
    totals = {"requests": 6, "affected": 5, "signals_gained": 0,
              "signals_lost": len(hennep_signals), "field_changes": len(drugs_signals),
              "hits_flipped": 2, "cells_crossed": 0}
    return {"totals": totals, "groups": [belastingdienst, gemeente, riec]}


def assert_report(report: dict[str, Any], want: dict[str, Any]) -> None:
    assert report["totals"] == want["totals"]
    groups = {(g["recipient"], g["purpose"]): g for g in report["groups"]}
    assert sorted(groups) == sorted((g["recipient"], g["purpose"]) for g in want["groups"])
    for group in want["groups"]:
        got = groups[(group["recipient"], group["purpose"])]
        assert (got["requests"], got["affected"]) == (group["requests"], group["affected"])
        if "rules" in group:
            assert got["rules"] == group["rules"]
        else:  # the riec's area summary: its rules decide the same under both packs
            assert all(r["affected"] == 0 for r in got["rules"])


def assert_blind(text: str, known: dict[str, Any]) -> None:
    """No value, identifier, signal id, ref, case reference or acting person in `text`."""
    secrets = [BSN, OTHER_BSN, BAG_ID, POSTCODE, POSTCODE[:4], "Sem de Vries", "1990-04-02",
               "PL-123", "Kanaalstraat", CASE, ACTING, *known["signal_ids"], *known["refs"]]
    for secret in secrets:
        assert secret not in text, secret


@pytest.fixture
def officer(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("riec", ["privacy_officer"])


def draft_files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.yaml"))}


def test_the_draft_reports_exactly_what_it_changes_and_nothing_personal(
    api: TestClient, submit: Any, auth_headers: Headers, officer: dict[str, str],
    runtime: Runtime, tmp_path: Path,
) -> None:
    known = traffic(api, submit, auth_headers)
    folder = draft_folder(tmp_path)
    answer = api.post("/v1/policy/impact", headers=officer, json={"files": draft_files(folder)})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    draft_hash = load_pack(folder).hash
    assert (report["live"], report["draft"]) == (runtime.policy.pack.hash, draft_hash)
    assert_report(report, expected(known))
    assert_blind(answer.text, known)
    entry = last_entry(runtime)
    assert entry["action"] == "policy_impact"
    assert entry["objects"] == {"live": report["live"], "draft": draft_hash,
                                "since": report["since"], **report["totals"]}
    assert entry["actor"]["org"] == "riec"
    assert_blind(json.dumps(entry), known)


def test_the_same_draft_by_hash_and_over_a_period_and_from_the_command_line(
    api: TestClient, submit: Any, auth_headers: Headers, officer: dict[str, str],
    runtime: Runtime, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from broker.services import packs

    known = traffic(api, submit, auth_headers)
    folder = draft_folder(tmp_path)
    demo = runtime.policy.pack.hash
    draft_hash, _ = packs.reload_from_dir(runtime, folder, actor=system_actor("cli"))
    packs.activate(runtime, load_pack(DEMO_PACK), actor=system_actor("cli"))
    assert runtime.policy.pack.hash == demo
    by_hash = api.post("/v1/policy/impact", headers=officer,
                       json={"draft": draft_hash.removeprefix("sha256:")[:12], "since": "1d"})
    assert by_hash.status_code == 200, by_hash.text
    assert_report(by_hash.json(), expected(known))

    monkeypatch.setenv("BROKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROKER_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("BROKER_POLICY_DIR", str(settings.policy_dir))
    capsys.readouterr()
    assert main(["policy", "impact", str(folder), "--since", "2h", "--json"]) == 0
    printed = capsys.readouterr().out
    assert_report(json.loads(printed), expected(known))
    assert_blind(printed, known)
    assert main(["policy", "impact", str(folder)]) == 0
    text = capsys.readouterr().out
    assert f"rule {DROPPED_RULE}: 1 of 1 requests affected; signals +0 -1" in text
    assert "subject.bsn: pseudonymise -> reveal (7 signals)" in text
    assert_blind(text, known)
    assert main(["policy", "impact", str(folder), "--since", "soon"]) == 1


def test_refusals_of_the_impact_route(
    api: TestClient, officer: dict[str, str], auth_headers: Headers, runtime: Runtime
) -> None:
    both = api.post("/v1/policy/impact", headers=officer,
                    json={"draft": "abcdef", "files": {"a.yaml": "pack: x"}})
    assert both.status_code == 422
    unknown = api.post("/v1/policy/impact", headers=officer, json={"draft": "0" * 64})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    broken = api.post("/v1/policy/impact", headers=officer, json={"files": {"a.yaml": "pack: x"}})
    assert (broken.status_code, broken.json()["code"]) == (422, "policy_pack_invalid")
    period = api.post("/v1/policy/impact", headers=officer,
                      json={"draft": "abcdef", "since": "2w"})
    assert period.status_code == 422
    requester = auth_headers("gemeente", ["requester"])
    denied = api.post("/v1/policy/impact", headers=requester, json={"draft": "abcdef"})
    assert denied.status_code == 403
    assert last_entry(runtime)["action"] != "policy_impact"


def journal_count(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(request_journal)).scalar_one())


def test_the_journal_is_blind_and_the_retention_run_empties_it(
    api: TestClient, submit: Any, auth_headers: Headers, runtime: Runtime, settings: Settings
) -> None:
    known = traffic(api, submit, auth_headers)
    assert journal_count(runtime) == 6
    with runtime.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(request_journal))]
    assert {(r["kind"], r["recipient"], r["lookup"]) for r in rows} == {
        ("disclosure", "gemeente", "subject"), ("disclosure", "gemeente", "pc6"),
        ("hit", "belastingdienst", "subject"), ("area_summary", "riec", "pc4")}
    assert all(r["token"] is not None and len(r["token"]) >= 16 for r in rows)
    assert_blind(repr(rows), known)
    if settings.is_sqlite:  # every byte of the database: no identifier in clear anywhere
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for identifier in (BSN, OTHER_BSN, BAG_ID, "Sem de Vries", "Kanaalstraat", ACTING):
            for encoded in (identifier.encode(), identifier.encode("utf-16-le")):
                assert encoded not in stored, identifier
    actor = system_actor("test")
    run_retention(runtime, actor, now=utcnow() + timedelta(days=29))
    assert journal_count(runtime) == 6
    run = run_retention(runtime, actor, now=utcnow() + timedelta(days=30, minutes=1))
    assert (run.requests_forgotten, journal_count(runtime)) == (6, 0)


def test_replay_days_zero_keeps_no_journal(settings: Settings) -> None:
    off = settings.model_copy(update={"replay_days": 0})
    runtime = open_runtime(off)
    try:
        with TestClient(create_app(off, runtime=runtime)) as api:
            client, secret = create_client(runtime, org="belastingdienst", name="t",
                                           kind="system", roles=["requester"])
            token = api.post("/oauth/token", data={
                "grant_type": "client_credentials", "client_id": client.id,
                "client_secret": secret}).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "X-Acting-User": ACTING}
            assert hit(api, headers, BSN) is False
            assert journal_count(runtime) == 0
    finally:
        runtime.close()
