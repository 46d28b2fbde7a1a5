"""The officer's impact page: a draft's files uploaded, the journaled requests replayed
under the live pack and the draft, the counts per recipient, purpose and rule with the
diff beside them; recorded as `policy_impact`; no value or identifier on the page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from broker.runtime import Runtime
from tests.api.disclosure_kit import BSN, drugs, entries_since, log_size
from tests.api.test_officer_pages import officer_login, pages, signed_in  # noqa: F401
from tests.conftest import DEMO_PACK
from tests.officer_kit import csrf_of

Headers = Callable[..., dict[str, str]]
RULE = "gemeente-drugs-handhaving"


def draft_files() -> list[tuple[str, tuple[str, bytes, str]]]:
    """The demo pack with the drugs rule revealing the BSN to the gemeente."""
    files = []
    for path in sorted(Path(DEMO_PACK).glob("*.yaml")):
        text = path.read_text()
        if path.name == "rules.yaml":
            before = text.count("subject.bsn: pseudonymise")
            text = text.replace("subject.bsn: pseudonymise", "subject.bsn: reveal", 1)
            assert text.count("subject.bsn: pseudonymise") == before - 1
        files.append(("files", (path.name, text.encode(), "application/yaml")))
    return files


def test_an_uploaded_draft_is_replayed_with_its_diff(
    signed_in: TestClient, runtime: Runtime, auth_headers: Headers  # noqa: F811
) -> None:
    politie = auth_headers("politie", ["contributor"])
    assert signed_in.post("/v1/signals", headers=politie, json=drugs()).status_code == 201
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-1")
    for _ in range(2):
        asked = signed_in.post("/v1/disclosures", headers=gemeente, json={
            "purpose": "integrale-controle", "case_reference": "ZAAK-2026-0042",
            "query": {"subject": {"bsn": BSN}}})
        assert asked.status_code == 200, asked.text
    policy_page = signed_in.get("/officer/policy")
    assert 'id="impact-link"' in policy_page.text
    form = signed_in.get("/officer/policy/impact")
    assert form.status_code == 200
    before = log_size(runtime)
    page = signed_in.post("/officer/policy/impact", files=draft_files(),
                          data={"since": "14d", "csrf": csrf_of(form.text)})
    assert page.status_code == 200, page.text
    table = page.text.split('id="impact-table"')[1].split("</table>")[0]
    row = next(r for r in table.split("<tr>") if f"<code>{RULE}</code>" in r)
    assert "pseudonymise → reveal (2)" in row  # both replayed disclosures, one signal each
    assert 'id="impact-diff"' in page.text and RULE in page.text.split('id="impact-diff"')[1]
    assert BSN not in page.text and "ZAAK-2026-0042" not in page.text
    assert [e.action for e in entries_since(runtime, before)] == ["policy_impact"]


def test_files_that_make_no_pack_are_refused_and_nothing_is_recorded(
    signed_in: TestClient, runtime: Runtime  # noqa: F811
) -> None:
    form = signed_in.get("/officer/policy/impact")
    before = log_size(runtime)
    page = signed_in.post("/officer/policy/impact",
                          files=[("files", ("rules.yaml", b"rules: [", "application/yaml"))],
                          data={"since": "14d", "csrf": csrf_of(form.text)})
    assert page.status_code == 422
    bad_period = signed_in.post("/officer/policy/impact", files=draft_files(),
                                data={"since": "soon", "csrf": csrf_of(form.text)})
    assert bad_period.status_code == 422
    assert log_size(runtime) == before
