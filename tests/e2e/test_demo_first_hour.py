"""A new user's first hour with the demo: `broker demo serve` (what `scripts/demo` runs)
writes a `sluis` configuration with a profile per demo client and a form file for curl
(both owner-only), prints how to use them and never a secret, and the printed sluis
commands and curl recipe work as printed. Key sign-in works on the demo as it is: its
issuer is the URL it serves."""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SCRIPT, client_env, run_broker
from tests.e2e.serving import REPO, free_port, serving


@dataclass
class Demo:
    url: str
    directory: Path
    printed: str
    clients: list[dict[str, Any]]
    env: dict[str, str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`broker demo serve` with nothing but a database and key ring of its own: no
    BROKER_ISSUER, as a new user starts it."""
    directory = tmp_path_factory.mktemp("first-hour")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "SLUIS_"))}
    env.update({"BROKER_DATABASE_URL": f"sqlite:///{directory / 'broker.db'}",
                "BROKER_KEY_DIR": str(directory / "keys")})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "broker", "demo", "serve", "--port", str(port),
               "--dir", str(directory / "var")]
    log = directory / "demo.log"
    with serving(command, env, url, log, timeout=60):
        printed = log.read_text().split('{"time"', 1)[0]  # before the server's own log
        clients = json.loads((directory / "var" / "demo-clients.json").read_text())
        yield Demo(url, directory, printed, clients, env)


def block(printed: str, first: str) -> str:
    """The indented block of the printed text that starts with `first`, as a shell script."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(first))
    taken = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        taken.append(line[2:])
    return "\n".join(taken) + "\n"


def shell(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_nothing_printed_holds_a_secret(demo: Demo) -> None:
    assert len(demo.clients) == 10
    for client in demo.clients:
        assert client["client_secret"] not in demo.printed
    assert "client_secret" not in demo.printed
    var = demo.directory / "var"
    assert f"{var / 'demo-clients.json'}" in demo.printed
    assert f"{var / 'demo-sluis.ini'}" in demo.printed


def test_the_demo_files_are_owner_only(demo: Demo) -> None:
    var = demo.directory / "var"
    for name in ("demo-clients.json", "demo-sluis.ini", "demo-gemeente.form"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name


def test_the_sluis_config_has_a_profile_per_demo_client(demo: Demo) -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read(demo.directory / "var" / "demo-sluis.ini")
    by_id = {c["client_id"]: c for c in demo.clients}
    assert sorted(config.sections()) == sorted([
        "politie", "gemeente", "belastingdienst", "omgevingsdienst", "netbeheerder",
        "woningcorporatie", "riec-analyst", "riec-officer", "riec-admin", "politie-officer",
        "default", "officer"])
    # the README's tour: no --profile is the gemeente, --profile officer the covenant's officer
    assert dict(config["default"]) == dict(config["gemeente"])
    assert dict(config["officer"]) == dict(config["riec-officer"])
    for name in config.sections():
        section = dict(config[name])
        client = by_id[section["client_id"]]
        expected = {"url": demo.url, "client_id": client["client_id"],
                    "client_secret": client["client_secret"]}
        if client["kind"] == "system":
            expected["acting_user"] = "emp-1"
        assert section == expected, name  # no token_audience: the issuer is the URL


def test_the_printed_sluis_commands_work(demo: Demo, tmp_path: Path) -> None:
    script = block(demo.printed, "export SLUIS_CONFIG=")
    assert "--profile gemeente purposes" in script and "disclose" in script
    env = {k: v for k, v in client_env(tmp_path / "home", demo.url).items()
           if not k.startswith("SLUIS_")}
    result = shell(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "integrale-controle" in result.stdout
    assert "for integrale-controle" in result.stdout and "2 signals released" in result.stdout


def test_the_printed_curl_recipe_works(demo: Demo, tmp_path: Path) -> None:
    script = block(demo.printed, "TOKEN=$(curl")
    assert "-d @" in script and "--config -" in script
    result = shell(script, {k: v for k, v in os.environ.items() if k == "PATH"}, tmp_path)
    assert result.returncode == 0, result.stderr
    purposes = json.loads(result.stdout)
    assert "integrale-controle" in {p["id"] for p in purposes["items"]}


def test_key_sign_in_works_on_the_demo_as_it_is(demo: Demo, tmp_path: Path) -> None:
    """`sluis login` with a private key and no token_audience: the audience sluis assumes
    (the URL it talks to, plus /oauth/token) is the demo's."""
    env = client_env(tmp_path / "home", demo.url)
    key = tmp_path / "home" / "key.pem"
    made = subprocess.run([sys.executable, str(SCRIPT), "key", "new", str(key)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    jwk_file = tmp_path / "key.jwk"
    jwk_file.write_text(made.stdout)
    created = json.loads(run_broker(demo.env, "clients", "create", "--org", "gemeente",
                                    "--name", "Gemeente (sleutel)", "--roles", "requester",
                                    "--jwk", str(jwk_file), "--json").stdout)
    env.update({"SLUIS_CLIENT_ID": created["client_id"], "SLUIS_PRIVATE_KEY_FILE": str(key)})
    login = subprocess.run([sys.executable, str(SCRIPT), "login", "--json"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           check=False)
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["org"] == "gemeente"


def test_scripts_demo_runs_the_demo_command() -> None:
    script = (REPO / "scripts" / "demo").read_text()
    assert 'exec .venv/bin/broker demo serve --port "${PORT:-8000}"' in script


def test_the_tour_profiles_default_and_officer_work(demo: Demo, tmp_path: Path) -> None:
    """The README's tour: `sluis` without --profile is the gemeente's system client,
    `--profile officer` the covenant's privacy officer; the recipe names both."""
    assert "profiles: default (= gemeente), officer (= riec-officer), politie," in demo.printed
    env = {k: v for k, v in client_env(tmp_path / "home", demo.url).items()
           if not k.startswith("SLUIS_")}
    env["SLUIS_CONFIG"] = str(demo.directory / "var" / "demo-sluis.ini")
    gemeente = next(c for c in demo.clients if c["org"] == "gemeente")
    shown = shell("sluis config", env | {"PATH": f"{Path(sys.executable).parent}:"
                                                 f"{env['PATH']}"}, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert gemeente["client_id"] in shown.stdout and "config file [default]" in shown.stdout
    for profile, org, role in ((None, "gemeente", "requester"),
                               ("officer", "riec", "privacy_officer")):
        chosen = ["--profile", profile] if profile else []
        login = subprocess.run([sys.executable, str(SCRIPT), *chosen, "login", "--json"],
                               env=env, cwd=tmp_path, capture_output=True, text=True,
                               timeout=60, check=False)
        assert login.returncode == 0, login.stderr
        claims = json.loads(login.stdout)
        assert claims["org"] == org and role in claims["roles"], profile
