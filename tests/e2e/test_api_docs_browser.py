"""The API documentation on a closed network: `/docs` (Swagger UI) and `/redoc` of a served
broker open in headless Chromium and show the operations, with every file they load
coming from the broker itself.

The machine has no network beyond loopback, so a page that needed a CDN would stay
blank here; the tests also check that nothing was asked of any other origin.
Needs Debian's `chromium` (BROKER_SKIP_BROWSER=1 skips on a machine without one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.e2e.chromium import Chromium, started_chromium
from tests.e2e.conftest import ServedBroker, served_broker_in

# Every file the page loaded or tried to load, as the browser's resource timing saw it.
RESOURCES = "performance.getEntriesByType('resource').map(e => e.name)"
# What the page's Content-Security-Policy stopped, recorded from before its first script.
WATCH = ("window.refused = []; document.addEventListener('securitypolicyviolation', "
         "e => window.refused.push(e.blockedURI));")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBroker]:
    with served_broker_in(tmp_path_factory.mktemp("docs-broker"), seed=False) as served:
        yield served


@pytest.fixture
def browser() -> Iterator[Chromium]:
    with started_chromium("the API documentation is") as chromium:
        yield chromium


def rendered(browser: Chromium, expression: str, wanted: str, seconds: float = 20) -> str:
    """The page's text once it holds `wanted` (the documentation renders after its load)."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        text = str(browser.evaluate(expression) or "")
        if wanted in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{wanted!r} never appeared; the page showed:\n{text[:2000]}")


def open_watched(browser: Chromium, url: str) -> int:
    browser.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH)
    return browser.goto(url)


def assert_only_from(broker: ServedBroker, browser: Chromium) -> None:
    """Every file came from the broker; anything else the page reached for, its policy
    stopped before it left the browser."""
    here = f"127.0.0.1:{broker.port}"
    elsewhere = {url for url in browser.evaluate(RESOURCES) if urlsplit(url).netloc != here}
    assert elsewhere <= set(browser.evaluate("window.refused")), elsewhere


def test_swagger_ui_shows_the_operations(broker: ServedBroker, browser: Chromium) -> None:
    assert open_watched(browser, broker.url + "/docs") == 200
    text = rendered(browser, "document.body.innerText", "/v1/disclosures")
    # An operation's summary and path, as Swagger UI lays them out.
    assert "Create Disclosure" in text
    assert "/oauth/token" in text and "/.well-known/oauth-authorization-server" in text
    html = browser.html()
    assert "opblock-summary" in html  # an operation rendered as a Swagger UI block
    assert_only_from(broker, browser)


def test_redoc_shows_the_operations(broker: ServedBroker, browser: Chromium) -> None:
    assert open_watched(browser, broker.url + "/redoc") == 200
    text = rendered(browser, "document.body.innerText", "/v1/disclosures")
    assert "Create Disclosure" in text and "/oauth/token" in text
    assert_only_from(broker, browser)
    # ReDoc's footer reaches for its maker's logo; the page's policy stops it.
    assert browser.evaluate("window.refused") == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
