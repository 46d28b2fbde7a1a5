"""`sluis audit report` reads the subject report in pages against a served broker: one page
with `--limit`, every page with `--all`, together the same acts as one large page."""

from __future__ import annotations

import json
from pathlib import Path

from broker.core.identifiers import valid_bsn_from
from tests.e2e.conftest import ServedBroker, SluisRunner, client_env


def test_the_report_in_pages_and_whole(run_sluis: SluisRunner, tmp_path: Path,
                                      sluis_broker: ServedBroker) -> None:
    def env(name: str, prefix: str, acting: str | None) -> dict[str, str]:
        return client_env(tmp_path / name, sluis_broker.url, sluis_broker.client(prefix),
                          acting_user=acting)

    politie, gemeente = env("politie", "Politie", "agent-7"), env("gemeente", "Gemeente", "h-2")
    officer = env("officer", "Functionaris", None)
    bsn = valid_bsn_from(987_610_000)
    stored = run_sluis(politie, "signals", "submit", "--category", "drugsgerelateerde-melding",
                       "--legal-basis", "wpg-art-16", "--bsn", bsn, "--postcode", "3072AD",
                       "--house-number", "92", "--attr", "soort=handel", "--attr", "ernst=hoog")
    assert stored.returncode == 0, stored.stderr
    for case in ("ZAAK-101", "ZAAK-102", "ZAAK-103"):
        asked = run_sluis(gemeente, "disclose", "--purpose", "integrale-controle", "--case",
                          case, "--bsn", bsn)
        assert asked.returncode == 0, asked.stderr
    whole = run_sluis(officer, "audit", "report", "--bsn", bsn, "--limit", "1000", "--json")
    assert whole.returncode == 0, whole.stderr
    report = json.loads(whole.stdout)
    assert len(report["items"]) == 3 and report["next_cursor"] is None
    page = json.loads(run_sluis(officer, "audit", "report", "--bsn", bsn, "--limit", "2",
                                "--json").stdout)
    assert page["items"] == report["items"][:2] and page["next_cursor"]
    rest = json.loads(run_sluis(officer, "audit", "report", "--bsn", bsn, "--limit", "2",
                                "--cursor", page["next_cursor"], "--json").stdout)
    assert rest["items"] == report["items"][2:] and rest["next_cursor"] is None
    every = json.loads(run_sluis(officer, "audit", "report", "--bsn", bsn, "--limit", "1",
                                 "--all", "--json").stdout)
    assert every == {**report, "next_cursor": None}
    table = run_sluis(officer, "audit", "report", "--bsn", bsn, "--limit", "1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("more: --cursor ")
    assert lines[-1].endswith(" (or --all)") and bsn not in table.stdout
