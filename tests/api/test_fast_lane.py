"""The fast lane and the full stack give the same answers.

A request with `Content-Type: application/json` exactly is served by the fast lane
(`broker.api.fastlane`); the same request with `application/json; charset=utf-8` goes
through FastAPI's router and dependency solver. For every kind of request, plain or bad,
both must answer alike: same status, same headers that matter, same body but for what
names the request itself (ids, `audit_seq`, `instance`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette._utils import get_route_path

from broker.api.fastlane import FastLane, route_path
from broker.runtime import Runtime
from tests.api.disclosure_kit import (
    BAG_ID,
    BSN,
    drugs,
    energy,
    entry_at,
    hennep,
    log_size,
    log_verifies,
)

Headers = Callable[..., dict[str, str]]
LANE = "application/json"
FULL = "application/json; charset=utf-8"
VOLATILE = ("disclosure_id", "audit_seq", "instance")

CASE = {"purpose": "integrale-controle", "case_reference": "ZAAK-7"}
DISCLOSURES: dict[str, Any] = {
    "granted": {**CASE, "query": {"subject": {"bag_id": BAG_ID}}},
    "granted, pseudonymised": {**CASE, "query": {"subject": {"bsn": BSN}}},
    "empty": {**CASE, "query": {"subject": {"bsn": "123456782"}}},
    "unknown purpose": {"purpose": "nieuwsgierigheid", "query": {"subject": {"bsn": BSN}}},
    "no case reference": {"purpose": "integrale-controle", "query": {"subject": {"bsn": BSN}}},
    "purpose not given to the caller": {"purpose": "fiscale-handhaving",
                                        "case_reference": "FH-1",
                                        "query": {"subject": {"bsn": BSN}}},
    "unknown field": {**CASE, "query": {"subject": {"bsn": BSN}}, "extra": 1},
    "bad case reference": {**CASE, "case_reference": " spaces ", "query": {}},
    "no query": dict(CASE),
    "not an object": [1, 2, 3],
}
RAW_BODIES = {
    "invalid JSON": b'{"purpose": ',
    "duplicate key": b'{"purpose": "a", "purpose": "b"}',
    "NaN": b'{"purpose": NaN}',
    "NUL in a string": b'{"purpose": "a\\u0000"}',
    "invalid UTF-8": b'{"purpose": "\xff"}',
    "empty body": b"",
}


@pytest.fixture
def signals(submit: Any) -> None:
    submit("netbeheerder", energy())
    submit("politie", hennep())
    submit("politie", drugs())


def comparable(answer: Any) -> tuple[int, str | None, str | None, Any]:
    body = answer.json() if answer.content else None
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    return (answer.status_code, answer.headers.get("content-type"),
            answer.headers.get("www-authenticate"), body)


def both(api: TestClient, path: str, content: bytes | Iterator[bytes],
         headers: dict[str, str]) -> tuple[Any, Any]:
    """The lane's answer and the full stack's, for the same request."""
    chunks = list(content) if not isinstance(content, bytes) else None
    answers = []
    for content_type in (LANE, FULL):
        body = iter(chunks) if chunks is not None else content
        answers.append(api.post(path, content=body,
                                headers={**headers, "Content-Type": content_type}))
    return answers[0], answers[1]


@pytest.mark.usefixtures("signals")
@pytest.mark.parametrize("name", list(DISCLOSURES))
def test_disclosure_answers_agree(
    api: TestClient, auth_headers: Headers, runtime: Runtime, name: str
) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    lane, full = both(api, "/v1/disclosures", json.dumps(DISCLOSURES[name]).encode(), gemeente)
    assert comparable(lane) == comparable(full)
    assert lane.headers["x-request-id"] != full.headers["x-request-id"]
    if lane.status_code == 200:  # each has its own entry, describing the same release
        first, second = (entry_at(runtime, a.json()["audit_seq"]) for a in (lane, full))
        assert first.seq != second.seq
        assert [i.signal_id for i in first.items] == [i.signal_id for i in second.items]
        assert [i.fields for i in first.items] == [i.fields for i in second.items]
    assert log_verifies(runtime)


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_bad_bodies_agree(api: TestClient, auth_headers: Headers, name: str) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    lane, full = both(api, "/v1/disclosures", RAW_BODIES[name], gemeente)
    assert lane.status_code in (400, 422)
    assert comparable(lane) == comparable(full)


@pytest.mark.parametrize("case", ["no token", "bad token", "two tokens", "no acting person",
                                  "bad acting person", "contributor only"])
def test_refused_callers_agree(api: TestClient, auth_headers: Headers, case: str) -> None:
    headers = auth_headers("gemeente", ["requester"])
    if case == "no token":
        headers.pop("Authorization")
    elif case == "bad token":
        headers["Authorization"] = "Bearer " + "x" * 40
    elif case == "no acting person":
        headers.pop("X-Acting-User")
    elif case == "bad acting person":
        headers["X-Acting-User"] = "not allowed!"
    elif case == "contributor only":
        headers = auth_headers("gemeente", ["contributor"])
    body = json.dumps(DISCLOSURES["granted"]).encode()
    if case == "two tokens":
        for content_type in (LANE, FULL):
            answer = api.post("/v1/disclosures", content=body, headers=[
                ("Authorization", headers["Authorization"]),
                ("Authorization", headers["Authorization"]),
                ("X-Acting-User", "emp-1"), ("Content-Type", content_type)])
            assert answer.status_code == 401
        return
    lane, full = both(api, "/v1/disclosures", body, headers)
    assert lane.status_code in (400, 401, 403)
    assert comparable(lane) == comparable(full)


@pytest.mark.usefixtures("signals")
def test_hits_and_area_summaries_agree(api: TestClient, auth_headers: Headers) -> None:
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    hit = {"purpose": "fiscale-handhaving", "case_reference": "FH-1",
           "subject": {"bag_id": BAG_ID}}
    lane, full = both(api, "/v1/hits", json.dumps(hit).encode(), belastingdienst)
    assert lane.status_code == 200 and lane.json()["hit"] is True
    assert comparable(lane) == comparable(full)
    riec = auth_headers("riec", ["requester"])
    area = {"purpose": "ondermijningsbeeld", "area": {"postcode": "3072AB"}}
    lane, full = both(api, "/v1/area-summaries", json.dumps(area).encode(), riec)
    assert lane.status_code == 200
    assert comparable(lane) == comparable(full)


def asgi_post(app: Any, path: str, headers: dict[str, str], pieces: list[bytes],
              then_disconnect: bool = False, root_path: str = ""
              ) -> tuple[int, dict[str, str], bytes]:
    """POST `pieces` as separate ASGI messages (the test client joins a streamed body)."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    if then_disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": root_path, "query_string": b"", "server": ("testserver", 80),
             "client": ("127.0.0.1", 50000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    if not sent:
        return 0, {}, b""
    start = sent[0]
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.mark.usefixtures("signals")
@pytest.mark.parametrize("content_type", [LANE, FULL])
def test_a_body_in_pieces_is_read_whole(
    api: TestClient, auth_headers: Headers, content_type: str
) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    text = json.dumps(DISCLOSURES["granted"]).encode()
    status, headers, body = asgi_post(api.app, "/v1/disclosures",
                                      {**gemeente, "Content-Type": content_type},
                                      [text[:7], text[7:30], b"", text[30:]])
    assert status == 200, body
    assert len(json.loads(body)["signals"]) == 2


@pytest.mark.parametrize("content_type", [LANE, FULL])
def test_a_client_gone_mid_body_gets_no_answer_and_changes_nothing(
    api: TestClient, auth_headers: Headers, runtime: Runtime, content_type: str
) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    size = log_size(runtime)
    text = json.dumps(DISCLOSURES["granted"]).encode()
    status, _, _ = asgi_post(api.app, "/v1/disclosures",
                             {**gemeente, "Content-Type": content_type}, [text[:9]],
                             then_disconnect=True)
    assert status == 400  # a torn body is a bad request, though nobody is left to hear it
    assert log_size(runtime) == size


def test_a_body_over_the_limit_in_pieces_agrees(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    piece = b" " * 65536
    count = runtime.settings.max_body_bytes // len(piece) + 2
    lane, full = both(api, "/v1/disclosures", iter([b"{"] + [piece] * count + [b"}"]),
                      gemeente)
    assert lane.status_code == 413
    assert comparable(lane) == comparable(full)


@pytest.mark.usefixtures("signals")
def test_idempotency_key_is_honoured_in_the_lane(
    api: TestClient, auth_headers: Headers
) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    headers = {**gemeente, "Idempotency-Key": "lane-key-0001"}
    body = json.dumps(DISCLOSURES["granted"]).encode()
    first, again = both(api, "/v1/disclosures", body, headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()  # the same stored answer, ids and all
    other = json.dumps(DISCLOSURES["granted, pseudonymised"]).encode()
    lane, full = both(api, "/v1/disclosures", other, headers)
    assert lane.status_code == full.status_code == 409
    assert comparable(lane) == comparable(full)


class _Counted:
    """Passes every request on to the full stack, counting them."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


def _full_stack_behind_the_lane(api: TestClient) -> _Counted:
    api.get("/healthz")  # builds the middleware stack
    layer = api.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, FastLane):
        layer = layer.app
    counted = _Counted(layer.app)
    layer.app = counted
    return counted


def test_route_path_is_the_routers() -> None:
    for path, root in [("/v1/hits", ""), ("/sluis/v1/hits", "/sluis"), ("/v1/hits", "/sluis"),
                       ("/sluisx/v1/hits", "/sluis"), ("/sluis", "/sluis"), ("/", "/sluis")]:
        scope = {"path": path, "root_path": root}
        assert route_path(scope) == get_route_path(scope)


@pytest.mark.usefixtures("signals")
@pytest.mark.parametrize("content_type", [LANE, FULL])
def test_behind_a_proxy_root_path_the_lane_serves_the_plain_request(
    api: TestClient, auth_headers: Headers, content_type: str
) -> None:
    gemeente = {**auth_headers("gemeente", ["requester"]), "Content-Type": content_type}
    counted = _full_stack_behind_the_lane(api)
    text = json.dumps(DISCLOSURES["granted"]).encode()
    status, _, body = asgi_post(api.app, "/sluis/v1/disclosures", gemeente, [text],
                                root_path="/sluis")
    assert status == 200, body
    assert len(json.loads(body)["signals"]) == 2
    assert counted.calls == (0 if content_type == LANE else 1)
    status, _, _ = asgi_post(api.app, "/other/v1/disclosures", gemeente, [text],
                             root_path="/sluis")
    assert status == 404  # outside the root path: the router's answer, not the lane's
