"""The packs that were live, for the privacy officer: history, a stored pack's text and the
diff of two, through the API (each read audited), the officer's policy page and the
command line."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.audit import reads
from broker.auth.actors import system_actor
from broker.cli import main
from broker.clock import utcnow
from broker.core.policy import CompiledPolicy, load_pack
from broker.core.policy.diff import diff_packs
from broker.models import policy_version
from broker.runtime import Runtime
from broker.services import packs
from broker.settings import Settings
from tests.conftest import DEMO_PACK
from tests.e2e.officer_app import with_officer_pages
from tests.officer_kit import csrf_of

Headers = Callable[..., dict[str, str]]
DRUGS_RULE = "gemeente-drugs-handhaving"


def draft_folder(tmp_path: Path) -> Path:
    """The demo pack with the BSN of the drugs rule revealed instead of pseudonymised."""
    folder = tmp_path / "draft"
    shutil.copytree(DEMO_PACK, folder)
    rules = folder / "rules.yaml"
    text = rules.read_text(encoding="utf-8")
    assert text.count("subject.bsn: pseudonymise") == 2
    rules.write_text(text.replace("subject.bsn: pseudonymise", "subject.bsn: reveal", 1),
                     encoding="utf-8")
    return folder


@pytest.fixture
def loaded(runtime: Runtime, tmp_path: Path) -> tuple[str, str]:
    """(the demo pack's hash, the draft's hash), the draft loaded after the demo pack."""
    new, previous = packs.reload_from_dir(runtime, draft_folder(tmp_path),
                                          actor=system_actor("cli"))
    return previous, new


def last_entry(runtime: Runtime) -> dict[str, Any]:
    items, _ = reads.list_entries(runtime.engine, reads.Scope.everything(),
                                  reads.EntryFilter(), limit=1, cursor=None)
    return items[0]


@pytest.fixture
def officer(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("riec", ["privacy_officer"])


def test_history_lists_every_load_newest_first_and_records_the_read(
    api: TestClient, officer: dict[str, str], loaded: tuple[str, str], runtime: Runtime
) -> None:
    demo, draft = loaded
    answer = api.get("/v1/policy/history", headers=officer)
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [(i["hash"], i["live"], i["loaded_by"]) for i in items] == [
        (draft, True, "system:cli"), (demo, False, "system:startup")]
    assert {(i["pack"], i["version"]) for i in items} == {("ondermijning", "2026.11.1")}
    assert items[0]["loaded_at"] >= items[1]["loaded_at"]
    entry = last_entry(runtime)
    assert (entry["action"], entry["objects"]) == ("audit_read", {"read": "policy_history"})


def test_a_stored_pack_is_its_canonical_text_by_hash_or_prefix(
    api: TestClient, officer: dict[str, str], loaded: tuple[str, str], runtime: Runtime
) -> None:
    demo, draft = loaded
    answer = api.get(f"/v1/policy/packs/{demo}", headers=officer)
    assert answer.status_code == 200
    body = answer.json()
    assert body["canonical"].encode() == load_pack(DEMO_PACK).canonical
    assert "sha256:" + hashlib.sha256(body["canonical"].encode()).hexdigest() == demo
    assert (body["hash"], body["pack"], body["live"]) == (demo, "ondermijning", False)
    entry = last_entry(runtime)
    assert entry["objects"] == {"read": "policy_pack", "hash": demo}
    by_prefix = api.get(f"/v1/policy/packs/{draft.removeprefix('sha256:')[:10]}",
                        headers=officer)
    assert by_prefix.status_code == 200
    assert (by_prefix.json()["hash"], by_prefix.json()["live"]) == (draft, True)


def test_an_unknown_or_malformed_or_ambiguous_hash_is_refused_unrecorded(
    api: TestClient, officer: dict[str, str], loaded: tuple[str, str], runtime: Runtime
) -> None:
    before = last_entry(runtime)["seq"]
    unknown = api.get("/v1/policy/packs/sha256:" + "0" * 64, headers=officer)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["code"] == "not_found"
    malformed = api.get("/v1/policy/packs/abc", headers=officer)
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["loc"] == ["path", "hash"]
    with runtime.engine.begin() as conn:  # two recorded packs whose hashes begin alike
        for tail in ("1", "2"):
            conn.execute(policy_version.insert().values(
                hash="sha256:abcdef" + tail * 58, pack="x", version="1", canonical="{}",
                first_loaded_at=utcnow()))
    ambiguous = api.get("/v1/policy/packs/abcdef", headers=officer)
    assert ambiguous.status_code == 422
    assert "more than one" in ambiguous.json()["errors"][0]["msg"]
    assert api.get("/v1/policy/packs/abcdef1", headers=officer).status_code == 200
    stale = api.get("/v1/policy/diff", params={"from": "abcdef1", "to": loaded[0]},
                    headers=officer)
    assert stale.status_code == 422 and stale.json()["errors"][0]["loc"] == ["query", "from"]
    assert api.get("/v1/policy/diff", params={"from": loaded[0], "to": "sha256:" + "0" * 64},
                   headers=officer).status_code == 404
    seqs = [e["seq"] for e in reads.list_entries(
        runtime.engine, reads.Scope.everything(), reads.EntryFilter(), limit=10,
        cursor=None)[0] if e["seq"] > before]
    assert len(seqs) == 1  # only the one pack that was found was read


def test_the_diff_of_two_recorded_packs_is_the_diff_of_the_packs(
    api: TestClient, officer: dict[str, str], loaded: tuple[str, str], runtime: Runtime,
    tmp_path: Path,
) -> None:
    demo, draft = loaded
    answer = api.get("/v1/policy/diff", params={"from": demo, "to": draft}, headers=officer)
    assert answer.status_code == 200
    body = answer.json()
    expected = diff_packs(CompiledPolicy(load_pack(DEMO_PACK)),
                          CompiledPolicy(load_pack(draft_folder(tmp_path / "again"))))
    assert body == expected.as_dict()
    assert body["rules"]["changed"][0]["id"] == DRUGS_RULE
    assert {(a["purpose"], a["changes"][0]["before"], a["changes"][0]["after"])
            for a in body["access"]} == {("integrale-controle", "pseudonymise", "reveal"),
                                         ("gemeentelijke-handhaving", "pseudonymise", "reveal")}
    entry = last_entry(runtime)
    assert entry["objects"] == {"read": "policy_diff", "from": demo, "to": draft}
    same = api.get("/v1/policy/diff", params={"from": draft, "to": draft}, headers=officer)
    assert same.json()["empty"] is True and same.json()["access"] == []


def test_an_administrator_reads_the_history_and_a_partner_does_not(
    api: TestClient, auth_headers: Headers, loaded: tuple[str, str]
) -> None:
    admin = auth_headers("gemeente", ["admin"])
    assert api.get("/v1/policy/history", headers=admin).status_code == 200
    partner = auth_headers("gemeente", ["requester", "contributor"])
    for path in ("/v1/policy/history", f"/v1/policy/packs/{loaded[0]}",
                 f"/v1/policy/diff?from={loaded[0]}&to={loaded[1]}"):
        assert api.get(path, headers=partner).status_code == 403


# --- the officer's policy page ----------------------------------------------------------------


@pytest.fixture
def signed_in(settings: Settings, runtime: Runtime, credentials: Callable[..., tuple[str, str]]
              ) -> Iterator[TestClient]:
    app = create_app(settings, runtime=runtime)
    with TestClient(with_officer_pages(app), base_url="https://testserver",
                    follow_redirects=False) as client:
        client_id, secret = credentials("riec", ["privacy_officer"], "personal")
        form = client.get("/officer/sign-in")
        assert client.post("/officer/sign-in", data={
            "client_id": client_id, "client_secret": secret,
            "csrf": csrf_of(form.text)}).status_code == 303
        yield client


def test_the_policy_page_shows_each_version_with_its_changes(
    signed_in: TestClient, loaded: tuple[str, str], runtime: Runtime
) -> None:
    demo, draft = loaded
    page = signed_in.get("/officer/policy", params={"lang": "en"})
    assert page.status_code == 200
    newest = page.text[page.text.index('id="version-1"'):page.text.index('id="version-2"')]
    assert draft in newest and f"against <code>{demo}</code>" in newest
    assert f"<code>{DRUGS_RULE}</code> (fields)" in newest
    assert newest.count("pseudonymised → as recorded") == 2
    first = page.text[page.text.index('id="version-2"'):]
    assert "first recorded version" in first
    assert '<a href="#version-1">1 rule(s) and 2 access(es) changed</a>' in page.text
    entry = last_entry(runtime)
    assert (entry["action"], entry["objects"]) == ("audit_read", {"read": "officer_policy"})
    dutch = signed_in.get("/officer/policy", params={"lang": "nl"}).text
    assert "gepseudonimiseerd → zoals vastgelegd" in dutch


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, loaded: tuple[str, str], monkeypatch: pytest.MonkeyPatch
            ) -> tuple[str, str]:
    monkeypatch.setenv("BROKER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BROKER_KEY_DIR", str(settings.key_dir))
    monkeypatch.setenv("BROKER_POLICY_DIR", str(settings.policy_dir))
    return loaded


def test_cli_history_show_and_diff(
    cli_env: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    demo, draft = cli_env
    assert main(["policy", "history", "--json"]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["hash"], h["live"]) for h in history] == [(draft, True), (demo, False)]
    assert main(["policy", "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert draft in lines[0] and lines[0].endswith("by system:cli  (live)")
    assert demo in lines[1] and "(live)" not in lines[1]

    assert main(["policy", "show", demo.removeprefix("sha256:")[:8]]) == 0
    assert capsys.readouterr().out.rstrip("\n").encode() == load_pack(DEMO_PACK).canonical

    assert main(["policy", "diff", demo, draft]) == 0
    text = capsys.readouterr().out
    assert f"rule changed: {DRUGS_RULE}: fields" in text
    assert text.count("    subject.bsn: pseudonymise -> reveal") == 2
    assert ("gemeente / integrale-controle / drugsgerelateerde-melding / politie / wpg-art-16: "
            f"disclose (rule {DRUGS_RULE})") in text
    # A folder against a recorded pack, as JSON: the same diff.
    assert main(["policy", "diff", str(DEMO_PACK), draft[:15], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rules"]["changed"][0]["id"] == DRUGS_RULE
    assert main(["policy", "diff", str(DEMO_PACK), str(DEMO_PACK)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no changes"


def test_cli_refuses_what_names_no_pack(
    cli_env: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "show", "sha256:" + "0" * 64]) == 1
    assert "No recorded pack has this hash." in capsys.readouterr().err
    assert main(["policy", "diff", "no-such-folder", cli_env[0]]) == 2
    assert "neither a folder nor a pack hash" in capsys.readouterr().err
