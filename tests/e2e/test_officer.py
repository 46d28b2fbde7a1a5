"""The privacy officer's pages in a real headless Chromium against a broker served by
uvicorn on loopback: sign in, overview, log filter, a verified entry, a subject report
and its letter, a re-identification approved, the policy, a form without its token
refused, sign out; and a partner's client kept out.

Every page is saved as a screenshot in `tests/screenshots/` (git-ignored). With
`BROKER_OFFICER_DOCS=1` the overview is also written to `docs/officer-overview.png`:

    BROKER_OFFICER_DOCS=1 .venv/bin/pytest tests/e2e/test_officer.py

Chromium must be installed (Debian package `chromium`); without it these tests fail,
unless `BROKER_SKIP_BROWSER=1` says to skip them on a machine without a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.disclosure_kit import BSN
from tests.e2e.chromium import Chromium, started_chromium
from tests.e2e.serving import free_port, serving
from tests.officer_kit import Scenario, run_scenario

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / "screenshots"
DOCS_SHOT = REPO / "docs" / "officer-overview.png"


@dataclass
class Served:
    url: str
    clients: list[dict[str, Any]]

    def client(self, name_prefix: str) -> dict[str, Any]:
        return next(c for c in self.clients if c["name"].startswith(name_prefix))


def _broker(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "broker", *args], env=env, cwd=REPO, check=True,
                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`broker init`, `broker demo seed`, then uvicorn with the officer's pages on loopback."""
    directory = tmp_path_factory.mktemp("officer-broker")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update({
        "BROKER_DATABASE_URL": f"sqlite:///{directory / 'broker.db'}",
        "BROKER_KEY_DIR": str(directory / "keys"),
        "BROKER_POLICY_DIR": str(REPO / "policies" / "ondermijning"),
        "BROKER_ISSUER": f"http://127.0.0.1:{port}",
    })
    _broker(env, "init")
    clients_file = directory / "demo-clients.json"
    _broker(env, "demo", "seed", "--clients-file", str(clients_file))
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "--factory", "tests.e2e.officer_app:create",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with serving(command, env, url, directory / "serve.log"):
        yield Served(url, json.loads(clients_file.read_text()))


@pytest.fixture(scope="module")
def scenario(served: Served) -> Scenario:
    """A day of work through the served API with the demo partners' system clients."""
    tokens: dict[str, dict[str, str]] = {}
    with httpx.Client(base_url=served.url, timeout=30) as http:
        def headers(org: str) -> dict[str, str]:
            if org not in tokens:
                client = next(c for c in served.clients if c["org"] == org
                              and "contributor" in c["roles"])
                answer = http.post("/oauth/token", data={
                    "grant_type": "client_credentials", "client_id": client["client_id"],
                    "client_secret": client["client_secret"]})
                assert answer.status_code == 200, answer.text
                tokens[org] = {"Authorization": f"Bearer {answer.json()['access_token']}",
                               "X-Acting-User": f"{org}-medewerker-1"}
            return tokens[org]

        return run_scenario(http, headers)


@pytest.fixture
def browser() -> Iterator[Chromium]:
    with started_chromium("the officer's pages are") as chromium:
        yield chromium


def shoot(browser: Chromium, name: str) -> None:
    browser.screenshot(SHOTS / f"officer-{name}.png")


def sign_in(browser: Chromium, served: Served, client: dict[str, Any]) -> int:
    assert browser.goto(served.url + "/officer/sign-in") == 200
    browser.type_into("#client_id", client["client_id"])
    browser.type_into("#client_secret", client["client_secret"])
    return browser.press("#sign-in button[type=submit]")


def test_a_partners_client_cannot_sign_in(browser: Chromium, served: Served) -> None:
    status = sign_in(browser, served, served.client("RIEC analist"))
    assert status == 403
    assert "Alleen een functionaris gegevensbescherming" in browser.text()
    assert not any(c["name"] == "__Host-sluis-officer" for c in browser.cookies())
    shoot(browser, "refused")
    assert browser.goto(served.url + "/officer/") == 200  # the sign-in page, after a redirect
    assert browser.url().endswith("/officer/sign-in")


