"""Bad input (docs/security.md rows 25-33): never a 500, always problem details, nothing stored.

The routes and their parameters come from the app's own OpenAPI document, so a route
added later is attacked too. Every case runs on SQLite and on PostgreSQL (which refuses
NUL in text, where SQLite stores it): the `db_url`-parametrised fixtures.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from broker.api.routing import MAX_INTEGER_DIGITS, strict_loads
from broker.audit.tables import audit_entry
from broker.cli import main as cli_main
from broker.core.entry import Entry, decode_entry
from broker.runtime import Runtime, open_runtime
from broker.schemas.text import has_control_characters
from broker.settings import Settings
from tests.api.disclosure_kit import BSN, drugs
from tests.security.conftest import (
    DEMO_PACK,
    Exchange,
    ServedBroker,
    assert_no_leaks,
    first_role,
    security_app,
)

Headers = Callable[..., dict[str, str]]
Message = MutableMapping[str, Any]
PROBLEM = "application/problem+json"
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
READ_ACTIONS = frozenset({"audit_read", "refusal", "alert"})

"""Audit actions a refused or read-only request may add; anything else means a write."""

# Values for query, path and header parameters: SQL, CRLF, ANSI, JSON fragments, paths,
# numbers at the edges, odd Unicode, and sizes.
TEXT_PAYLOADS = (
    "' OR '1'='1", "1 OR 1=1", "1; DROP TABLE signal; --", "'; DELETE FROM audit_entry; --",
    '" OR ""="', "1' UNION SELECT secret_hash FROM client --", "(SELECT 1)", "pg_sleep(5)",
    "1 AND SLEEP(5)", "%", "_", "*", "seq DESC", "../../../etc/passwd", "..\\..\\boot.ini",
    "\r\nSet-Cookie: x=1", "a\nb", "\x1b[31mred\x1b[0m\x1b]0;title\x07", '{"$ne": null}',
    '"}]}', "[]", "{}", "null", "NaN", "Infinity", "-1", "0", "-0", "0x10", "9" * 40,
    "1e309", "2026-13-45", "9999-12-31T23:59:59+99:00", "<script>alert(1)</script>",
    "${jndi:ldap://x/a}", "ünïcødé ✓", "\u202egnp.exe", "\ufeffbom", "a" * 5000,
)
# Already percent-encoded: NUL, invalid UTF-8, an encoded surrogate, an overlong slash.
RAW_PAYLOADS = ("%00", "a%00b", "%FF", "%ED%A0%80", "%C0%AF", "%F4%90%80%80")

DEEP = 100_000
BODY_CASES: dict[str, bytes] = {
    "invalid utf-8": b'{"category": "\xff\xfe"}',
    "invalid utf-8 outside strings": b'\xef\xbb\xbf{"a": 1}\xc3\x28',
    "lone high surrogate": b'{"category": "\\ud800"}',
    "lone low surrogate": b'{"category": "x\\udc00"}',
    "surrogate as key": b'{"\\ud83d": 1}',
    "escaped NUL": b'{"category": "a\\u0000b"}',
    "escaped NUL deep": b'{"a": [{"b": {"c": "\\u0000"}}]}',
    "raw NUL": b'{"category": "a\x00b"}',
    "NaN": b'{"category": NaN}',
    "Infinity": b'{"attributes": {"x": Infinity}}',
    "-Infinity": b'{"attributes": {"x": -Infinity}}',
    "overflowing float": b'{"attributes": {"x": 1e999999}}',
    "huge integer": b'{"attributes": {"x": ' + b"9" * 5000 + b"}}",
    "duplicate keys": b'{"category": "a", "category": "b"}',
    "nested duplicate keys": b'{"subject": {"bsn": "111222333", "bsn": "123456782"}}',
    "arrays nested 100k deep": b"[" * DEEP + b"]" * DEEP,
    "objects nested 100k deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "unterminated": b'{"category": "energie',
    "empty": b"",
    "null": b"null",
    "a list": b"[]",
    "a string": b'"x"',
    "trailing garbage": b'{"a": 1} {"b": 2}',
    "comment": b'{"a": 1 /* x */}',
    "single quotes": b"{'a': 1}",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]  # (name, location)
    json_body: bool
    form_body: bool


def operations(app: Any) -> list[Operation]:
    """Every operation of the app's OpenAPI document."""
    found = []
    for path, methods in app.openapi()["paths"].items():
        for method, operation in methods.items():
            params = tuple((p["name"], p["in"]) for p in operation.get("parameters", []))
            content = operation.get("requestBody", {}).get("content", {})
            found.append(Operation(method.upper(), path, params, "application/json" in content,
                                   "application/x-www-form-urlencoded" in content))
    return sorted(found, key=lambda o: (o.path, o.method))


