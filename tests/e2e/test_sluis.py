"""The thin client `sluis` as team members use it, run as a subprocess against a served broker:
login and its token cache, reference data, signals one by one and in batches, and the one-line
errors and exit codes (0 ok, 1 refused / not found / unreachable, 2 usage)."""

from __future__ import annotations

import csv
import datetime
import http.server
import ipaddress
import json
import ssl
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import ServedBroker, SluisRunner, client_env, free_port, run_broker

ENERGY = ["--category", "energie-afwijking", "--legal-basis", "elektriciteitswet-levering"]


def energy_signal(number: int, kwh: int = 2400) -> dict[str, Any]:
    return {
        "category": "energie-afwijking",
        "legal_basis": "elektriciteitswet-levering",
        "subject": {"type": "address", "bag_id": f"0599010000{number:06d}"},
        "location": {"postcode": "3072AB", "house_number": 1 + number % 90},
        "observed_at": "2026-11-20T09:00:00+01:00",
        "attributes": {"kwh_per_month": kwh, "meter_seal_broken": number % 2 == 0},
    }


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The first line of stderr, after checking the failure speaks no Python."""
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr.splitlines()[0]


@pytest.fixture
def netbeheerder(tmp_path: Path, sluis_broker: ServedBroker) -> dict[str, str]:
    """A team member of the network operator (system client, contributor and requester)."""
    return client_env(tmp_path / "home", sluis_broker.url, sluis_broker.client("Netbeheerder"))


@pytest.fixture
def officer(tmp_path: Path, sluis_broker: ServedBroker) -> dict[str, str]:
    """The privacy officer (personal client: no X-Acting-User needed)."""
    return client_env(tmp_path / "officer", sluis_broker.url,
                      sluis_broker.client("Functionaris"), acting_user=None)


# --- Help and usage ---


def test_help_lists_every_command_with_examples(run_sluis: SluisRunner,
                                               netbeheerder: dict[str, str]) -> None:
    result = run_sluis(netbeheerder, "--help")
    assert result.returncode == 0
    for command in ("login", "purposes", "explain", "signals", "disclose", "hit", "area",
                    "reid", "audit"):
        assert f"    {command}" in result.stdout
    assert "exit codes: 0 ok, 1" in result.stdout and "examples:" in result.stdout
    imp = run_sluis(netbeheerder, "signals", "import", "--help")
    assert imp.returncode == 0 and "Idempotency-Key" in imp.stdout and "--progress" in imp.stdout
    verify = run_sluis(netbeheerder, "audit", "verify", "--help")
    assert "consistency proof" in verify.stdout and "sluis audit verify --file" in verify.stdout


@pytest.mark.parametrize("args", [
    ["no-such-command"],
    ["disclose", "--purpose", "integrale-controle"],          # no subject, address, area...
    ["signals", "list", "--limit", "0"],
    ["signals", "import", "x.jsonl", "--batch-size", "1001"],
    ["hit", "--purpose", "bibob-toets", "--bsn", "1", "--kvk", "2"],
    ["--url", "http://sluis.example", "purposes"],             # plain http to another host
    ["--url", "ftp://127.0.0.1/", "purposes"],
    ["--profile", "nowhere", "purposes"],
])
def test_usage_errors_exit_2(run_sluis: SluisRunner, netbeheerder: dict[str, str],
                             args: list[str]) -> None:
    result = run_sluis(netbeheerder, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip()


def test_missing_configuration_is_a_usage_error(run_sluis: SluisRunner, tmp_path: Path) -> None:
    env = client_env(tmp_path / "home", "")
    del env["SLUIS_URL"]
    result = run_sluis(env, "purposes")
    assert result.returncode == 2
    assert one_error_line(result).startswith("sluis: no broker URL: pass --url, set SLUIS_URL")


def test_config_file_profiles_and_unknown_settings(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    env = client_env(tmp_path / "home", sluis_broker.url)
    del env["SLUIS_URL"], env["SLUIS_ACTING_USER"]
    police = sluis_broker.client("Politie")
    config = Path(env["XDG_CONFIG_HOME"]) / "sluis" / "config.ini"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"[default]\nurl = {sluis_broker.url}\n\n"
        f"[politie]\nurl = {sluis_broker.url}\nclient_id = {police['client_id']}\n"
        f"client_secret = {police['client_secret']}\nacting_user = agent-7\n"
    )
    config.chmod(0o644)
    result = run_sluis(env, "--profile", "politie", "signals", "list", "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert all(s["source"] == "politie" for s in json.loads(result.stdout)["items"])
    assert "readable by others: chmod 600" in result.stderr
    shown = run_sluis(env, "--profile", "politie", "config")
    assert "(set)" in shown.stdout and police["client_secret"] not in shown.stdout
    assert f"config file: {config} (profile politie)" in shown.stdout
    assert "config file [politie]" in shown.stdout
    config.write_text(f"[default]\nurl = {sluis_broker.url}\nclient_sekret = x\n")
    bad = run_sluis(env, "purposes")
    assert bad.returncode == 2 and "unknown setting client_sekret" in bad.stderr


# --- Login, token cache, credentials ---


def test_login_caches_the_token_for_the_owner_only(
    run_sluis: SluisRunner, netbeheerder: dict[str, str]
) -> None:
    result = run_sluis(netbeheerder, "login")
    assert result.returncode == 0, result.stderr
    assert "as cl_" in result.stdout
    assert "(netbeheerder; roles: contributor, requester)" in result.stdout
    cache = Path(netbeheerder["XDG_CACHE_HOME"]) / "sluis"
    (token_file,) = cache.glob("token-*.json")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    # The cached token is used: a wrong secret does not matter until it expires...
    wrong = {**netbeheerder, "SLUIS_CLIENT_SECRET": "not-the-secret"}
    assert run_sluis(wrong, "purposes").returncode == 0
    # ...and after logout the client must authenticate again, and fails.
    assert run_sluis(wrong, "logout").stdout.strip() == "forgot the cached token"
    refused = run_sluis(wrong, "purposes")
    assert refused.returncode == 1
    assert one_error_line(refused) == ("sluis: 401 invalid_client: Client authentication "
                                       "failed: check the client id and secret (or key).")


def test_a_cache_file_readable_by_others_is_not_trusted(
    run_sluis: SluisRunner, netbeheerder: dict[str, str]
) -> None:
    assert run_sluis(netbeheerder, "login").returncode == 0
    (token_file,) = (Path(netbeheerder["XDG_CACHE_HOME"]) / "sluis").glob("token-*.json")
    token_file.chmod(0o644)
    wrong = {**netbeheerder, "SLUIS_CLIENT_SECRET": "not-the-secret"}
    assert run_sluis(wrong, "purposes").returncode == 1  # it logged in anew, and failed


def test_unreachable_broker(run_sluis: SluisRunner, netbeheerder: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_sluis({**netbeheerder, "SLUIS_URL": url}, "purposes")
    assert result.returncode == 1
    assert one_error_line(result) == f"sluis: cannot reach the broker at {url} (Connection refused)"


def test_private_key_jwt_login(run_sluis: SluisRunner, sluis_broker: ServedBroker,
                               tmp_path: Path) -> None:
    env = client_env(tmp_path / "home", sluis_broker.url)
    key = tmp_path / "home" / "key.pem"
    created = run_sluis(env, "key", "new", str(key))
    assert created.returncode == 0, created.stderr
    jwk = json.loads(created.stdout)
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256" and "d" not in jwk
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    jwk_file = tmp_path / "key.jwk"
    jwk_file.write_text(created.stdout)
    client = json.loads(run_broker(sluis_broker.env, "clients", "create", "--org", "gemeente",
                                   "--name", "Gemeente (sleutel)", "--roles", "requester",
                                   "--jwk", str(jwk_file), "--json").stdout)
    env.update({"SLUIS_CLIENT_ID": client["client_id"], "SLUIS_PRIVATE_KEY_FILE": str(key)})
    login = run_sluis(env, "login", "--json")
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["org"] == "gemeente"
    # Another key than the registered one is refused.
    other = tmp_path / "other.pem"
    assert run_sluis(env, "key", "new", str(other)).returncode == 0
    refused = run_sluis({**env, "SLUIS_PRIVATE_KEY_FILE": str(other)}, "login")
    assert refused.returncode == 1 and "401 invalid_client" in refused.stderr


# --- Reference data ---


def test_reference_data_as_tables_and_json(run_sluis: SluisRunner,
                                           netbeheerder: dict[str, str]) -> None:
    purposes = run_sluis(netbeheerder, "purposes")
    assert purposes.returncode == 0
    assert purposes.stdout.splitlines()[0].split() == ["ID", "CASE", "REF", "TITLE"]
    assert any(line.startswith("integrale-controle") and " yes " in line
               for line in purposes.stdout.splitlines())
    as_json = json.loads(run_sluis(netbeheerder, "purposes", "--json").stdout)
    assert {p["id"] for p in as_json["items"]} >= {"integrale-controle", "ondermijningsbeeld"}
    orgs = json.loads(run_sluis(netbeheerder, "--json", "organisations").stdout)
    assert "netbeheerder" in {o["id"] for o in orgs["items"]}
    bases = run_sluis(netbeheerder, "legal-bases")
    assert "elektriciteitswet-levering" in bases.stdout
    category = run_sluis(netbeheerder, "categories", "energie-afwijking")
    assert "kwh_per_month" in category.stdout and "boolean" in category.stdout
    unknown = run_sluis(netbeheerder, "categories", "nope")
    assert unknown.returncode == 1 and "no category 'nope'" in unknown.stderr
    policy = run_sluis(netbeheerder, "policy")
    assert "gemeente-energie-integrale-controle" in policy.stdout


def test_explain_dry_runs_the_policy(run_sluis: SluisRunner, netbeheerder: dict[str, str]) -> None:
    result = run_sluis(netbeheerder, "explain", "--recipient", "gemeente", "--purpose",
                       "integrale-controle", "--category", "energie-afwijking", "--source",
                       "netbeheerder")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("access: disclose by rule gemeente-energie-integrale-controle")
    assert "attributes.kwh_per_month" in result.stdout
    none = run_sluis(netbeheerder, "explain", "--recipient", "woningcorporatie", "--purpose",
                     "milieutoezicht", "--category", "energie-afwijking", "--source",
                     "netbeheerder", "--json")
    assert json.loads(none.stdout) == {"access": "none"}


# --- Signals ---


def test_submit_show_list_and_retract_a_signal(run_sluis: SluisRunner,
                                               netbeheerder: dict[str, str]) -> None:
    submitted = run_sluis(netbeheerder, "signals", "submit", *ENERGY, "--bag-id",
                          "0599010000000012", "--postcode", "3072AB", "--house-number", "12",
                          "--attr", "kwh_per_month=2400", "--attr", "meter_seal_broken=true",
                          "--observed-at", "2026-11-20T09:00:00+01:00", "--json")
    assert submitted.returncode == 0, submitted.stderr
    signal = json.loads(submitted.stdout)
    assert signal["source"] == "netbeheerder"
    assert signal["subject"] == {"type": "address", "bag_id": "0599010000000012"}
    # Attributes are typed after the category, not sent as text.
    assert signal["attributes"] == {"kwh_per_month": 2400, "meter_seal_broken": True}
    shown = run_sluis(netbeheerder, "signals", "show", signal["id"])
    assert shown.returncode == 0 and f"signal {signal['id']}" in shown.stdout
    assert "attributes.kwh_per_month" in shown.stdout
    listed = json.loads(run_sluis(netbeheerder, "signals", "list", "--category",
                                  "energie-afwijking", "--all", "--json").stdout)
    assert signal["id"] in {s["id"] for s in listed["items"]}
    assert listed["next_cursor"] is None
    retracted = run_sluis(netbeheerder, "signals", "retract", signal["id"], "--yes")
    assert retracted.returncode == 0 and "can no longer be read" in retracted.stdout
    gone = run_sluis(netbeheerder, "signals", "show", signal["id"])
    assert gone.returncode == 1
    assert one_error_line(gone) == "sluis: 404 Not found: No such signal."


def test_list_pages_with_a_cursor(run_sluis: SluisRunner, netbeheerder: dict[str, str]) -> None:
    first = json.loads(run_sluis(netbeheerder, "signals", "list", "--limit", "2", "--json").stdout)
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = json.loads(run_sluis(netbeheerder, "signals", "list", "--limit", "2", "--cursor",
                                  first["next_cursor"], "--json").stdout)
    assert {s["id"] for s in first["items"]}.isdisjoint({s["id"] for s in second["items"]})
    table = run_sluis(netbeheerder, "signals", "list", "--limit", "2")
    assert table.stdout.splitlines()[0].split() == ["ID", "CATEGORY", "SUBJECT", "OBSERVED",
                                                    "RECEIVED"]
    assert "more: --cursor" in table.stdout


def test_submit_from_stdin_is_idempotent_with_a_key(run_sluis: SluisRunner,
                                                    netbeheerder: dict[str, str]) -> None:
    body = json.dumps(energy_signal(501))
    args = ("signals", "submit", "--file", "-", "--idempotency-key", "sluis-test-501", "--json")
    first = run_sluis(netbeheerder, *args, stdin=body)
    again = run_sluis(netbeheerder, *args, stdin=body)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]
    other = run_sluis(netbeheerder, *args, stdin=json.dumps(energy_signal(502)))
    assert other.returncode == 1
    assert one_error_line(other).startswith("sluis: 409 ")


def test_refused_signal_is_one_line_and_its_fields(run_sluis: SluisRunner,
                                                   netbeheerder: dict[str, str]) -> None:
    result = run_sluis(netbeheerder, "signals", "submit", "--category", "energie-afwijking",
                       "--legal-basis", "wpg-art-16", "--bag-id", "0599010000000012",
                       "--attr", "kwh_per_month=veel")
    assert result.returncode == 1
    assert one_error_line(result).startswith("sluis: 422 Validation failed: ")
    details = result.stderr.splitlines()[1:]
    assert any(line.startswith("sluis:   legal_basis: ") for line in details)
    assert any(line.startswith("sluis:   attributes.kwh_per_month: ") for line in details)


def test_a_role_the_client_lacks_is_403(run_sluis: SluisRunner, officer: dict[str, str]) -> None:
    result = run_sluis(officer, "signals", "list")
    assert result.returncode == 1
    assert one_error_line(result).startswith("sluis: 403 Forbidden")
    assert len(result.stderr.splitlines()) == 1


def test_a_system_client_must_name_its_person(run_sluis: SluisRunner,
                                              netbeheerder: dict[str, str]) -> None:
    env = {k: v for k, v in netbeheerder.items() if k != "SLUIS_ACTING_USER"}
    result = run_sluis(env, "signals", "list")
    assert result.returncode == 1
    assert one_error_line(result).startswith("sluis: 400 Bad request: System clients must name")
    assert "SLUIS_ACTING_USER" in result.stderr
    named = run_sluis(env, "--acting-user", "emp-9", "signals", "list", "--limit", "1")
    assert named.returncode == 0, named.stderr


# --- Batches ---


def _count(run_sluis: SluisRunner, env: dict[str, str]) -> int:
    listed = run_sluis(env, "signals", "list", "--all", "--limit", "1000", "--json")
    return len(json.loads(listed.stdout)["items"])


def test_import_jsonl_in_batches_with_progress_and_a_safe_rerun(
    run_sluis: SluisRunner, netbeheerder: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "signals.jsonl"
    path.write_text("".join(json.dumps(energy_signal(1000 + i)) + "\n" for i in range(23)))
    before = _count(run_sluis, netbeheerder)
    first = run_sluis(netbeheerder, "signals", "import", str(path), "--batch-size", "10",
                      "--progress", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["stored"] == 23 and report["batches"] == 3 and len(set(report["ids"])) == 23
    assert "] 23/23 signals" in first.stderr and "] 10/23 signals" in first.stderr
    assert _count(run_sluis, netbeheerder) == before + 23
    # Each batch's Idempotency-Key comes from its content: running it again stores nothing.
    again = run_sluis(netbeheerder, "signals", "import", str(path), "--batch-size", "10",
                      "--json")
    assert json.loads(again.stdout)["ids"] == report["ids"]
    assert "signals" not in again.stderr  # no progress bar when stderr is not a terminal
    assert _count(run_sluis, netbeheerder) == before + 23


def test_import_csv_types_columns_after_the_category(
    run_sluis: SluisRunner, netbeheerder: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "signals.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "legal_basis", "subject.type", "subject.bag_id",
                         "location.postcode", "location.house_number", "observed_at",
                         "attributes.kwh_per_month", "attributes.meter_seal_broken",
                         "description"])
        writer.writerow(["energie-afwijking", "elektriciteitswet-levering", "address",
                         "0599010000000777", "3072AC", "7", "2026-11-21T10:00:00+01:00",
                         "3100", "nee", ""])
    result = run_sluis(netbeheerder, "signals", "import", str(path), "--json")
    assert result.returncode == 0, result.stderr
    (signal_id,) = json.loads(result.stdout)["ids"]
    stored = json.loads(run_sluis(netbeheerder, "signals", "show", signal_id, "--json").stdout)
    assert stored["attributes"] == {"kwh_per_month": 3100, "meter_seal_broken": False}
    assert stored["location"]["house_number"] == 7 and stored["description"] is None


def test_a_refused_batch_names_its_input_line(
    run_sluis: SluisRunner, netbeheerder: dict[str, str], tmp_path: Path
) -> None:
    bodies = [energy_signal(2000 + i) for i in range(9)]
    bodies[6]["subject"]["bag_id"] = "12"  # line 7, in the second batch of five
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    before = _count(run_sluis, netbeheerder)
    result = run_sluis(netbeheerder, "signals", "import", str(path), "--batch-size", "5")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("sluis: 422 Validation failed")
    assert any(line.startswith("sluis:   line 7: subject.bag_id: ") for line in lines)
    assert lines[-1] == ("sluis: batch 2 of 2 was refused and nothing of it was stored; "
                         "5 signals of earlier batches were stored")
    assert _count(run_sluis, netbeheerder) == before + 5


def test_an_unreadable_input_is_a_usage_error(
    run_sluis: SluisRunner, netbeheerder: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(energy_signal(1)) + "\n{not json\n")
    result = run_sluis(netbeheerder, "signals", "import", str(path))
    assert result.returncode == 2 and one_error_line(result).startswith("sluis: line 2 is not JSON")
    missing = run_sluis(netbeheerder, "signals", "import", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


# --- TLS ---


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by a throwaway CA: (ca.pem, server.pem with key)."""
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - mirrors the client
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(hours=1))
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    ca_file, server_file = directory / "ca.pem", directory / "server.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_file.write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    return ca_file, server_file


