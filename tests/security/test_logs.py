"""Application logs and metrics (docs/security.md rows 11 and 33, docs/api.md "Operations").

The logs: one well-formed JSON object per line per event, whatever a caller puts in a
header or a field (CRLF, ANSI, JSON fragments), and no personal data, token, secret or
key material in any line while the token, signal, disclosure and audit flows run.
The metrics: `/metrics` is Prometheus text format 0.0.4 with the families docs/security.md names,
and its figures follow what the app did.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.config
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import text

from broker.api.observe import BUCKETS
from broker.logs import MASK, JsonFormatter, log_config
from broker.runtime import Runtime
from broker.settings import Settings
from tests.api.disclosure_kit import BSN, drugs
from tests.security.conftest import ServedBroker

Headers = Callable[..., dict[str, str]]
NAME = "Sem de Vries"
HOSTILE_HEADER = 'x level=CRITICAL {"event": "forged"}\x1b[31m\x1b]0;t\x07'
HOSTILE = "x\r\nlevel=CRITICAL {\"event\": \"forged\"}\x1b[31m\x1b]0;t\x07\u2028end"


# --- the formatter ----------------------------------------------------------------------------

def record(msg: str = "something happened", *, exc: bool = False, **extra: Any) -> str:
    logger = logging.getLogger("broker.test")
    made = logger.makeRecord("broker.test", logging.INFO, __file__, 1, msg, (), None,
                             extra=extra)
    if exc:
        try:
            raise ValueError(f"duplicate key value (bsn)=({BSN}) for {NAME}")
        except ValueError:
            made.exc_info = sys.exc_info()
    return JsonFormatter().format(made)


def test_a_line_is_one_json_object_with_hostile_text_escaped() -> None:
    line = record(HOSTILE, reason=HOSTILE, request_id=HOSTILE)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    parsed = json.loads(line)
    assert parsed["message"].startswith("x\r\nlevel=CRITICAL")
    assert parsed["reason"] == parsed["message"]
    assert parsed["level"] == "INFO" and parsed["logger"] == "broker.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["time"])


def test_only_allow_listed_fields_are_written() -> None:
    parsed = json.loads(record(event="signal_created", client_id="cl_x", status=201,
                               body={"bsn": BSN}, bsn=BSN, person=NAME, secret="s3cr3t",
                               headers={"authorization": "Bearer x"}, org={"nested": 1}))
    assert parsed["event"] == "signal_created" and parsed["client_id"] == "cl_x"
    assert parsed["status"] == 201
    assert parsed["org"] is None  # an allowed name with a non-scalar value: not written
    for dropped in ("body", "bsn", "person", "secret", "headers"):
        assert dropped not in parsed
    assert BSN not in json.dumps(parsed) and NAME not in json.dumps(parsed)


def test_exceptions_give_type_and_places_never_the_message() -> None:
    parsed = json.loads(record(exc=True))
    assert parsed["error_type"] == "ValueError"
    assert parsed["frames"] and all(" in " in f for f in parsed["frames"])
    assert not any(f.startswith("/") for f in parsed["frames"])
    line = json.dumps(parsed)
    assert BSN not in line and NAME not in line and "duplicate key" not in line


def test_jwt_and_bsn_shapes_are_masked_in_any_text() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    parsed = json.loads(record(f"token {token} for 111222333 seq 1234567890",
                               reason=f"sub {BSN}"))
    assert token not in parsed["message"] and BSN not in parsed["reason"]
    assert parsed["message"] == f"token {MASK} for {MASK} seq 1234567890"


def test_the_uvicorn_config_silences_its_access_log() -> None:
    config = log_config("debug")
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["loggers"]["broker"]["level"] == "DEBUG"
    factory = config["formatters"]["json"]["()"]
    assert logging.config.DictConfigurator(config).resolve(factory) is JsonFormatter
    assert json.loads(json.dumps(config)) == config  # also usable as `--log-config` JSON


# --- the logs of real flows -------------------------------------------------------------------

@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything the broker's and uvicorn's loggers write, as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("broker", "uvicorn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def key_material(key_dir: Path) -> list[str]:
    """Every form a key file's secret could take in a log line."""
    forms = []
    for path in key_dir.iterdir():
        content = path.read_text()
        lines = [ln for ln in content.splitlines() if ln and not ln.startswith("-----")]
        forms += [ln for ln in lines if len(ln) >= 16]
        try:
            raw = base64.b64decode("".join(lines))
        except ValueError:
            continue
        forms += [raw.hex(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    return forms


def run_flows(api: TestClient, credentials: Callable[..., tuple[str, str]],
              auth_headers: Headers) -> dict[str, list[str]]:
    """Tokens, signals, a disclosure, audit reads, refusals and hostile headers; returns the
    secrets that went over the wire."""
    client_id, secret = credentials("politie", ["contributor"])
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    token = api.post("/oauth/token", data=form).json()["access_token"]
    assert api.post("/oauth/token", data={**form, "client_secret": secret + "x"}).status_code \
        == 401
    politie = {"Authorization": f"Bearer {token}", "X-Acting-User": "agent-7"}
    created = api.post("/v1/signals", json=drugs(), headers=politie)
    assert created.status_code == 201
    signal_id = created.json()["id"]
    assert api.get(f"/v1/signals/{signal_id}", headers=politie).status_code == 200
    assert api.get(f"/v1/signals?access_token={token}", headers={"X-Acting-User": "a"}) \
        .status_code == 401
    assert api.get("/v1/signals", headers={**politie, "User-Agent": HOSTILE_HEADER,
                                           "X-Request-Id": "abc\x1b[31m"}).status_code == 200
    assert api.get("/v1/signals", headers={**politie, "X-Acting-User": "a b{}"}).status_code \
        == 400
    # Refused at the field (row 54); its answer and its log lines stay well-formed all the same.
    assert api.post("/v1/signals", json={**drugs(), "description": HOSTILE},
                    headers=politie).status_code == 422
    assert api.post("/v1/signals", json=drugs(bsn="111222334"), headers=politie).status_code \
        == 422
    requester = auth_headers("gemeente", ["requester"])
    asked = api.post("/v1/disclosures", headers=requester, json={
        "purpose": "integrale-controle", "case_reference": "ZAAK-2026-9",
        "query": {"subject": {"bsn": BSN}}})
    assert asked.status_code == 200, asked.text
    officer = auth_headers("riec", ["privacy_officer"])
    report = api.post("/v1/audit/subject-report", json={"subject": {"bsn": BSN}},
                      headers=officer)
    assert report.status_code == 200, report.text
    assert api.get("/v1/audit/entries", headers=officer).status_code == 200
    bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert api.get("/v1/signals", headers={**politie, "Authorization": f"Bearer {bad}"}) \
        .status_code == 401
    tokens = [token, token.split(".")[2], requester["Authorization"].split()[1], bad]
    return {"tokens": tokens, "secrets": [secret]}


def test_flows_log_no_personal_data_token_or_key(
    api: TestClient, credentials: Callable[..., tuple[str, str]], auth_headers: Headers,
    log_lines: io.StringIO, key_dir: Path,
) -> None:
    """Rows 11 and 33: grep every captured line for what must never be there."""
    sent = run_flows(api, credentials, auth_headers)
    lines = log_lines.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(p, dict) for p in parsed)
    assert len(parsed) >= 15
    text_all = log_lines.getvalue()
    forbidden = [BSN, "111222334", NAME, "Overdracht van pakketjes", "1990-04-02",
                 "\x1b", "\u2028", *sent["tokens"], *sent["secrets"], *key_material(key_dir)]
    found = [f for f in forbidden if f in text_all]
    assert not found, f"in the logs: {[f[:12] for f in found]}"
    assert all("\r" not in line for line in lines)


def test_every_request_has_one_access_record(
    api: TestClient, credentials: Callable[..., tuple[str, str]], auth_headers: Headers,
    log_lines: io.StringIO, exchanges: list[Any],
) -> None:
    run_flows(api, credentials, auth_headers)
    access = [json.loads(line) for line in log_lines.getvalue().splitlines()
              if json.loads(line)["logger"] == "broker.access"]
    assert len(access) == len(exchanges)
    for line, exchange in zip(access, exchanges, strict=True):
        assert line["event"] == "http_request"
        assert line["status"] == exchange.status
        assert line["method"] == exchange.method
        assert re.fullmatch(r"req_[0-9a-f]{24}|[A-Za-z0-9._:-]{1,128}", line["request_id"])
        assert line["duration_ms"] >= 0
        assert "?" not in line["route"] and "sig_" not in line["route"]
    routes = {line["route"] for line in access}
    assert {"/oauth/token", "/v1/signals", "/v1/signals/{signal_id}", "/v1/disclosures"} <= routes
    refused = [r for r in (json.loads(x) for x in log_lines.getvalue().splitlines())
               if r.get("event") == "token_refused"]
    assert len(refused) == 1 and refused[0]["reason"]


def test_access_records_name_the_authenticated_client(
    api: TestClient, credentials: Callable[..., tuple[str, str]], auth_headers: Headers,
    log_lines: io.StringIO,
) -> None:
    client_id, secret = credentials("politie", ["contributor"])
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    token = api.post("/oauth/token", data=form).json()["access_token"]
    api.get("/v1/signals", headers={"Authorization": f"Bearer {token}", "X-Acting-User": "a"})
    access = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    listed = [a for a in access if a.get("route") == "/v1/signals"]
    assert listed and listed[-1]["client_id"] == client_id


def test_a_500_is_logged_as_type_and_places_only(
    api: TestClient, auth_headers: Headers, log_lines: io.StringIO, runtime: Runtime
) -> None:
    politie = auth_headers("politie", ["contributor"])
    plain = TestClient(api.app, raise_server_exceptions=False)
    with runtime.engine.begin() as conn:
        conn.execute(text("ALTER TABLE signal RENAME TO signal_gone"))
    try:
        assert plain.get("/v1/signals", headers=politie).status_code == 500
    finally:
        with runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE signal_gone RENAME TO signal"))
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert errors and errors[0]["error_type"]
    assert "signal_gone" not in log_lines.getvalue() and "SELECT" not in log_lines.getvalue()
    assert [line["status"] for line in lines if line.get("route") == "/v1/signals"] == [500]


@pytest.mark.slow
def test_broker_serve_writes_json_lines_only(served: ServedBroker) -> None:
    served.start()
    assert served.call("GET", "/healthz").status == 200
    assert served.call("GET", "/v1/signals?access_token=eyJx.eyJy.z").status == 401
    # httptools refuses control bytes in a header itself (a plain-text 400 before the app).
    assert served.call("GET", "/healthz", headers={"User-Agent": "a\x1b[31m"}).status in (200,
                                                                                          400)
    served.stop()
    assert served.log_path is not None
    lines = [ln for ln in served.log_path.read_text().splitlines() if ln.strip()]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line
    assert "access_token" not in served.log_path.read_text()
    assert any(json.loads(ln).get("event") == "http_request" for ln in lines)


# --- metrics ----------------------------------------------------------------------------------

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


def parse_metrics(body: str) -> dict[str, dict[str, Any]]:
    """A strict reader of the text format 0.0.4: families with their type and samples."""
    assert body.endswith("\n")
    families: dict[str, dict[str, Any]] = {}
    current = None
    for line in body.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            current = families.setdefault(name, {"type": None, "samples": []})
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name == current_name(current, families)
            families[name]["type"] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels_text = match["labels"] or ""
        labels = dict(LABEL.findall(labels_text))
        assert ",".join(f'{k}="{v}"' for k, v in LABEL.findall(labels_text)) == labels_text
        name = match["name"]
        family = next(f for f in families if name == f or name.startswith(f + "_"))
        families[family]["samples"].append((name, labels, float(match["value"])))
    return families


def current_name(current: dict[str, Any] | None, families: dict[str, dict[str, Any]]) -> str:
    return next(name for name, family in families.items() if family is current)


METRICS_TOKEN = "scraper-token-of-the-metrics-tests-0123"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with a metrics token, so `/metrics` is served."""
    return settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})


def test_metrics_are_prometheus_text_with_every_family(
    api: TestClient, auth_headers: Headers
) -> None:
    politie = auth_headers("politie", ["contributor"])
    for _ in range(3):
        assert api.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
    assert api.get("/v1/signals/sig_nothere", headers=politie).status_code == 404
    requester = auth_headers("gemeente", ["requester"])
    query = {"subject": {"bsn": BSN}}
    granted = api.post("/v1/disclosures", headers=requester, json={
        "purpose": "integrale-controle", "case_reference": "ZAAK-1", "query": query})
    assert granted.status_code == 200
    refused = api.post("/v1/disclosures", headers=auth_headers("riec", ["requester"]), json={
        "purpose": "integrale-controle", "case_reference": "ZAAK-1", "query": query})
    assert refused.status_code == 403
    api.get("/no/such/path/123")
    answer = api.get("/metrics", headers=SCRAPER)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_metrics(answer.text)
    assert families["sluis_http_requests_total"]["type"] == "counter"
    assert families["sluis_http_request_duration_seconds"]["type"] == "histogram"
    assert families["sluis_disclosures_total"]["type"] == "counter"
    assert families["sluis_audit_log_size"]["type"] == "gauge"

    requests = {(s[1]["method"], s[1]["route"], s[1]["status"]): s[2]
                for s in families["sluis_http_requests_total"]["samples"]}
    assert requests[("POST", "/v1/signals", "201")] == 3
    assert requests[("GET", "/v1/signals/{signal_id}", "404")] == 1
    assert requests[("GET", "unmatched", "404")] == 1
    assert requests[("POST", "/v1/disclosures", "403")] == 1
    assert not any("sig_" in route or "123" in route for _, route, _ in requests)

    samples = families["sluis_http_request_duration_seconds"]["samples"]
    buckets = [s for s in samples if s[0].endswith("_bucket")
               and s[1]["route"] == "/v1/signals" and s[1]["method"] == "POST"]
    assert [b[1]["le"] for b in buckets] == [*(f"{b:g}" for b in BUCKETS), "+Inf"]
    counts = [b[2] for b in buckets]
    assert counts == sorted(counts) and counts[-1] == 3
    count = next(s[2] for s in samples if s[0].endswith("_count")
                 and s[1]["route"] == "/v1/signals" and s[1]["method"] == "POST")
    assert count == 3

    disclosures = {(s[1]["request"], s[1]["outcome"]): s[2]
                   for s in families["sluis_disclosures_total"]["samples"]}
    assert disclosures == {("disclosure", "granted"): 1, ("disclosure", "refused"): 1}
    size = families["sluis_audit_log_size"]["samples"][0][2]
    entries = sum(s[2] for s in families["sluis_audit_entries_total"]["samples"])
    assert size == entries >= 5
    assert families["sluis_audit_healthy"]["samples"][0][2] == 1

    again = parse_metrics(api.get("/metrics", headers=SCRAPER).text)  # nothing counted twice
    recount = {(s[1]["request"], s[1]["outcome"]): s[2]
               for s in again["sluis_disclosures_total"]["samples"]}
    assert recount == disclosures
