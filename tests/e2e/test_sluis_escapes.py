"""What the broker sends cannot steer the team member's terminal (finding: a company name
holding `ESC[2J`, an OSC title and `CR LF sluis: audit verify OK` cleared the screen and
printed a forged line). The real `sluis` script runs against a stand-in for a hostile or
broken broker (a small HTTP server in this test: the remote party, not our code) and
against a real broker whose policy pack names an organisation with escape sequences; on
stdout and stderr no control character arrives raw, no forged line starts, and `--json`
gives the exact values, escaped as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients import sluis
from tests.e2e.conftest import (
    REPO,
    ServedBroker,
    SluisRunner,
    broker_env,
    client_env,
    free_port,
    run_broker,
)
from tests.e2e.serving import serving

FORGED = "sluis: audit verify OK"
HOSTILE = (f"Kapsalon\x1b[2J\x1b[H\x1b]0;pwned\x07\r\n {FORGED}\n{FORGED}\x9b31m\x7f\x85"
           "\u2028\u202e")
"""Erase the screen, cursor home, set the window title, overwrite the line and start a
forged one, a C1 CSI, DEL, NEL, a line separator and a right-to-left override."""
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

SIGNAL = {
    "id": "sig_hostile", "source": HOSTILE, "category": "fiscale-schuld",
    "legal_basis": HOSTILE, "subject": {"type": "company", "kvk": "90001237", "name": HOSTILE},
    "location": None, "observed_at": HOSTILE, "description": HOSTILE,
    "attributes": {"soort_belasting": HOSTILE, f"key{HOSTILE}": 1},
    "received_at": HOSTILE, "retention_until": HOSTILE,
}
ENTRY = {"action": "disclosure", "actor": {"org": HOSTILE}, "purpose": HOSTILE,
         "items": [{"rule": HOSTILE, "fields": {HOSTILE: "reveal"}}]}
ENTRY_BYTES = json.dumps(ENTRY, separators=(",", ":")).encode()
PROBLEM = {"type": "about:blank", "title": f"Validation failed{HOSTILE}", "status": 422,
           "detail": HOSTILE, "errors": [{"loc": ["body", HOSTILE], "msg": HOSTILE}]}

ANSWERS: dict[tuple[str, str], tuple[int, Any]] = {
    ("POST", "/oauth/token"): (200, {"access_token": "e30.e30.sig", "token_type": "Bearer",
                                     "expires_in": 300}),
    ("GET", "/v1/signals/sig_hostile"): (200, SIGNAL),
    ("GET", "/v1/signals"): (200, {"items": [SIGNAL], "next_cursor": HOSTILE}),
    ("GET", "/v1/signals/sig_refused"): (422, PROBLEM),
    ("GET", "/v1/signals/sig_hostile/hold"): (200, {
        "signal_id": HOSTILE, "case_reference": HOSTILE, "placed_by": HOSTILE,
        "placed_at": HOSTILE}),
    ("GET", "/v1/organisations"): (200, {"items": [
        {"id": HOSTILE, "name": HOSTILE, "groups": [HOSTILE]}]}),
    ("POST", "/v1/disclosures"): (200, {
        "disclosure_id": HOSTILE, "audit_seq": HOSTILE, "policy_hash": HOSTILE,
        "purpose": HOSTILE, "signals": [{
            "ref": HOSTILE, "category": HOSTILE, "source": HOSTILE, "legal_basis": HOSTILE,
            "rule": HOSTILE, "fields": {"subject.name": HOSTILE, HOSTILE: {"gte": HOSTILE},
                                        "list": [HOSTILE], "nested": {"x": [HOSTILE]}}}]}),
    ("POST", "/v1/hits"): (200, {"hit": True, "sources": [HOSTILE], "audit_seq": 1,
                                 "policy_hash": HOSTILE}),
    ("GET", "/v1/reidentifications/rid_hostile"): (200, {
        "id": "rid_hostile", "status": "approved", "reason": HOSTILE, "value": HOSTILE}),
    ("POST", "/v1/audit/subject-report"): (200, {
        "subject_type": HOSTILE, "withheld": 1, "next_cursor": HOSTILE, "items": [{
            "seq": 1, "time": HOSTILE, "action": HOSTILE, "outcome": "granted",
            "recipient": HOSTILE, "purpose": HOSTILE, "legal_basis": HOSTILE,
            "items": [{"rule": HOSTILE, "legal_basis": HOSTILE, "category": HOSTILE,
                       "source": HOSTILE, "fields": {HOSTILE: "reveal"}}]}]}),
    ("GET", "/v1/audit/entries/5"): (200, {
        "seq": 5, "entry": ENTRY, "entry_b64": base64.b64encode(ENTRY_BYTES).decode(),
        "leaf_hash": base64.b64encode(hashlib.sha256(b"\x00" + ENTRY_BYTES).digest()).decode()}),
    ("GET", "/v1/policy"): (200, {"pack": HOSTILE, "version": HOSTILE, "hash": HOSTILE,
                                  "loaded_at": HOSTILE, "rules": [{"id": HOSTILE}]}),
}


class HostileBroker(http.server.BaseHTTPRequestHandler):
    """Answers every request from ANSWERS; a few odd answers besides (a 503 with a hostile
    request id, a redirect to a hostile address)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = self.path.split("?")[0]
        if path == "/v1/signals/sig_broken":
            self._send(503, {"title": HOSTILE, "status": 503}, {"X-Request-Id": "req\x1b[2J"})
            return
        if path == "/v1/signals/sig_moved":
            self._send(302, {}, {"Location": "http://127.0.0.1:9/\x1b[2J\x9b"})
            return
        status, body = ANSWERS.get((self.command, path), (404, {"title": "Not found"}))
        self._send(status, body, {})

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        media = "application/problem+json" if status >= 400 else "application/json"
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - the stdlib's naming

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileBroker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def assert_harmless(result: subprocess.CompletedProcess[str]) -> None:
    """No control character but newline reaches the terminal, and no line is forged."""
    assert "Traceback" not in result.stderr
    for stream in (result.stdout, result.stderr):
        assert not RAW.search(stream), repr(stream)
        assert not [line for line in stream.split("\n") if line.lstrip().startswith(FORGED)]


