"""A broker served as an operator serves it, for the end-to-end tests: `broker init`, then
`broker serve` on a free loopback port over SQLite or PostgreSQL, with the demo pack, and
clients made with `broker clients create` and signed in at `/oauth/token`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serving import REPO, free_port, serving

PACK = REPO / "policies" / "ondermijning"


def broker_env(directory: Path, port: int, database_url: str | None = None) -> dict[str, str]:
    """The environment of a broker in `directory` (its SQLite database, unless
    `database_url` names another) serving the demo pack on loopback `port`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "SLUIS_"))}
    env.update({
        "BROKER_DATABASE_URL": database_url or f"sqlite:///{directory / 'broker.db'}",
        "BROKER_KEY_DIR": str(directory / "keys"),
        "BROKER_POLICY_DIR": str(PACK),
        # Client assertions name the token URL as audience: make it the served one.
        "BROKER_ISSUER": f"http://127.0.0.1:{port}",
    })
    return env


def run_broker(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `broker ARGS` from the repository; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "broker", *args], env=dict(env), cwd=REPO, capture_output=True,
        text=True, timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"broker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def broker(env: Mapping[str, str], *args: str) -> str:
    """Run `broker ARGS` (it must succeed); its standard output."""
    return run_broker(env, *args).stdout


@dataclass
class Served:
    url: str
    env: dict[str, str]
    database_url: str

    def credentials(self, org: str, roles: str, kind: str = "system") -> dict[str, Any]:
        """A new client of `org` with `roles`, as `broker clients create --json` prints it."""
        made: dict[str, Any] = json.loads(broker(
            self.env, "clients", "create", "--org", org, "--name", f"{org} {roles}",
            "--roles", roles, "--kind", kind, "--json"))
        return made

    def client(self, org: str, roles: str, acting_user: str | None = None,
               kind: str = "system") -> dict[str, str]:
        """The headers of a new client's signed-in requests (with `X-Acting-User` when
        `acting_user` is given)."""
        made = self.credentials(org, roles, kind)
        token = httpx.post(self.url + "/oauth/token", data={
            "grant_type": "client_credentials", "client_id": made["client_id"],
            "client_secret": made["client_secret"]}, timeout=10)
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        if acting_user:
            headers["X-Acting-User"] = acting_user
        return headers


def database_for(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of a fixture parametrised by "sqlite" and "postgresql"."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.db'}"
    return str(request.getfixturevalue("postgres_url"))


@contextmanager
def served_broker(tmp_path: Path, database_url: str,
                  settings: Mapping[str, str] | None = None) -> Iterator[Served]:
    """`broker init` and `broker serve` (one worker) over `database_url` with the demo pack
    and `settings` (more `BROKER_*` variables), until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**broker_env(tmp_path, port, database_url), **(settings or {})}
    broker(env, "init")
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port), "--workers", "1"]
    with serving(command, env, url, tmp_path / "serve.log"):
        yield Served(url, env, database_url)
