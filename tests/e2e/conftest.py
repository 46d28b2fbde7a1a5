"""Fixtures for end-to-end tests of the thin client: a broker served by uvicorn on loopback,
started the way an operator starts it (`broker init`, `broker demo seed`, `broker serve`),
and a runner for the real `clients/sluis.py` script as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.served import broker_env, run_broker
from tests.e2e.serving import free_port, serving

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "clients" / "sluis.py"

SluisRunner = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class ServedBroker:
    """A running broker: its URL, the demo clients' credentials, its environment."""

    url: str
    port: int
    clients: list[dict[str, Any]]
    env: dict[str, str]

    def client(self, name_prefix: str) -> dict[str, Any]:
        return next(c for c in self.clients if c["name"].startswith(name_prefix))

    def paths(self) -> set[str]:
        """The API paths the broker serves (endpoints still being built may be absent)."""
        with urllib.request.urlopen(self.url + "/openapi.json", timeout=10) as answer:  # noqa: S310
            return set(json.loads(answer.read())["paths"])


@contextmanager
def served_broker_in(directory: Path, *, port: int | None = None,
                     seed: bool = True) -> Iterator[ServedBroker]:
    """Init (and seed) a broker in `directory` and serve it on loopback until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = broker_env(directory, port)
    run_broker(env, "init")
    clients: list[dict[str, Any]] = []
    if seed:
        clients_file = directory / "demo-clients.json"
        run_broker(env, "demo", "seed", "--clients-file", str(clients_file))
        clients = json.loads(clients_file.read_text())
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port), "--workers", "1"]
    with serving(command, env, url, directory / "serve.log"):
        yield ServedBroker(url, port, clients, env)


@pytest.fixture(scope="session")
def sluis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBroker]:
    """One seeded demo broker for the thin client's tests (they only add to it)."""
    with served_broker_in(tmp_path_factory.mktemp("sluis-broker")) as served:
        yield served


def client_env(home: Path, url: str, client: dict[str, Any] | None = None,
               acting_user: str | None = "emp-1") -> dict[str, str]:
    """A clean environment for the client: its own home, config, cache and data dirs."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLUIS_", "XDG_", "BROKER_"))}
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "SLUIS_URL": url,
    })
    if client is not None:
        env["SLUIS_CLIENT_ID"] = client["client_id"]
        if client.get("client_secret"):
            env["SLUIS_CLIENT_SECRET"] = client["client_secret"]
    if acting_user:
        env["SLUIS_ACTING_USER"] = acting_user
    return env


@pytest.fixture
def run_sluis() -> SluisRunner:
    """Run `python clients/sluis.py ARGS` with an environment; never raises on failure."""

    def run(env: dict[str, str], *args: str, stdin: str | None = None,
            python: str = sys.executable, cwd: Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # Run from the client's home, not the repository: the script stands alone.
            [python, str(SCRIPT), *args], env=env, cwd=cwd or env["HOME"], capture_output=True,
            text=True, input=stdin if stdin is not None else "", timeout=120,
        )

    return run