# --- The rendering, for any value -----------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30) | st.sampled_from(
    [HOSTILE, "\x1b[2J", "\r\n", "\x9b", "\u2028", "e\u0301", "Café"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(TEXT)
def test_visible_text_holds_no_control_character_and_is_stable(text: str) -> None:
    shown = sluis.visible(text)
    assert not RAW.search(shown) and "\n" not in shown  # one line, whatever it held
    assert sluis.visible(shown) == shown
    assert (shown == text) == (not RAW.search(text) and "\n" not in text)


@given(VALUES)
def test_pairs_tables_and_json_hold_no_control_character_but_their_own_lines(
    value: Any
) -> None:
    pairs = sluis.flatten({"value": value})
    listing = sluis.render_pairs(pairs)
    assert not RAW.search(listing) and listing.count("\n") == len(pairs) - 1
    table = sluis.render_table(["a", "b"], [[value, value], [{"k": value}, [value]]])
    assert not RAW.search(table) and table.count("\n") == 2
    as_json = sluis.json_text(value)
    assert not RAW.search(as_json.replace("\n", ""))
    assert json.loads(as_json) == value


COMMANDS = [
    ["signals", "show", "sig_hostile"],
    ["signals", "list"],
    ["signals", "hold", "sig_hostile"],
    ["organisations"],
    ["policy"],
    ["disclose", "--purpose", "p", "--case", "C-1", "--kvk", "90001237"],
    ["hit", "--purpose", "p", "--case", "C-1", "--kvk", "90001237"],
    ["reid", "fetch", "rid_hostile"],
    ["audit", "report", "--bsn", "111222333"],
    ["audit", "entry", "5"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_what_the_broker_sends_is_printed_escaped(
    run_sluis: SluisRunner, tmp_path: Path, hostile_url: str, command: list[str]
) -> None:
    env = client_env(tmp_path / "home", hostile_url, {"client_id": "cl_x", "client_secret": "s"})
    shown = run_sluis(env, *command)
    assert shown.returncode == 0, shown.stderr
    assert_harmless(shown)
    assert "Kapsalon\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07" in shown.stdout  # visible, not obeyed
    as_json = run_sluis(env, *command, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert_harmless(as_json)
    assert any(HOSTILE in text for text in strings(json.loads(as_json.stdout)))


def test_the_json_output_is_the_brokers_exact_answer(
    run_sluis: SluisRunner, tmp_path: Path, hostile_url: str
) -> None:
    env = client_env(tmp_path / "home", hostile_url, {"client_id": "cl_x", "client_secret": "s"})
    shown = run_sluis(env, "signals", "show", "sig_hostile", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == SIGNAL
    assert "\\u001b[2J" in shown.stdout and "\\u009b" in shown.stdout
    assert "\\u2028" in shown.stdout and "\\u202e" in shown.stdout and "é" not in shown.stdout


@pytest.mark.parametrize(("path", "first"), [
    ("sig_refused", "sluis: 422 Validation failedKapsalon\\x1b[2J"),
    ("sig_broken", "sluis: 503 Kapsalon\\x1b[2J"),
    ("sig_moved", "sluis: the broker answered 302 redirecting to http://127.0.0.1:9/\\x1b[2J"),
])
def test_a_problem_from_the_broker_is_printed_escaped(
    run_sluis: SluisRunner, tmp_path: Path, hostile_url: str, path: str, first: str
) -> None:
    env = client_env(tmp_path / "home", hostile_url, {"client_id": "cl_x", "client_secret": "s"})
    refused = run_sluis(env, "signals", "show", path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert_harmless(refused)
    assert refused.stderr.startswith(first), refused.stderr
    if path == "sig_refused":
        lines = refused.stderr.split("\n")
        assert len(lines) == 3 and lines[1].startswith("sluis:   Kapsalon\\x1b[2J")
    if path == "sig_broken":
        assert "(request id req\\x1b[2J)" in refused.stderr


# --- A real broker ---------------------------------------------------------------------

ORGANISATION = "Gemeente\\e[2J\\e]0;pwned\\a\\r\\n sluis: audit verify OK\\x9b"
"""The gemeente's name in the pack, in YAML's escapes: ESC [2J, an OSC title, CR LF, CSI."""


@pytest.fixture(scope="module")
def hostile_pack_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBroker]:
    """A broker whose policy pack names an organisation with escape sequences: a name that
    is no request's free text, so the broker's own check does not see it."""
    directory = tmp_path_factory.mktemp("hostile-pack")
    pack = directory / "pack"
    shutil.copytree(REPO / "policies" / "ondermijning", pack)
    names = pack / "organisations.yaml"
    text = names.read_text(encoding="utf-8")
    names.write_text(text.replace('{name: "Gemeente, team Ondermijning en Openbare Orde"}',
                                  f'{{name: "{ORGANISATION}"}}'), encoding="utf-8")
    port = free_port()
    env = {**broker_env(directory, port), "BROKER_POLICY_DIR": str(pack)}
    run_broker(env, "init")
    clients_file = directory / "demo-clients.json"
    run_broker(env, "demo", "seed", "--clients-file", str(clients_file))
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port), "--workers", "1"]
    with serving(command, env, url, directory / "serve.log"):
        yield ServedBroker(url, port, json.loads(clients_file.read_text()), env)


def test_a_real_brokers_organisation_name_is_printed_escaped(
    run_sluis: SluisRunner, tmp_path: Path, hostile_pack_broker: ServedBroker
) -> None:
    env = client_env(tmp_path / "home", hostile_pack_broker.url,
                     hostile_pack_broker.client("Netbeheerder"))
    table = run_sluis(env, "organisations")
    assert table.returncode == 0, table.stderr
    assert_harmless(table)
    # A table cell folds white space (CR LF) into one space; the rest is written out.
    assert "Gemeente\\x1b[2J\\x1b]0;pwned\\x07 sluis: audit verify OK\\u009b" in table.stdout
    as_json = run_sluis(env, "organisations", "--json")
    assert_harmless(as_json)
    (gemeente,) = [o for o in json.loads(as_json.stdout)["items"] if o["id"] == "gemeente"]
    assert gemeente["name"] == (
        "Gemeente\x1b[2J\x1b]0;pwned\x07\r\n sluis: audit verify OK\x9b")


def test_a_real_broker_refuses_escapes_in_a_company_name(
    run_sluis: SluisRunner, tmp_path: Path, sluis_broker: ServedBroker
) -> None:
    """The finding's own input, submitted through `sluis`: refused at intake, the field
    named, the value not echoed, nothing stored."""
    env = client_env(tmp_path / "home", sluis_broker.url,
                     sluis_broker.client("Belastingdienst"))
    refused = run_sluis(env, "signals", "submit", "--category", "fiscale-schuld",
                        "--legal-basis", "awr-art-67-43c", "--kvk", "90001237",
                        "--name", HOSTILE, "--description", f"Schuld{HOSTILE}",
                        "--attr", "soort_belasting=omzetbelasting",
                        "--attr", "openstaand_bedrag=23000", "--attr", "dwanginvordering=true")
    assert refused.returncode == 1
    assert_harmless(refused)
    assert refused.stderr.split("\n") == [
        "sluis: 422 Validation failed: The request is not valid; see `errors`.",
        "sluis:   subject.name: must not contain control characters or line breaks",
        "sluis:   description: must not contain control characters (a newline is allowed)",
        "",
    ]
    listed = run_sluis(env, "signals", "list", "--all", "--json")
    assert listed.returncode == 0 and "pwned" not in listed.stdout
