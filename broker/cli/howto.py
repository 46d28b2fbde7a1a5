"""What a new user needs to try the demo broker: a `sluis` configuration with a profile per
demo client, a form file for `curl`, and the printed recipe that uses them.

Secrets stay in owner-only files: the recipe names the files, never a secret, and `curl`
reads the client secret from its form file, so it is not on a command line where `ps`
would show it. The access token goes to `curl` on standard input (`--config -`) for the
same reason.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import shlex
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

ACTING_USER: Final = "emp-1"
"""The demo's acting person for system clients (a system client names who it acts for)."""
# A profile name per personal demo client, by its role; system clients are named by org.
PERSONAL_PROFILES: Final = {"requester": "analyst", "privacy_officer": "officer",
                            "admin": "admin"}
TRY_ORG: Final = "gemeente"
TOUR_PROFILES: Final = {"default": TRY_ORG, "officer": "riec-officer"}
"""Profiles the README's tour uses besides the per-client ones, as copies of them:
[default] (no --profile) is the organisation the tour follows, [officer] the covenant's
privacy officer (the RIEC's)."""


@dataclass(frozen=True)
class DemoFiles:
    """The files a new user is pointed to (each owner-only)."""

    clients: Path
    sluis_config: Path
    curl_form: Path


def files_beside(clients_file: Path) -> DemoFiles:
    """The demo's files, in the folder of its clients file (absolute paths, so the printed
    recipe works from any directory)."""
    clients = clients_file.resolve()
    folder = clients.parent
    return DemoFiles(clients, folder / "demo-sluis.ini", folder / f"demo-{TRY_ORG}.form")


def sluis_command() -> str:
    """The `sluis` command installed beside this Python (the demo's virtualenv), else the
    one on the path."""
    beside = Path(sys.executable).parent / "sluis"
    return str(beside) if beside.exists() else "sluis"


def profile_name(client: dict[str, Any]) -> str:
    """`gemeente` for the municipality's system client, `riec-officer` for a personal one."""
    if client["kind"] == "system":
        return str(client["org"])
    return f"{client['org']}-{PERSONAL_PROFILES[client['roles'][0]]}"


def sluis_config(clients: Sequence[dict[str, Any]], url: str, token_url: str) -> str:
    """A `sluis` config file (clients/sluis.py): one section per demo client, and the
    tour's [default] and [officer] (TOUR_PROFILES) first."""
    sections: dict[str, dict[str, str]] = {}
    for client in clients:
        section: dict[str, str] = {"url": url, "client_id": client["client_id"],
                                   "client_secret": client["client_secret"]}
        if client["kind"] == "system":
            section["acting_user"] = ACTING_USER
        if token_url != url.rstrip("/") + "/oauth/token":
            section["token_audience"] = token_url  # the issuer is not the URL served
        sections[profile_name(client)] = section
    parser = configparser.ConfigParser(interpolation=None)
    for alias, name in TOUR_PROFILES.items():
        if name in sections:
            parser[alias] = sections[name]
    for name, section in sections.items():
        parser[name] = section
    text = io.StringIO()
    text.write("# The demo broker's clients, one profile each: sluis --profile NAME ...\n")
    text.write("# [default] (no --profile) is " + TOUR_PROFILES["default"] + ", [officer] "
               + TOUR_PROFILES["officer"] + ": the README's tour uses them.\n")
    parser.write(text)
    return text.getvalue()


def token_form(client: dict[str, Any]) -> str:
    """The token request's form body (client_secret_post), for `curl -d @FILE`."""
    return urllib.parse.urlencode({"grant_type": "client_credentials",
                                   "client_id": client["client_id"],
                                   "client_secret": client["client_secret"]})


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable and writable by the owner only (also if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_files(files: DemoFiles, url: str, token_url: str) -> list[dict[str, Any]]:
    """Write the `sluis` config and the curl form from the clients file; its clients."""
    clients: list[dict[str, Any]] = json.loads(files.clients.read_text())
    write_private(files.sluis_config, sluis_config(clients, url, token_url))
    trying = next(c for c in clients if c["org"] == TRY_ORG and c["kind"] == "system")
    write_private(files.curl_form, token_form(trying))
    return clients


def howto(files: DemoFiles, base_url: str, clients: Sequence[dict[str, Any]]) -> str:
    """The text printed after the demo starts: where things are and what to try."""
    config, form = shlex.quote(str(files.sluis_config)), shlex.quote(str(files.curl_form))
    sluis = shlex.quote(sluis_command())
    names = [profile_name(c) for c in clients]
    tour = [f"{alias} (= {name})" for alias, name in TOUR_PROFILES.items() if name in names]
    profiles = ", ".join([*tour, *names])
    lines = [
        "",
        f"Sluis demo broker on {base_url} (API documentation: {base_url}/docs)",
        f"Demo clients and their secrets: {files.clients} (readable by you only)",
        f"A sluis configuration with a profile per demo client: {files.sluis_config}",
        f"  profiles: {profiles}",
        "",
        "Try it with sluis, as the municipality's system client (the profile `default` too,",
        "so --profile may be left out; `officer` is the covenant's privacy officer, at the RIEC):",
        "",
        f"  export SLUIS_CONFIG={config}",
        f"  {sluis} --profile {TRY_ORG} purposes",
        f"  {sluis} --profile {TRY_ORG} disclose --purpose integrale-controle \\",
        "      --case ZAAK-2026-0042 --address 3072AB 7",
        "",
        "The README's tour of sluis (\"The thin client\") uses these profiles as they are.",
        "",
        f"Or with curl: a token (curl reads the client secret from {files.curl_form}),",
        "then the purposes (the token goes to curl on its standard input, not its command line):",
        "",
        f"  TOKEN=$(curl -s -d @{form} {base_url}/oauth/token \\",
        "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        "  printf 'header = \"Authorization: Bearer %s\"\\n' \"$TOKEN\" \\",
        f"      | curl -s --config - {base_url}/v1/purposes",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """`python -m broker.cli.howto CLIENTS_FILE URL [TOKEN_URL]`: write the files, print."""
    clients_file, url = Path(argv[0]), argv[1].rstrip("/")
    token_url = argv[2] if len(argv) > 2 else url + "/oauth/token"
    files = files_beside(clients_file)
    clients = write_files(files, url, token_url)
    print(howto(files, url, clients))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
