"""Fixtures shared by the API tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def submit(api: TestClient, auth_headers: Headers) -> Callable[[str, dict[str, Any]], str]:
    """Submit a signal as a contributor of `org`; returns its id."""
    made: dict[str, dict[str, str]] = {}

    def send(org: str, body: dict[str, Any]) -> str:
        if org not in made:
            made[org] = auth_headers(org, ["contributor"])
        answer = api.post("/v1/signals", json=body, headers=made[org])
        assert answer.status_code == 201, answer.text
        signal_id: str = answer.json()["id"]
        return signal_id

    return send
