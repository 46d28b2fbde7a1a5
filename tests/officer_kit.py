"""Helpers of the officer page tests: a day of work through the real API (signals in,
a disclosure, a hit, a refusal, a re-identification request), and form tokens.

The scenario speaks HTTP only, so the same code drives the ASGI test client and a broker
served by uvicorn (`http` is an `httpx.Client` or Starlette's `TestClient`: both `post`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.api.disclosure_kit import BSN, drugs, energy

CASE = "ZAAK-2026-0042"
DRUGS_RULE = "gemeente-drugs-handhaving"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Headers = Callable[[str], dict[str, str]]


def csrf_of(page: str) -> str:
    """The form token in a page (the first form's)."""
    found = _CSRF.search(page)
    assert found, "no form token on the page"
    return html.unescape(found.group(1))


@dataclass(frozen=True)
class Scenario:
    """What a scenario left in the log, for the tests to look for."""

    disclosure_seq: int
    disclosure_id: str
    reidentification_id: str


def _ok(answer: Any, status: int) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


def run_scenario(http: Any, headers: Headers, *,
                 confidential_until: str | None = None) -> Scenario:
    """Police and grid operator submit signals; the municipality asks a disclosure about a
    person and a hit check, and asks to re-identify the pseudonymised BSN it got; the
    housing corporation asks for a purpose no rule gives it (refused)."""
    _ok(http.post("/v1/signals", json=drugs(), headers=headers("politie")), 201)
    _ok(http.post("/v1/signals", json=energy(), headers=headers("netbeheerder")), 201)
    gemeente = headers("gemeente")
    body: dict[str, Any] = {"purpose": "integrale-controle", "case_reference": CASE,
                            "query": {"subject": {"bsn": BSN}}}
    if confidential_until:
        body["confidential_until"] = confidential_until
    disclosed = _ok(http.post("/v1/disclosures", json=body, headers=gemeente), 200)
    _ok(http.post("/v1/hits", headers=gemeente, json={
        "purpose": "integrale-controle", "case_reference": CASE, "subject": {"bsn": BSN}}), 200)
    refused = http.post("/v1/disclosures", headers=headers("woningcorporatie"), json={
        "purpose": "fiscale-handhaving", "case_reference": CASE,
        "query": {"subject": {"bsn": BSN}}})
    assert refused.status_code == 403, refused.text
    signal = next(s for s in disclosed["signals"] if s["rule"] == DRUGS_RULE)
    asked = _ok(http.post("/v1/reidentifications", headers=gemeente, json={
        "disclosure_id": disclosed["disclosure_id"], "ref": signal["ref"],
        "field": "subject.bsn",
        "justification": "Nodig om de bewoner aan te schrijven voor de sluiting.",
    }), 202)
    return Scenario(disclosed["audit_seq"], disclosed["disclosure_id"], asked["id"])