def test_tls_certificates_are_verified(run_sluis: SluisRunner, tmp_path: Path) -> None:
    """An HTTPS endpoint whose CA the client does not know is refused; with --ca-file the
    handshake succeeds (this endpoint then answers 404 to everything)."""
    ca_file, server_file = _self_signed(tmp_path)

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's naming
            self.send_response(404)
            self.send_header("Content-Type", "application/problem+json")
            self.end_headers()
            self.wfile.write(b'{"title": "Not found", "status": 404, "detail": "Nothing here."}')

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        env = client_env(tmp_path / "home", url, {"client_id": "cl_x", "client_secret": "s"})
        refused = run_sluis(env, "login")
        assert refused.returncode == 1
        line = one_error_line(refused)
        assert line.startswith(f"sluis: cannot reach the broker at {url} (")
        assert "CERTIFICATE_VERIFY_FAILED" in line and line.endswith("(pass --ca-file for a "
                                                                     "private CA)")
        trusted = run_sluis(env, "--ca-file", str(ca_file), "login")
        assert trusted.returncode == 1
        assert one_error_line(trusted) == "sluis: 404 Not found: Nothing here."
    finally:
        server.shutdown()
        server.server_close()


def test_a_privacy_officer_holds_and_lifts_a_signal(
    run_sluis: SluisRunner, netbeheerder: dict[str, str], sluis_broker: ServedBroker,
    tmp_path: Path,
) -> None:
    made = run_broker(sluis_broker.env, "clients", "create", "--org", "netbeheerder", "--name",
                      "FG netbeheerder", "--roles", "privacy_officer", "--kind", "personal",
                      "--json")
    officer_env = client_env(tmp_path / "fg", sluis_broker.url, json.loads(made.stdout),
                             acting_user=None)
    submitted = run_sluis(netbeheerder, "signals", "submit", *ENERGY, "--bag-id",
                          "0599010000000012", "--postcode", "3072AB", "--house-number", "12",
                          "--attr", "kwh_per_month=2400", "--attr", "meter_seal_broken=true",
                          "--observed-at", "2026-11-20T09:00:00+01:00", "--json")
    assert submitted.returncode == 0, submitted.stderr
    signal_id = json.loads(submitted.stdout)["id"]
    placed = run_sluis(officer_env, "signals", "hold", signal_id, "--case", "RB-2026-17")
    assert placed.returncode == 0, placed.stderr
    assert f"{signal_id} is held for RB-2026-17" in placed.stdout
    shown = json.loads(run_sluis(officer_env, "signals", "hold", signal_id, "--json").stdout)
    assert shown["case_reference"] == "RB-2026-17"
    listed = run_sluis(officer_env, "signals", "holds")
    assert listed.returncode == 0, listed.stderr
    assert signal_id in listed.stdout and "RB-2026-17" in listed.stdout
    one_case = json.loads(run_sluis(officer_env, "signals", "holds", "--case", "RB-2026-17",
                                    "--all", "--json").stdout)
    assert [h["signal_id"] for h in one_case["items"]] == [signal_id]
    refused = run_sluis(netbeheerder, "signals", "retract", signal_id, "--yes")
    assert refused.returncode == 1
    assert one_error_line(refused).startswith("sluis: 409 ")
    lifted = run_sluis(officer_env, "signals", "hold", signal_id, "--lift")
    assert lifted.returncode == 0 and "lifted" in lifted.stdout
    assert "no legal holds" in run_sluis(officer_env, "signals", "holds").stdout
    assert run_sluis(netbeheerder, "signals", "retract", signal_id, "--yes").returncode == 0