def test_the_officer_walks_through_every_page(
    browser: Chromium, served: Served, scenario: Scenario
) -> None:
    url = served.url + "/officer"
    # Sign in: the session cookie is HttpOnly, Secure, SameSite=Strict, and still sent
    # over http://127.0.0.1 (Chromium counts loopback as a secure context).
    assert sign_in(browser, served, served.client("Functionaris")) == 200
    assert browser.url() == url + "/"
    session = next(c for c in browser.cookies() if c["name"] == "__Host-sluis-officer")
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    text = browser.text()
    assert "Het logboek is intact" in text and "Functionaris gegevensbescherming" in text
    assert "Aandeel geweigerd" in text and "100%" in text
    assert scenario.reidentification_id in text
    shoot(browser, "overview")
    if os.environ.get("BROKER_OFFICER_DOCS") == "1":
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(SHOTS / "officer-overview.png", DOCS_SHOT)

    # The log, filtered through the form: only the refusal is left.
    assert browser.goto(url + "/log") == 200
    browser.choose("#f-outcome", "refused")
    assert browser.press("#apply-filters") == 200
    assert "outcome=refused" in browser.url()
    rows = browser.evaluate("document.querySelectorAll('#log-table tbody tr').length")
    assert rows == 1 and "Woningcorporatie" in browser.text()
    shoot(browser, "log")

    # One entry: its rule, its fields, and its proof against the signed checkpoint.
    assert browser.goto(f"{url}/log/{scenario.disclosure_seq}") == 200
    text = browser.text()
    assert "Geverifieerd: deze vastlegging staat onveranderd in het logboek." in text
    assert "gemeente-drugs-handhaving" in text and "gepseudonimiseerd" in text
    shoot(browser, "entry")

    # A data subject's access request, as a page and as a printable letter.
    assert browser.goto(url + "/subject") == 200
    browser.type_into("#value", BSN)
    assert browser.press("#subject-submit") == 200
    text = browser.text()
    assert "Gemeente, team Ondermijning" in text and "medewerker" not in text
    shoot(browser, "subject")
    browser.type_into("#value", BSN)
    assert browser.press("#subject-letter") == 200
    letter = browser.text()
    assert "Overzicht van verstrekte gegevens" in letter and BSN not in letter
    shoot(browser, "letter")

    # A re-identification request: read the justification, approve with a reason.
    assert browser.goto(f"{url}/reidentifications/{scenario.reidentification_id}") == 200
    assert "Nodig om de bewoner aan te schrijven" in browser.text()
    browser.type_into("#reason", "Sluiting voorbereid; het BSN is nodig voor de aanschrijving.")
    assert browser.press("#approve") == 200
    assert "Het besluit is vastgelegd." in browser.text() and "goedgekeurd" in browser.text()
    shoot(browser, "reidentification")

    # The policy in words, its hash and history; then English on request.
    assert browser.goto(url + "/policy") == 200
    assert "sha256:" in browser.text()
    shoot(browser, "policy")
    assert browser.goto(url + "/?lang=en") == 200
    assert browser.evaluate("document.documentElement.lang") == "en"
    assert "The log is intact" in browser.text()
    browser.goto(url + "/?lang=nl")

    # A form sent without its token is refused, in the browser too.
    browser.evaluate("document.querySelector('#verify-now').form"
                     ".querySelector('input[name=csrf]').remove()")
    assert browser.press("#verify-now") == 403
    assert "formuliertoken" in browser.text()

    # Sign out: back at sign-in, and the pages are closed again.
    assert browser.goto(url + "/") == 200
    assert browser.press("form[action$='/sign-out'] button") == 200
    assert "U bent uitgelogd." in browser.text()
    assert not any(c["name"] == "__Host-sluis-officer" for c in browser.cookies())
    browser.goto(url + "/log")
    assert browser.url().endswith("/officer/sign-in")


def test_the_policy_table_fits_a_1280_pixel_window_with_the_packs_titles(
    browser: Chromium, served: Served
) -> None:
    assert sign_in(browser, served, served.client("Functionaris")) == 200
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                 deviceScaleFactor=1, mobile=False)
    assert browser.goto(served.url + "/officer/policy") == 200
    box = browser.evaluate(
        "(() => { const t = document.querySelector('#rules-table');"
        " const last = t.querySelector('thead th:last-child').getBoundingClientRect();"
        " const holder = t.parentElement;"
        " return [t.scrollWidth, holder.clientWidth, last.right,"
        " holder.getBoundingClientRect().right]; })()")
    table_width, room, last_right, room_right = box
    assert table_width <= room and last_right <= room_right + 1, box
    assert "Verbruik in kWh per maand" in browser.text()
    assert "kwh per month" not in browser.text()
    shoot(browser, "policy-1280")
