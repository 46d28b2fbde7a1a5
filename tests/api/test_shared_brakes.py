"""Sign-outs and brakes hold across the processes of a deployment (docs/operations.md):
two runtimes over one database stand for two nodes, each with its own app. A session
signed out at one is refused at the other; failed token requests and sign-ins count
together, so alternating nodes gives a guesser nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.officer.web import SESSION_COOKIE
from broker.runtime import Runtime, open_runtime
from broker.services.brakes import SIGN_IN_FAILURES_PER_MINUTE
from broker.settings import Settings
from tests.api.test_officer_pages import sign_in, with_session
from tests.e2e.officer_app import with_officer_pages
from tests.officer_kit import csrf_of

Credentials = Callable[..., tuple[str, str]]


@pytest.fixture
def nodes(settings: Settings, runtime: Runtime) -> Iterator[tuple[TestClient, TestClient]]:
    other = open_runtime(settings)
    apps = [with_officer_pages(create_app(settings, runtime=r)) for r in (runtime, other)]
    try:
        with TestClient(apps[0], base_url="https://testserver", follow_redirects=False) as a, \
                TestClient(apps[1], base_url="https://testserver", follow_redirects=False) as b:
            yield a, b
    finally:
        other.close()


def test_a_session_signed_out_at_one_node_is_refused_at_the_other(
    nodes: tuple[TestClient, TestClient], credentials: Credentials
) -> None:
    a, b = nodes
    assert sign_in(a, *credentials("riec", ["privacy_officer"], "personal")).status_code == 303
    kept = a.cookies[SESSION_COOKIE]
    with_session(b, kept)
    assert b.get("/officer/").status_code == 200  # one session, both nodes
    page = a.get("/officer/")
    assert a.post("/officer/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
    with_session(b, kept)
    assert b.get("/officer/").status_code == 303  # to the sign-in page


def test_failed_token_requests_count_over_both_nodes(
    nodes: tuple[TestClient, TestClient], settings: Settings, credentials: Credentials
) -> None:
    client_id, secret = credentials("gemeente", ["requester"])
    limit = settings.token_rate_per_minute
    for attempt in range(limit):
        node = nodes[attempt % 2]
        answer = node.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": "wrong-" + secret})
        assert answer.status_code == 401, answer.text
    for node in nodes:  # the right secret too, at either node, until the window passes
        answer = node.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": secret})
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1


def test_failed_sign_ins_count_over_both_nodes(
    nodes: tuple[TestClient, TestClient], credentials: Credentials
) -> None:
    client_id, secret = credentials("riec", ["privacy_officer"], "personal")
    for attempt in range(SIGN_IN_FAILURES_PER_MINUTE):
        assert sign_in(nodes[attempt % 2], client_id, "wrong").status_code == 401
    for node in nodes:
        assert sign_in(node, client_id, secret).status_code == 429
