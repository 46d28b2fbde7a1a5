"""Fixtures of the security suite: every answer it receives is checked for leaks.

The `api` fixture here replaces the shared one for tests/security: the same app over the
test's runtime, with the access observer installed (a no-op once `create_app` does it),
and a recorder around everything. When a test ends, every
answer it received must pass `leaks()` (docs/security.md row 34): no stack trace, SQL or JWT
anywhere (except the access token `/oauth/token` hands out), and an error never echoes
a BSN or a submitted value, and is problem details (or RFC 6749 JSON at /oauth/token).

`served` starts a real `broker serve` on loopback, for the fault tests.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from fastapi.testclient import TestClient

from broker.api import observe
from broker.app import create_app
from broker.runtime import Runtime
from broker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEMO_PACK = REPO / "policies" / "ondermijning"

ROLES = ("contributor", "requester", "privacy_officer", "admin")
MORE_ROLES: dict[tuple[str, str], frozenset[str] | None] = {("GET", "/metrics"): None}
"""Who may call the routes test_role_matrix.py does not list yet (None: no token)."""


def allowed_roles(method: str, path: str) -> frozenset[str] | None:
    """The roles that may call an operation (None: public); every role if nobody said."""
    from tests.security.test_role_matrix import EXPECTED

    key = (method.upper(), path)
    if key in EXPECTED:
        return EXPECTED[key]
    return MORE_ROLES.get(key, frozenset(ROLES))


def first_role(method: str, path: str) -> tuple[str, ...]:
    """One role that may call the operation (empty for public operations)."""
    allowed = allowed_roles(method, path)
    return () if allowed is None else tuple(r for r in ROLES if r in allowed)[:1]


KNOWN_BSNS = ("111222333", "111222334", "123456782", "999999990", "010000008")
"""BSNs the suites submit; an error answer must never carry one."""
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.eyJ")
TRACES = (b"Traceback", b'File "')
SQL = (b"sqlalchemy", b"SELECT ", b"psycopg", b"sqlite3", b"INSERT INTO", b"DELETE FROM",
       b"UPDATE ", b"pg_catalog")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_.-]*$")
NINE_DIGITS = re.compile(rb"(?<![0-9])[0-9]{9}(?![0-9])")
KEEP = 1 << 20  # bytes of each body kept for the checks

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


@dataclass
class Exchange:
    """One request and its answer, as far as the leak checks need them."""

    method: str
    path: str
    request: bytes  # raw path, query string and body, also percent-decoded
    status: int = 0
    content_type: str = ""
    body: bytes = b""
    request_json: Any = None


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _error_form(ex: Exchange) -> str | None:
    if ex.status < 400:
        return None
    if ex.path == "/oauth/token" and ex.content_type.startswith("application/json"):
        return None if b'"error"' in ex.body else "an OAuth error without `error`"
    if not ex.content_type.startswith("application/problem+json"):
        return f"an error as {ex.content_type or 'no content type'}, not problem details"
    try:
        problem = json.loads(ex.body)
    except ValueError:
        return "problem details that are not JSON"
    if not isinstance(problem, dict) or problem.get("status") != ex.status:
        return "problem details without the answer's status"
    return None


def _scanned(ex: Exchange) -> bytes:
    """The body to scan: problem details without `instance`, which echoes the request path
    (the caller's own path; see test_no_leaks.py for what it may echo)."""
    if not ex.content_type.startswith("application/problem+json"):
        return ex.body
    try:
        problem = json.loads(ex.body)
    except ValueError:
        return ex.body
    if isinstance(problem, dict):
        problem.pop("instance", None)
    return json.dumps(problem, ensure_ascii=False).encode()


def _problem_title(ex: Exchange) -> str | None:
    """The problem's `title`: fixed per kind of problem, never built from the request."""
    if not ex.content_type.startswith("application/problem+json"):
        return None
    try:
        problem = json.loads(ex.body)
    except ValueError:
        return None
    title = problem.get("title") if isinstance(problem, dict) else None
    return title if isinstance(title, str) else None


def leaks(ex: Exchange) -> list[str]:
    """What is wrong with one answer (empty when nothing)."""
    found: list[str] = []
    body = _scanned(ex)
    token_answer = ex.path == "/oauth/token" and ex.status == 200
    echoed_ok = ex.status < 400  # a 2xx may return the caller's own data to it

    def seen(fragment: bytes) -> bool:
        return fragment in body and not (echoed_ok and fragment in ex.request)

    for match in JWT.finditer(body):
        if not token_answer and seen(match.group(0)):
            found.append("a JWT")
            break
    if ex.status >= 400:
        # (A 2xx may carry stored text that looks like SQL; only failures come from code.)
        found += [f"a stack trace ({t.decode()})" for t in TRACES if t in body]
        found += [f"SQL ({s.decode().strip()})" for s in SQL if s in body]
        bsns = {b.encode() for b in KNOWN_BSNS} | set(NINE_DIGITS.findall(ex.request))
        found += [f"an echoed BSN-like number {b.decode()}" for b in sorted(bsns) if b in body]
        title = _problem_title(ex)
        for text in _strings(ex.request_json):
            # (Identifier-like values may be named by a message listing the allowed ones; an
            # input that happens to equal the problem's fixed title is not an echo of it.)
            if (len(text) >= 12 and not IDENTIFIER.match(text) and text != title
                    and text.encode() in body):
                found.append(f"an echoed input value ({text[:20]!r}...)")
        form = _error_form(ex)
        if form:
            found.append(form)
    return found


class Recorder:
    """ASGI middleware keeping every exchange in `sink` (bodies cut at 1 MiB)."""

    def __init__(self, app: ASGIApp, *, sink: list[Exchange]) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = bytes(scope.get("raw_path") or scope["path"].encode()) + b"?" + scope["query_string"]
        ex = Exchange(scope["method"], scope["path"], raw)
        body = bytearray()

        async def recording_receive() -> Message:
            message: Message = await receive()
            if message["type"] == "http.request" and len(body) < KEEP:
                body.extend(message.get("body", b"")[: KEEP - len(body)])
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        ex.content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body" and len(ex.body) < KEEP:
                ex.body += bytes(message.get("body", b""))[:KEEP]
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            ex.request = raw + b" " + bytes(body)
            ex.request += b" " + unquote_to_bytes(ex.request.replace(b"+", b" "))
            try:
                ex.request_json = json.loads(bytes(body))
            except ValueError:
                ex.request_json = None
            self.sink.append(ex)


def assert_no_leaks(exchanges: list[Exchange]) -> None:
    problems = [f"{ex.method} {ex.path} -> {ex.status}: {', '.join(p)}"
                for ex in exchanges if (p := leaks(ex))]
    assert not problems, "answers that leak:\n" + "\n".join(problems[:30])


def security_app(settings: Settings, runtime: Runtime, sink: list[Exchange]) -> Any:
    """The broker's app with the observer, recording into `sink`."""
    app = create_app(settings, runtime=runtime)
    observe.install(app)
    app.add_middleware(Recorder, sink=sink)
    return app


@pytest.fixture
def exchanges() -> list[Exchange]:
    """Every exchange the test's `api` saw, in order."""
    return []


@pytest.fixture
def api(settings: Settings, runtime: Runtime, exchanges: list[Exchange]) -> Iterator[TestClient]:
    """The shared `api`, recorded: every answer is checked for leaks when the test ends."""
    with TestClient(security_app(settings, runtime, exchanges)) as client:
        yield client
    assert_no_leaks(exchanges)


# --- a real broker on loopback ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServedBroker:
    """`broker serve` in its own process group, restartable over the same database."""

    directory: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = broker_command(self.env, *args)
        assert result.returncode == 0, f"broker {args}: {result.stdout}\n{result.stderr}"
        return result

    def start(self, timeout: float = 30) -> None:
        self.log_path = self.directory / f"serve-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broker", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill reaches its workers too
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("broker serve exited:\n" + self.log_path.read_text())
            try:
                if self.call("GET", "/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("broker serve did not become ready:\n" + self.log_path.read_text())

    def kill(self) -> None:
        """SIGKILL the broker's whole process group (the server and any workers)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                          response.read())
        finally:
            connection.close()

    def client(self, org: str, roles: str) -> tuple[str, str]:
        made = json.loads(self.command("clients", "create", "--org", org, "--name",
                                       f"{org} fault test", "--roles", roles, "--json").stdout)
        return made["client_id"], made["client_secret"]

    def token(self, client_id: str, secret: str) -> str:
        form = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
        answer = self.call("POST", "/oauth/token", form.encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status == 200, answer.body
        token: str = answer.json()["access_token"]
        return token


def broker_env(directory: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update({
        "BROKER_DATABASE_URL": database_url or f"sqlite:///{directory / 'broker.db'}",
        "BROKER_KEY_DIR": str(directory / "keys"),
        "BROKER_POLICY_DIR": str(DEMO_PACK),
        "BROKER_CHECKPOINT_EVERY_SECONDS": "3600",
    })
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedBroker]:
    """An initialised (not yet started) broker over SQLite in `tmp_path`; stopped at the end."""
    broker = ServedBroker(tmp_path, broker_env(tmp_path))
    broker.command("init")
    try:
        yield broker
    finally:
        broker.stop()
