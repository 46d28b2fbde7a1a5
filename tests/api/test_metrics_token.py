"""`/metrics` tells how much each route is used: only the scraper holding the metrics token
(`BROKER_METRICS_TOKEN`) reads it, and without that setting it is off (docs/security.md,
"Metrics"). On SQLite and PostgreSQL, through the app; tests/e2e/test_metrics_served.py
asks a real uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from broker.app import create_app
from broker.runtime import Runtime, open_runtime
from broker.settings import Settings

Headers = Callable[..., dict[str, str]]
TOKEN = "metrics-scraper-0123456789abcdef-XYZ"


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    """The app with `BROKER_METRICS_TOKEN` set."""
    with_token = settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    runtime: Runtime = open_runtime(with_token)
    try:
        with TestClient(create_app(with_token, runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


def assert_refused(answer: Any) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "The metrics token is required."
    assert "sluis_http_requests_total" not in answer.text


def test_metrics_need_the_token(guarded: TestClient) -> None:
    assert_refused(guarded.get("/metrics"))
    answer = guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE sluis_http_requests_total counter" in answer.text
    # The refused scrape above was counted like any request; nothing of it leaked then.
    assert 'route="/metrics",status="401"} 1' in answer.text


def test_a_partners_access_token_does_not_open_metrics(
    guarded: TestClient, credentials: Callable[..., tuple[str, str]]
) -> None:
    client_id, secret = credentials("gemeente", ["requester"])
    token = guarded.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
    }).json()["access_token"]
    assert_refused(guarded.get("/metrics", headers={"Authorization": f"Bearer {token}"}))


@pytest.mark.parametrize("headers", [
    [("Authorization", f"Basic {TOKEN}")],
    [("Authorization", TOKEN)],
    [("Authorization", f"Bearer {TOKEN[:-1]}")],
    [("Authorization", f"Bearer {TOKEN}x")],
    [("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")],
    [("X-Metrics-Token", TOKEN)],
])
def test_anything_but_the_token_once_as_bearer_is_refused(
    guarded: TestClient, headers: list[tuple[str, str]]
) -> None:
    assert_refused(guarded.get("/metrics", headers=headers))


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(presented=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                         min_size=1, max_size=80))
def test_no_other_bearer_value_opens_metrics(guarded: TestClient, presented: str) -> None:
    answer = guarded.get("/metrics", headers={"Authorization": f"Bearer {presented}"})
    assert answer.status_code == (200 if presented == TOKEN else 401)


def test_without_the_setting_metrics_are_off(api: TestClient) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        answer = api.get("/metrics", headers=headers)
        assert answer.status_code == 404
        assert answer.json()["detail"] == (
            "Metrics are off: set BROKER_METRICS_TOKEN to serve them.")
        assert "sluis_" not in answer.text


@pytest.mark.parametrize("value", ["short", "x" * 31])
def test_a_short_token_is_refused_without_repeating_it(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(metrics_token=value)
    assert "must be at least 32 characters" in str(refused.value)
    assert value not in str(refused.value)


def test_an_empty_token_means_off() -> None:
    assert Settings(metrics_token="").metrics_token is None
