"""The `broker` command as an administrator uses it, and `broker serve` on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serving import free_port, serving

REPO = Path(__file__).resolve().parents[2]


def broker(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "broker", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"broker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def environment_in(directory: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    environment.update(
        {
            "BROKER_DATABASE_URL": f"sqlite:///{directory / 'broker.db'}",
            "BROKER_KEY_DIR": str(directory / "keys"),
            "BROKER_POLICY_DIR": str(REPO / "policies" / "ondermijning"),
        }
    )
    return environment


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return environment_in(tmp_path)


def test_serve_refuses_before_init(env: dict[str, str]) -> None:
    result = broker(env, "serve", "--port", "1", check=False)
    assert result.returncode == 1
    assert "broker init" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_database_not_at_head(env: dict[str, str], tmp_path: Path) -> None:
    broker(env, "init")
    (tmp_path / "broker.db").unlink()
    result = broker(env, "serve", "--port", "1", check=False)
    assert result.returncode == 1
    assert "not at head" in result.stderr and "broker init" in result.stderr


def test_serve_refuses_a_world_readable_key(env: dict[str, str], tmp_path: Path) -> None:
    """The key ring is in the database, wrapped; the key-encryption key file is the key
    that must stay its owner's."""
    broker(env, "init")
    os.chmod(tmp_path / "keys" / "kek", 0o644)
    result = broker(env, "serve", "--port", "1", check=False)
    assert result.returncode == 1
    assert "kek" in result.stderr and "readable by others" in result.stderr


def test_serve_refuses_a_bad_pack(env: dict[str, str], tmp_path: Path) -> None:
    broker(env, "init")
    pack = tmp_path / "pack"
    shutil.copytree(REPO / "policies" / "ondermijning", pack)
    rules = pack / "rules.yaml"
    rules.write_text(rules.read_text().replace("access: disclose", "access: everything", 1))
    result = broker({**env, "BROKER_POLICY_DIR": str(pack)}, "serve", "--port", "1", check=False)
    assert result.returncode == 1
    assert "rules.yaml" in result.stderr


def test_init_is_idempotent_and_keys_are_private(env: dict[str, str], tmp_path: Path) -> None:
    first = json.loads(broker(env, "init", "--json").stdout)
    assert first["schema_to"] and len(first["keys_created"]) == 6
    again = json.loads(broker(env, "init", "--json").stdout)
    assert again["keys_created"] == [] and again["schema_from"] == again["schema_to"]
    for path in (tmp_path / "keys").iterdir():
        assert path.stat().st_mode & 0o077 == 0


def test_clients_keys_and_retention_commands(env: dict[str, str]) -> None:
    broker(env, "init")
    created = json.loads(
        broker(
            env,
            "clients",
            "create",
            "--org",
            "gemeente",
            "--name",
            "Gemeente (systeem)",
            "--roles",
            "contributor,requester",
            "--json",
        ).stdout
    )
    assert created["client_secret"]
    assert broker(env, "clients", "revoke", created["client_id"]).returncode == 0
    bad = broker(
        env,
        "clients",
        "create",
        "--org",
        "nergens",
        "--name",
        "x",
        "--roles",
        "requester",
        check=False,
    )
    assert bad.returncode == 1
    rotated = json.loads(broker(env, "keys", "rotate", "pseudonym", "--json").stdout)
    assert rotated == {"key": "pseudonym", "version": 2}
    assert json.loads(broker(env, "retention", "run", "--json").stdout) == {
        "erased": 0, "answers_deleted": 0}
    usage = broker(env, "keys", "rotate", "blind_index", check=False)
    assert usage.returncode == 2


def _call(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served demo broker's directory (its database, keys and `demo-clients.json`)."""
    return tmp_path_factory.mktemp("demo-broker")


@pytest.fixture(scope="module")
def served(demo_dir: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A seeded demo broker under uvicorn on a loopback port, as `scripts/demo` runs it;
    one for the module (its tests only read, and hold a signal nobody else holds)."""
    env = environment_in(demo_dir)
    broker(env, "init")
    clients_file = demo_dir / "demo-clients.json"
    seeded = broker(env, "demo", "seed", "--clients-file", str(clients_file))
    assert "seeded" in seeded.stdout
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port), "--workers", "2"]
    with serving(command, env, base, demo_dir / "serve.log"):
        yield base, json.loads(clients_file.read_text())


def test_demo_broker_serves_the_seeded_street(served: tuple[str, list[dict[str, Any]]]) -> None:
    base, clients = served
    police = next(c for c in clients if c["org"] == "politie")
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": police["client_id"],
            "client_secret": police["client_secret"],
        }
    ).encode()
    status, token = _call(base + "/oauth/token", data=form)
    assert status == 200 and token["token_type"] == "Bearer"
    headers = {"Authorization": f"Bearer {token['access_token']}", "X-Acting-User": "agent-7"}
    status, page = _call(base + "/v1/signals?limit=5", headers=headers)
    assert status == 200
    assert page["items"] and all(s["source"] == "politie" for s in page["items"])
    status, purposes = _call(base + "/v1/purposes", headers=headers)
    assert status == 200 and len(purposes["items"]) >= 6
    status, problem = _call(base + "/v1/signals/sig_unknown", headers=headers)
    assert status == 404 and problem["status"] == 404
    # a second seed adds nothing
    assert _call(base + "/healthz") == (200, {"status": "ok"})


def test_demo_howto_prints_a_working_recipe(
    served: tuple[str, list[dict[str, Any]]], demo_dir: Path
) -> None:
    base, clients = served
    result = subprocess.run(
        [sys.executable, "-m", "broker.cli.howto", str(demo_dir / "demo-clients.json"), base],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "/oauth/token" in result.stdout and "-d @" in result.stdout
    # The recipe reads the secret from an owner-only file; it never prints one.
    assert not any(client["client_secret"] in result.stdout for client in clients)


def _token(base: str, client: dict[str, Any]) -> str:
    form = urllib.parse.urlencode({"grant_type": "client_credentials",
                                   "client_id": client["client_id"],
                                   "client_secret": client["client_secret"]}).encode()
    status, token = _call(base + "/oauth/token", data=form)
    assert status == 200
    return str(token["access_token"])


def test_the_demo_police_officer_holds_a_police_signal(
    served: tuple[str, list[dict[str, Any]]],
) -> None:
    base, clients = served
    police = next(c for c in clients if c["org"] == "politie" and c["kind"] == "system")
    officer = next(c for c in clients
                   if c["org"] == "politie" and c["roles"] == ["privacy_officer"])
    police_headers = {"Authorization": f"Bearer {_token(base, police)}",
                      "X-Acting-User": "agent-7"}
    status, page = _call(base + "/v1/signals?limit=1", headers=police_headers)
    assert status == 200
    signal_id = page["items"][0]["id"]
    officer_headers = {"Authorization": f"Bearer {_token(base, officer)}",
                       "Content-Type": "application/json"}
    status, hold = _call(base + f"/v1/signals/{signal_id}/hold", headers=officer_headers,
                         data=json.dumps({"case_reference": "RB-2026-17"}).encode())
    assert status == 201 and hold["signal_id"] == signal_id
    status, holds = _call(base + "/v1/legal-holds", headers=officer_headers)
    assert status == 200 and [h["signal_id"] for h in holds["items"]] == [signal_id]
