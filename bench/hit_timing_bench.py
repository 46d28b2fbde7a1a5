"""Does a hit check's answer time tell of signals the caller may not see? (docs/security.md
row 51; tests hold the reads, this measures the time.)

One broker process (uvicorn with uvloop and httptools, SQLite in WAL mode with
synchronous=FULL, the demo pack) holds 1,000 signals about one person that the gemeente
may not see for `integrale-controle`: drug reports of the politie under the two legal
bases its rules do not cover for that purpose, drug reports under the covered basis but
older than the rule accepts, and tax debts of the Belastingdienst (a category the
gemeente receives only for another purpose). A second person has no signal at all.

The gemeente's hit checks about the two alternate, one request at a time over one kept
HTTP connection (after a warm-up), so both see the same machine; every answer must be
200 and `hit: false`. Medians and 90th percentiles per person are reported, with the
ratio of the medians. Before the reads sought only what the rules reach, the first
person's checks took several times as long.

Run: .venv/bin/python bench/hit_timing_bench.py [--runs 300] [--unseen 1000]
     [--database URL]   (another database, e.g. a PostgreSQL one, migrated by `init`)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import disclosure_bench as http_bench  # noqa: E402
import httpx  # noqa: E402

from broker.core.identifiers import valid_bsn_from  # noqa: E402

WARM_UP = 50
WATCHED = valid_bsn_from(457_100_000)
NOBODY = valid_bsn_from(457_200_000)


def unseen(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the politie's, the Belastingdienst's) signals about WATCHED the gemeente may not
    see for `integrale-controle`."""
    politie, fiscus = [], []
    for n in range(count):
        kind = n % 4
        if kind == 3:
            fiscus.append({
                "category": "fiscale-schuld", "legal_basis": "awr-art-67-43c",
                "subject": {"type": "person", "bsn": WATCHED},
                "observed_at": http_bench.days_ago(6),
                "attributes": {"soort_belasting": "omzetbelasting", "openstaand_bedrag": 23000,
                               "dwanginvordering": True}})
            continue
        politie.append({
            "category": "drugsgerelateerde-melding",
            "legal_basis": ("wpg-art-19", "wpg-art-20", "wpg-art-16")[kind],
            "subject": {"type": "person", "bsn": WATCHED},
            "location": {"postcode": "3072AC", "house_number": 3},
            "observed_at": http_bench.days_ago(800 if kind == 2 else 9),  # the rule: 730 days
            "attributes": {"soort": "handel", "ernst": "midden"}})
    return politie, fiscus


def client(url: str, env: dict[str, str], org: str, roles: str) -> dict[str, str]:
    made = json.loads(http_bench.broker_cli(env, "clients", "create", "--org", org, "--name",
                                            f"bench {org}", "--roles", roles, "--json"))
    token = httpx.post(url + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": made["client_id"],
        "client_secret": made["client_secret"]}, timeout=10).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "X-Acting-User": f"{org}-1"}


def seed(url: str, env: dict[str, str], count: int) -> dict[str, str]:
    politie, fiscus = unseen(count)
    for org, bodies in (("politie", politie), ("belastingdienst", fiscus)):
        headers = client(url, env, org, "contributor")
        for start in range(0, len(bodies), 1000):
            answer = httpx.post(url + "/v1/signals/batch", headers=headers, timeout=120,
                                json={"signals": bodies[start:start + 1000]})
            assert answer.status_code == 201, answer.text
    return client(url, env, "gemeente", "requester")


def measure(url: str, headers: dict[str, str], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"unseen": [], "none": []}
    subjects = {"unseen": WATCHED, "none": NOBODY}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for n in range(WARM_UP + runs):
            for name in (("unseen", "none") if n % 2 else ("none", "unseen")):
                body = {"purpose": "integrale-controle", "case_reference": "ZAAK-2026-0042",
                        "subject": {"bsn": subjects[name]}}
                started = time.perf_counter()
                answer = http.post("/v1/hits", json=body)
                took = time.perf_counter() - started
                assert answer.status_code == 200, answer.text
                assert answer.json()["hit"] is False, answer.text
                if n >= WARM_UP:
                    times[name].append(took * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--unseen", type=int, default=1000)
    parser.add_argument("--database", help="a database URL instead of a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        port = http_bench.free_port()
        env = http_bench.broker_env(directory, port)
        if args.database:
            env["BROKER_DATABASE_URL"] = args.database
        http_bench.broker_cli(env, "init")
        url = f"http://127.0.0.1:{port}"
        with http_bench.servers("broker", port, env, workers=1):
            headers = seed(url, env, args.unseen)
            times = measure(url, headers, args.runs)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"python {platform.python_version()}, {args.runs} interleaved runs each, "
          f"{args.unseen} unseen signals, {env['BROKER_DATABASE_URL'].split(':')[0]}")
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"  {name:>6}: median {medians[name]:.2f} ms, p90 {p90:.2f} ms")
    print(f"  ratio of medians (unseen / none): {medians['unseen'] / medians['none']:.3f}")


if __name__ == "__main__":
    main()
