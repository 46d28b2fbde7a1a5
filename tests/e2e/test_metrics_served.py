"""A served broker asks its scraper for the metrics token (docs/security.md, "Metrics"):
`broker serve` with `BROKER_METRICS_TOKEN`, scraped over loopback."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.conftest import broker_env, run_broker
from tests.e2e.serving import free_port, serving

TOKEN = "metrics-scraper-0123456789abcdef-XYZ"


def scrape(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url + "/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def served(tmp_path: Path, **settings: str) -> tuple[list[str], dict[str, str], str]:
    """`broker init` in `tmp_path`; the serve command, its environment and its URL."""
    port = free_port()
    env = {**broker_env(tmp_path, port), **settings}
    run_broker(env, "init")
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port)]
    return command, env, f"http://127.0.0.1:{port}"


def test_a_served_broker_asks_its_scraper_for_the_token(tmp_path: Path) -> None:
    command, env, url = served(tmp_path, BROKER_METRICS_TOKEN=TOKEN)
    with serving(command, env, url, tmp_path / "serve.log"):
        status, body = scrape(url, {})
        assert status == 401 and "sluis_" not in body
        assert scrape(url, {"Authorization": "Bearer " + "y" * 40})[0] == 401
        status, body = scrape(url, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and "# TYPE sluis_http_requests_total counter" in body
    assert TOKEN not in (tmp_path / "serve.log").read_text()


def test_a_served_broker_without_the_setting_serves_no_metrics(tmp_path: Path) -> None:
    command, env, url = served(tmp_path)
    with serving(command, env, url, tmp_path / "serve.log"):
        status, body = scrape(url, {})
        assert status == 404 and "sluis_" not in body
