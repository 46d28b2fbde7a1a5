"""A retry under an `Idempotency-Key` says it is one: `Idempotent-Replayed: true` on the
replayed first answer, never on the answer that stored the signals (so `sluis import`
tells new signals from those an earlier import sent)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.api.disclosure_kit import drugs

Headers = Callable[..., dict[str, str]]


def test_a_replayed_answer_says_so_and_the_first_does_not(
    api: TestClient, auth_headers: Headers
) -> None:
    politie = auth_headers("politie", ["contributor"])
    for path, body in (("/v1/signals", drugs(number=1)),
                       ("/v1/signals/batch", {"signals": [drugs(number=2), drugs(number=3)]})):
        headers = {**politie, "Idempotency-Key": f"key-{path}"}
        first = api.post(path, headers=headers, json=body)
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        again = api.post(path, headers=headers, json=body)
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
