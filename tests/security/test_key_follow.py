"""Row 14 across processes: a key rotation reaches every running broker within seconds.

A rotation adds a version to the key ring in the database; each broker process follows
the ring (`rotation.KeyFollower`, once a second) and swaps in the reloaded ring, so a
token signed with the new key verifies everywhere and every process signs with it.
Two runtimes over one database and key directory stand for two worker processes; the
last test rotates with the real `broker keys rotate` under a running `broker serve`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.auth import tokens
from broker.auth.actors import system_actor
from broker.errors import Unauthorized
from broker.models import key_version
from broker.runtime import Runtime, open_runtime
from broker.services import rotation
from broker.settings import Settings
from tests.security.conftest import ServedBroker

CLIENT = "cl_follow"


def issue(runtime: Runtime) -> str:
    return tokens.issue_access_token(runtime.keys, runtime.settings, client_id=CLIENT,
                                     org="politie", roles=frozenset({"requester"})).token


def verifies(runtime: Runtime, token: str) -> bool:
    try:
        tokens.verify_access_token(token, runtime.keys, runtime.settings)
    except Unauthorized:
        return False
    return True


def kid(token: str) -> str:
    header = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """How long `condition` took to hold (fails after `seconds`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def other(settings: Settings, runtime: Runtime) -> Iterator[Runtime]:
    """A second broker process's runtime over the same database and key directory."""
    second = open_runtime(settings)
    yield second
    second.close()


def test_a_rotation_in_one_process_reaches_the_other(runtime: Runtime, other: Runtime) -> None:
    before = issue(other)
    rotation.rotate(runtime, "signing", actor=system_actor("test"), request_id=None)
    fresh = issue(runtime)
    assert kid(fresh) != kid(before)
    assert not verifies(other, fresh)  # the other process still holds the old ring
    follower = rotation.KeyFollower(other, interval=0.05)
    follower.start()
    try:
        within(2, lambda: verifies(other, fresh))
    finally:
        follower.stop()
    assert kid(issue(other)) == kid(fresh)  # it signs with the new key too
    assert verifies(other, before)  # the previous key stays valid for the overlap
    assert other.keys.active("master").version == 1
    assert rotation.follow_keys(other) is False  # nothing new since


def test_the_audit_log_of_the_other_process_follows_too(
    runtime: Runtime, other: Runtime
) -> None:
    rotation.rotate(runtime, "checkpoint", actor=system_actor("test"), request_id=None)
    assert rotation.follow_keys(other) is True
    newest = max(other.keys.checkpoint)
    assert newest == 2
    assert other.audit.signer.verifier().key_id == runtime.audit.signer.verifier().key_id


def test_a_version_this_node_cannot_unwrap_makes_it_not_ready_never_silently_absent(
    runtime: Runtime, other: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A master version wrapped under a key-encryption key this node does not hold (its
    file is not current): the node loads what it can, says which version it lacks, logs
    it, and is not ready; the versions it holds stay in use."""
    with runtime.engine.begin() as conn:
        conn.execute(key_version.insert().values(
            name="master", version=2, kek_id="0123456789abcdef", wrapped=os.urandom(60),
            created_at=datetime.now(UTC)))
    follower = rotation.KeyFollower(other, interval=0.05)
    follower.start()
    try:
        within(2, lambda: other.keys.unreadable == ("master.v2",))
    finally:
        follower.stop()
    assert any(getattr(r, "event", None) == "keys_unreadable" for r in caplog.records)
    assert other.keys.active("master").version == 1
    with TestClient(create_app(other.settings, runtime=other)) as api:
        ready = api.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["keys"] is False


def test_the_command_line_rotation_reaches_a_running_broker(served: ServedBroker) -> None:
    """Two processes: `broker keys rotate signing` beside a running `broker serve`."""
    served.start()
    client_id, secret = served.client("gemeente", "requester")
    before = served.token(client_id, secret)

    def served_kids() -> set[str]:
        keys = served.call("GET", "/.well-known/jwks.json").json()["keys"]
        return {k["kid"] for k in keys}

    kids_before = served_kids()
    assert kids_before == {kid(before)}
    rotated = json.loads(served.command("keys", "rotate", "signing", "--json").stdout)
    assert rotated == {"key": "signing", "version": 2}
    waited = within(3, lambda: len(served_kids()) == 2)
    (new_kid,) = served_kids() - kids_before
    print(f"the running broker followed the rotation in {waited:.2f} s")
    after = served.token(client_id, secret)
    assert kid(after) == new_kid
    for token in (before, after):  # the new key and, for the overlap, the previous one
        answer = served.call("GET", "/v1/purposes", headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 200, answer.body