@pytest.fixture
def plain(api: TestClient) -> TestClient:
    """A client on the same app that returns a 500 instead of raising it (the lifespan is
    already running under `api`); its answers are recorded and leak-checked too."""
    return TestClient(api.app, raise_server_exceptions=False)


@pytest.fixture
def caller(auth_headers: Headers) -> Callable[[Operation], dict[str, str]]:
    """Headers of a client allowed to call an operation (every role for new routes)."""
    made: dict[tuple[str, ...], dict[str, str]] = {}

    def headers(op: Operation) -> dict[str, str]:
        roles = first_role(op.method, op.path) or ("requester",)  # public: any token
        if roles not in made:
            made[roles] = auth_headers("gemeente", list(roles))
        return made[roles]

    return headers


def stored(engine: Engine) -> tuple[dict[str, int], int]:
    """Row counts of the tables a request could write, and the audit log's size."""
    counts = {}
    with engine.connect() as conn:
        for table in ("signal", "signal_index", "client", "idempotency_record", "disclosure",
                      "reidentification", "policy_load"):
            if conn.dialect.has_table(conn, table):
                counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
        size = conn.execute(select(func.count()).select_from(audit_entry)).scalar_one()
    return counts, size


def new_actions(engine: Engine, since: int) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entry.c.action).where(audit_entry.c.seq >= since))
        return {row[0] for row in rows}


def check_answer(answer: Any, label: str) -> str | None:
    """What is wrong with one answer to bad input, if anything."""
    status = answer.status_code
    if status >= 500:
        return f"{label}: {status} {answer.text[:200]}"
    if status >= 400:
        kind = answer.headers.get("content-type", "")
        oauth = kind.startswith("application/json") and "error" in answer.json()
        if not (kind.startswith(PROBLEM) or oauth):
            return f"{label}: {status} as {kind}"
        if kind.startswith(PROBLEM) and answer.json()["status"] != status:
            return f"{label}: problem status differs"
    return None


def _path_with(path: str, value: str) -> str:
    """`path` with every `{param}` replaced by `value` (already URL-safe)."""
    out, rest = "", path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        _, _, rest = tail.partition("}")
        out += head + value
    return out + rest


def _parameter_calls(op: Operation) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(label, url, extra headers) for every payload in every parameter of `op`."""
    for name, location in op.params:
        encoded = [quote(p, safe="") for p in TEXT_PAYLOADS] + list(RAW_PAYLOADS)
        for value in encoded:
            label = f"{op.method} {op.path} {location}:{name}={value[:30]}"
            if location == "query":
                yield label, f"{_path_with(op.path, '0')}?{quote(name)}={value}", {}
            elif location == "path":
                yield label, _path_with(op.path, value), {}
        if location == "header":
            for payload in TEXT_PAYLOADS:
                if payload.isprintable() and payload.isascii():
                    yield f"{op.method} {op.path} header:{name}", _path_with(op.path, "0"), \
                        {name: payload}


def test_injection_in_every_parameter_of_every_route(
    api: TestClient, plain: TestClient, caller: Callable[[Operation], dict[str, str]],
    runtime: Runtime,
) -> None:
    """Rows 30, 32, 33: SQL, CRLF, ANSI, JSON fragments, NUL, bad UTF-8 in each parameter."""
    targets = [(op, caller(op)) for op in operations(api.app)
               if op.method in ("GET", "DELETE") and op.params]
    before, size = stored(runtime.engine)
    problems, tried = [], 0
    for op, headers in targets:
        for label, url, extra in _parameter_calls(op):
            answer = plain.request(op.method, url, headers={**headers, **extra})
            tried += 1
            if (problem := check_answer(answer, label)) is not None:
                problems.append(problem)
    assert tried > 500
    assert not problems, f"{len(problems)} of {tried} bad answers:\n" + "\n".join(problems[:40])
    assert stored(runtime.engine)[0] == before
    assert new_actions(runtime.engine, size) <= READ_ACTIONS


NUL_FORMS = ("a%00b", "%00", "a%00")
"""A percent-encoded NUL inside, alone and at the end of a value. A raw NUL only an ASGI
scope carries: HTTP parsers refuse it in the request line before the broker sees it."""


def _raw_get(app: Any, path: str, query: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """Call the ASGI app with a raw path and query string no HTTP client would send."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000), "root_path": "", "path": path,
             "raw_path": path.encode("utf-8"), "query_string": query,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    anyio.run(app, scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(sent[0]["status"]), body


def test_nul_in_a_path_id_is_not_a_500(
    api: TestClient, plain: TestClient, caller: Callable[[Operation], dict[str, str]],
    runtime: Runtime,
) -> None:
    """Row 30: a NUL in any path or query parameter is a 400 problem before routing, on
    both databases (PostgreSQL refuses NUL in text: it used to be a 500 there)."""
    targets = [(op, caller(op)) for op in operations(api.app) if op.method in ("GET", "DELETE")
               and any(location in ("path", "query") for _, location in op.params)]
    signals = caller(Operation("GET", "/v1/signals", (), False, False))
    before = stored(runtime.engine)
    for op, headers in targets:
        for value in NUL_FORMS:
            urls = [f"{_path_with(op.path, '0')}?{quote(n)}={value}"
                    for n, location in op.params if location == "query"]
            if "{" in op.path:
                urls.append(_path_with(op.path, value))
            for url in urls:
                answer = plain.request(op.method, url, headers=headers)
                assert answer.status_code == 400, (url, answer.text)
                assert answer.headers["content-type"].startswith(PROBLEM)
                assert answer.json()["code"] == "bad_request"
    for path, query in (("/v1/signals/x\x00y", b""), ("/v1/signals", b"cursor=x\x00y")):
        status, body = _raw_get(api.app, path, query, signals)
        assert status == 400 and json.loads(body)["code"] == "bad_request", (path, query)
    assert stored(runtime.engine) == before  # refused before any handler ran


def test_raw_bodies_on_every_json_route(
    api: TestClient, plain: TestClient, caller: Callable[[Operation], dict[str, str]],
    runtime: Runtime,
) -> None:
    """Rows 29-31: bad UTF-8, surrogates, NUL, NaN/Infinity, duplicate keys, 100k nesting."""
    targets = [(op, caller(op)) for op in operations(api.app) if op.json_body]
    before, size = stored(runtime.engine)
    problems, tried = [], 0
    for op, auth in targets:
        headers = {**auth, "Content-Type": "application/json"}
        url = _path_with(op.path, "0")
        for name, body in BODY_CASES.items():
            answer = plain.request(op.method, url, content=body, headers=headers)
            tried += 1
            label = f"{op.method} {op.path} [{name}]"
            if (problem := check_answer(answer, label)) is not None:
                problems.append(problem)
            elif answer.status_code not in (400, 404, 422):
                problems.append(f"{label}: {answer.status_code}, expected 400/422")
    assert tried >= 10 * len(BODY_CASES)
    assert not problems, f"{len(problems)} of {tried} bad answers:\n" + "\n".join(problems[:40])
    assert plain.get("/healthz").status_code == 200  # the worker survived the deep nesting
    assert stored(runtime.engine)[0] == before
    assert new_actions(runtime.engine, size) <= READ_ACTIONS


NUMBER_CASES: dict[str, bytes] = {
    "overflowing float": b'{"category": 1e999999}',
    "overflowing negative float": b'{"category": -1e999999}',
    "overflowing float in a list": b'{"attributes": {"x": [1, 2e400]}}',
    "huge integer": b'{"category": ' + b"9" * 5000 + b"}",
    "integer one digit too long": b'{"category": -' + b"9" * (MAX_INTEGER_DIGITS + 1) + b"}",
}


def test_doubtful_numbers_are_answered_as_any_bad_json(
    plain: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Row 31: a float beyond a double (which the parser made infinity) and an integer
    literal too long for any field are bad JSON, answered exactly as NaN is."""
    headers = {**auth_headers("politie", ["contributor"]), "Content-Type": "application/json"}
    nan = plain.post("/v1/signals", content=b'{"category": NaN}', headers=headers)
    assert nan.status_code == 422
    expected = {k: v for k, v in nan.json().items() if k != "instance"}
    before = stored(runtime.engine)
    for name, body in NUMBER_CASES.items():
        answer = plain.post("/v1/signals", content=body, headers=headers)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert {k: v for k, v in answer.json().items() if k != "instance"} == expected, name
    assert stored(runtime.engine) == before


def test_numbers_within_bounds_still_parse() -> None:
    """The number checks refuse only what no field can use: edge values parse exactly."""
    longest = int("9" * MAX_INTEGER_DIGITS)
    assert strict_loads(b'{"a": 1.7976931348623157e308, "b": -1e308, "c": 5e-324}') == {
        "a": 1.7976931348623157e308, "b": -1e308, "c": 5e-324}
    assert strict_loads(b"[%d, -%d, 0, -0]" % (longest, longest)) == [longest, -longest, 0, 0]
    for refused in (b"1e309", b"-1e309", b"9" * (MAX_INTEGER_DIGITS + 1)):
        with pytest.raises(json.JSONDecodeError):
            strict_loads(refused)


FORM_CASES = {
    "NUL": b"grant_type=client_credentials&client_id=%00&client_secret=%00",
    "invalid utf-8": b"grant_type=client_credentials&client_id=%FF%FE&client_secret=x",
    "surrogate": b"grant_type=client_credentials&client_id=%ED%A0%80&client_secret=x",
    "raw bytes": b"grant_type=client_credentials&client_id=\xff&client_secret=\x00",
    "duplicate fields": b"grant_type=client_credentials&grant_type=password&client_id=a",
    "SQL": b"grant_type=client_credentials&client_id=%27+OR+1%3D1--&client_secret=%27+OR+%27",
    "CRLF": b"grant_type=client_credentials&client_id=a%0D%0AX-Injected%3A+1&client_secret=b",
    "ANSI": b"grant_type=client_credentials&client_id=%1B%5B31m&client_secret=%1B%5B0m",
    "many fields": b"&".join(b"f%d=1" % i for i in range(5000)),
    "long secret": b"grant_type=client_credentials&client_id=cl_x&client_secret=" + b"a" * 60000,
    "json": b'{"grant_type": "client_credentials"}',
}


@pytest.mark.parametrize("value", ["4557", "-5", "2026-01-01T00:00:00", "2026-01-01"])
def test_times_must_be_rfc3339_with_offset(
    plain: TestClient, caller: Callable[[Operation], dict[str, str]], value: str
) -> None:
    for path in ("/v1/signals", "/v1/audit/entries"):
        headers = caller(Operation("GET", path, (), False, False))
        for name in ("since", "until"):
            answer = plain.get(path, params={name: value}, headers=headers)
            assert answer.status_code == 422, (path, name, value)


def test_bad_forms_at_the_token_endpoint(plain: TestClient) -> None:
    """The form-encoded token endpoint: RFC 6749 errors (400/401), never a 500."""
    problems = []
    for name, body in FORM_CASES.items():
        answer = plain.post("/oauth/token", content=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        if (problem := check_answer(answer, f"/oauth/token [{name}]")) is not None:
            problems.append(problem)
        elif answer.status_code not in (400, 401, 413, 422, 429):
            problems.append(f"/oauth/token [{name}]: {answer.status_code}")
    assert not problems, "\n".join(problems)


def test_odd_headers_are_refused_cleanly(
    plain: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """X-Acting-User, Idempotency-Key and X-Request-Id with hostile values."""
    politie = auth_headers("politie", ["contributor"])
    before, _ = stored(runtime.engine)
    problems = []
    for payload in TEXT_PAYLOADS:
        if not (payload.isprintable() and payload.isascii()):
            continue
        for header in ("X-Acting-User", "X-Request-Id"):
            answer = plain.get("/v1/signals", headers={**politie, header: payload})
            problem = check_answer(answer, f"{header}={payload[:20]}")
            problems += [problem] if problem else []
            assert SAFE_REQUEST_ID.match(answer.headers["x-request-id"])
        key = {**politie, "Idempotency-Key": payload}
        answer = plain.post("/v1/signals", json={"category": "x"}, headers=key)
        problems += [p] if (p := check_answer(answer, f"Idempotency-Key={payload[:20]}")) else []
    assert not problems, "\n".join(problems)
    assert stored(runtime.engine)[0] == before


def test_injected_text_is_stored_verbatim_through_bound_parameters(
    api: TestClient, auth_headers: Headers
) -> None:
    """Row 32: SQL in a text field is data: stored and read back byte for byte. Row 53:
    text with a control character other than newline is refused at the field instead."""
    politie = auth_headers("politie", ["contributor"])
    texts = [p for p in TEXT_PAYLOADS if len(p) < 4000][:20]
    taken = [p for p in texts if not has_control_characters(p, newline_allowed=True)]
    assert len(taken) == 18  # the CR LF and the ANSI payloads are refused
    for payload in texts:
        body = {**drugs(), "description": payload}
        created = api.post("/v1/signals", json=body, headers=politie)
        if payload not in taken:
            assert created.status_code == 422, (payload, created.text)
            assert [e["loc"] for e in created.json()["errors"]] == [["body", "description"]]
            continue
        assert created.status_code == 201, (payload, created.text)
        read = api.get(f"/v1/signals/{created.json()['id']}", headers=politie)
        assert read.json()["description"] == payload
    listed = api.get("/v1/signals", params={"limit": 1000}, headers=politie).json()["items"]
    assert len(listed) == len(taken)


def test_injection_in_disclosure_queries(
    api: TestClient, plain: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Row 32 on the disclosure body: purposes, case references, categories, identifiers."""
    gemeente = auth_headers("gemeente", ["requester"])
    api.post("/v1/signals", json=drugs(), headers=auth_headers("politie", ["contributor"]))
    before, _ = stored(runtime.engine)
    problems = []
    for payload in TEXT_PAYLOADS:
        bodies = [
            {"purpose": payload, "case_reference": "ZAAK-1", "query": {"subject": {"bsn": BSN}}},
            {"purpose": "integrale-controle", "case_reference": payload,
             "query": {"subject": {"bsn": BSN}}},
            {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
             "query": {"subject": {"bsn": payload}}},
            {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
             "query": {"area": {"postcode": payload}}},
            {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
             "query": {"subject": {"bsn": BSN}, "categories": [payload]}},
            {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
             "query": {"signals": [payload]}},
        ]
        for body in bodies:
            answer = plain.post("/v1/disclosures", json=body, headers=gemeente)
            if (problem := check_answer(answer, f"disclosure {json.dumps(body)[:80]}")):
                problems.append(problem)
    assert not problems, "\n".join(problems[:30])
    after, _ = stored(runtime.engine)
    assert after["signal"] == before["signal"] and after["client"] == before["client"]


# --- row 28: oversize bodies -------------------------------------------------------------------

FIFTY_MB = 50 * 1024 * 1024


def test_a_50_mb_body_is_413_before_parsing(plain: TestClient, auth_headers: Headers) -> None:
    politie = auth_headers("politie", ["contributor"])
    started = time.perf_counter()
    answer = plain.post("/v1/signals", content=b"[" * FIFTY_MB,
                        headers={**politie, "Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert answer.json()["code"] == "payload_too_large"
    assert time.perf_counter() - started < 10


def test_a_chunked_50_mb_body_is_413(plain: TestClient, auth_headers: Headers) -> None:
    politie = auth_headers("politie", ["contributor"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts what arrives
        for _ in range(FIFTY_MB // 65536):
            yield b" " * 65536

    for route, kind in (("/v1/signals", "application/json"),
                        ("/oauth/token", "application/x-www-form-urlencoded")):
        answer = plain.post(route, content=chunks(), headers={**politie, "Content-Type": kind})
        assert answer.status_code == 413, (route, answer.text)


def test_a_50_mb_body_is_refused_over_the_wire_before_it_is_sent(served: ServedBroker) -> None:
    """A real server answers 413 on the declared length, without reading the body."""
    served.start()
    with socket.create_connection((served.host, served.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/signals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n[[[[" % FIFTY_MB)
        started = time.perf_counter()
        head = sock.recv(65536)
        waited = time.perf_counter() - started
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]
    assert b"application/problem+json" in head
    assert waited < 5
    assert served.call("GET", "/healthz").status == 200


# --- rows 25-27: policy reload ----------------------------------------------------------------

@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, directory)
    return directory


@pytest.fixture
def reloadable(settings: Settings, pack_dir: Path) -> Iterator[tuple[TestClient, Runtime]]:
    """An app whose pack folder is a copy the test may break."""
    local = settings.model_copy(update={"policy_dir": pack_dir})
    runtime = open_runtime(local)
    sink: list[Exchange] = []
    try:
        with TestClient(security_app(local, runtime, sink)) as client:
            yield client, runtime
    finally:
        runtime.close()
    assert_no_leaks(sink)


EXPLAIN = {"recipient": "gemeente", "purpose": "integrale-controle",
           "category": "energie-afwijking", "source": "netbeheerder"}


def test_no_caller_supplied_policy_path_is_followed(
    reloadable: tuple[TestClient, Runtime], auth_headers: Headers
) -> None:
    """Row 25: reload reads the configured folder only; a path in the query or body is
    not an input of the route (so `../`, `%2e%2e%2f`, NUL and absolute paths go nowhere)."""
    client, runtime = reloadable
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    live = runtime.policy.pack.hash
    for trick in ("../../etc", "%2e%2e%2f", "/etc/passwd", "pack\x00", "ро1ісу"):
        answer = client.post("/v1/admin/policy/reload", params={"dir": trick, "path": trick},
                             json={"dir": trick, "path": trick}, headers=admin)
        # A NUL anywhere in the query string is refused before routing (row 30).
        assert answer.status_code == (400 if "\x00" in trick else 200), answer.text
        if answer.status_code == 200:
            assert answer.json()["hash"] == live
    assert runtime.policy.pack.hash == live


def test_a_broken_pack_at_reload_keeps_the_live_one(
    reloadable: tuple[TestClient, Runtime], pack_dir: Path, auth_headers: Headers
) -> None:
    """Row 26: syntax error or invalid rule at reload: 422, the last good pack stays live
    and keeps deciding exactly as before (never fail-open)."""
    client, runtime = reloadable
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    requester = auth_headers("gemeente", ["requester"])
    live = runtime.policy.pack.hash
    decided = client.post("/v1/policy/explain", json=EXPLAIN, headers=requester).json()
    rules = pack_dir / "rules.yaml"
    good = rules.read_text()
    # (An empty rules file is a valid pack that grants nothing: fail-closed, so not here.)
    for broken in (good + "\n  - [unclosed", good.replace("access: disclose", "access: all", 1),
                   "\x00\xff", "rules: {"):
        rules.write_text(broken, encoding="utf-8", errors="surrogateescape")
        answer = client.post("/v1/admin/policy/reload", headers=admin)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert runtime.policy.pack.hash == live
        assert client.post("/v1/policy/explain", json=EXPLAIN, headers=requester).json() \
            == decided
        assert client.get("/v1/policy", headers=requester).json()["hash"] == live


def _entries_since(engine: Engine, seq: int) -> list[Entry]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entry.c.bytes).where(audit_entry.c.seq >= seq)
                            .order_by(audit_entry.c.seq)).all()
    return [decode_entry(bytes(row[0])) for row in rows]


def _log_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_entry)).scalar_one())


BROKEN_RULES = "- [unclosed secret-rule-text"


def _assert_refused_reload(entries: list[Entry], live: str, org: str | None) -> None:
    """Exactly one entry: the audited refusal, naming the live pack and not the new one."""
    assert [(e.action, e.outcome, e.reason) for e in entries] == [
        ("refusal", "refused", "policy_pack_invalid")]
    entry = entries[0]
    assert entry.objects["request"] == "policy_reload"
    assert isinstance(entry.objects["problems"], int) and entry.objects["problems"] >= 1
    assert entry.policy is not None and entry.policy.hash == live
    assert entry.actor.org == org
    assert "secret-rule-text" not in entry.model_dump_json()  # no pack content


def test_a_refused_reload_is_audited(
    reloadable: tuple[TestClient, Runtime], pack_dir: Path, auth_headers: Headers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Row 26: a refused reload is a `refusal` entry (outcome `refused`, the reason code,
    no pack content) and a warning in the log; the live pack stays."""
    client, runtime = reloadable
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    live = runtime.policy.pack.hash
    (pack_dir / "rules.yaml").write_text(BROKEN_RULES)
    size = _log_size(runtime.engine)
    with caplog.at_level(logging.WARNING, logger="broker.core.policy"):
        answer = client.post("/v1/admin/policy/reload", headers=admin)
    assert answer.status_code == 422
    assert runtime.policy.pack.hash == live
    _assert_refused_reload(_entries_since(runtime.engine, size), live, "riec")
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "policy_reload_refused"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert getattr(warnings[0], "reason", None) == "policy_pack_invalid"
    assert "secret-rule-text" not in caplog.text


def test_a_refused_load_from_the_command_line_is_audited(
    settings: Settings, runtime: Runtime, pack_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row 26 for `broker policy load DIR`: exit 1, the same audited refusal (the system
    actor), and nothing loaded."""
    for name, value in (("DATABASE_URL", settings.database_url),
                        ("KEY_DIR", str(settings.key_dir)),
                        ("POLICY_DIR", str(settings.policy_dir))):
        monkeypatch.setenv(f"BROKER_{name}", value)
    (pack_dir / "rules.yaml").write_text(BROKEN_RULES)
    size = _log_size(runtime.engine)
    assert cli_main(["policy", "load", str(pack_dir)]) == 1
    _assert_refused_reload(_entries_since(runtime.engine, size), runtime.policy.pack.hash, None)


def test_each_disclosure_records_the_policy_it_was_decided_under(
    reloadable: tuple[TestClient, Runtime], pack_dir: Path, auth_headers: Headers
) -> None:
    """Row 27: packs swap while disclosures run; each answer's `policy_hash` is the hash in
    its own audit entry, and both packs were used."""
    client, runtime = reloadable
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    requester = auth_headers("gemeente", ["requester"])
    client.post("/v1/signals", json=drugs(), headers=auth_headers("politie", ["contributor"]))
    pack_file = pack_dir / "pack.yaml"
    versions = [pack_file.read_text(),
                pack_file.read_text().replace('version: "2026.11.1"', 'version: "2026.11.2"')]
    assert versions[0] != versions[1]
    stop = threading.Event()
    reload_errors: list[int] = []

    def swap() -> None:
        turn = 1
        while not stop.is_set():
            pack_file.write_text(versions[turn % 2])
            status = client.post("/v1/admin/policy/reload", headers=admin).status_code
            if status != 200:
                reload_errors.append(status)
            turn += 1

    swapper = threading.Thread(target=swap)
    swapper.start()
    answers = []
    try:
        body = {"purpose": "integrale-controle", "case_reference": "ZAAK-2026-1",
                "query": {"subject": {"bsn": BSN}}}
        for _ in range(60):
            answer = client.post("/v1/disclosures", json=body, headers=requester)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    finally:
        stop.set()
        swapper.join()
    assert not reload_errors
    with runtime.engine.connect() as conn:
        for answer in answers:
            row = conn.execute(select(audit_entry.c.bytes)
                               .where(audit_entry.c.seq == answer["audit_seq"])).one()
            entry = decode_entry(bytes(row[0]))
            assert entry.policy is not None
            assert entry.policy.hash == answer["policy_hash"]
    assert len({a["policy_hash"] for a in answers}) == 2
