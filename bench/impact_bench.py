"""The replay of journaled requests under a draft, and disclosures beside a running replay.

In one process, on SQLite (WAL) with the demo pack: signals about 50 persons and
addresses, then N real requests through the app (disclosures by BSN and by address, hit
checks, area summaries, in turn) journaled as live traffic journals them. Measured:

1. the replay of all N under the live pack and the draft of tests/api/test_policy_impact.py
   (one field revealed, one rule dropped, one added): wall time and requests per second;
2. disclosures per second from 4 client threads, alone and while replays run in a
   thread beside them.

Run: .venv/bin/python bench/impact_bench.py [--requests 10000] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from broker import migrate  # noqa: E402
from broker.app import create_app  # noqa: E402
from broker.auth.actors import system_actor  # noqa: E402
from broker.auth.clients import create_client  # noqa: E402
from broker.core.identifiers import valid_bsn_from  # noqa: E402
from broker.core.policy import CompiledPolicy, load_pack  # noqa: E402
from broker.db import make_engine  # noqa: E402
from broker.keys import create_key_ring  # noqa: E402
from broker.runtime import open_runtime  # noqa: E402
from broker.services import impact  # noqa: E402
from broker.settings import Settings  # noqa: E402
from tests.api.disclosure_kit import drugs, energy, hennep  # noqa: E402
from tests.api.test_policy_impact import draft_folder  # noqa: E402

PACK = REPO / "policies" / "ondermijning"
PEOPLE = 50
CASE = "BENCH-1"


def headers(api: TestClient, runtime: Any, org: str, roles: list[str]) -> dict[str, str]:
    client, secret = create_client(runtime, org=org, name=f"bench {org}", kind="system",
                                   roles=roles)
    token = api.post("/oauth/token", data={"grant_type": "client_credentials",
                                           "client_id": client.id,
                                           "client_secret": secret}).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "X-Acting-User": f"{org}-1"}


def bodies() -> list[tuple[str, str, dict[str, Any]]]:
    """(org, path, body) of the requests, in turn."""
    out = []
    for n in range(PEOPLE):
        bsn, bag = valid_bsn_from(100_000_000 + n * 1_000), f"05990100000{n:05d}"
        out += [
            ("gemeente", "/v1/disclosures", {"purpose": "integrale-controle",
                                             "case_reference": CASE,
                                             "query": {"subject": {"bsn": bsn}}}),
            ("gemeente", "/v1/disclosures", {"purpose": "integrale-controle",
                                             "case_reference": CASE,
                                             "query": {"subject": {"bag_id": bag}}}),
            ("belastingdienst", "/v1/hits", {"purpose": "fiscale-handhaving",
                                             "case_reference": CASE,
                                             "subject": {"bsn": bsn}}),
            ("riec", "/v1/area-summaries", {"purpose": "ondermijningsbeeld",
                                            "area": {"postcode": f"30{72 + n % 5}"}}),
        ]
    return out


def seed(api: TestClient, made: dict[str, dict[str, str]]) -> None:
    """A drugs report, a hemp suspicion and an energy reading per person and address."""
    for n in range(PEOPLE):
        bsn, bag = valid_bsn_from(100_000_000 + n * 1_000), f"05990100000{n:05d}"
        postcode = f"30{72 + n % 5}AB"
        for org, body in [("politie", drugs(bsn=bsn, postcode=postcode)),
                          ("politie", hennep(bag_id=bag, postcode=postcode)),
                          ("netbeheerder", energy(bag_id=bag, postcode=postcode))]:
            assert api.post("/v1/signals", json=body, headers=made[org]).status_code == 201


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="impact-bench-"))
    database = f"sqlite:///{directory / 'broker.db'}"
    engine = make_engine(database)
    migrate.upgrade(engine)
    engine.dispose()
    create_key_ring(directory / "keys")
    settings = Settings(database_url=database, key_dir=directory / "keys", policy_dir=PACK,
                        checkpoint_every_seconds=3600, release_budget_per_hour=10**6,
                        request_rate_per_minute=10**6, fishing_subjects_per_hour=10**6)
    runtime = open_runtime(settings)
    draft = CompiledPolicy(load_pack(draft_folder(directory)))
    try:
        with TestClient(create_app(settings, runtime=runtime)) as api:
            made = {org: headers(api, runtime, org, [role]) for org, role in [
                ("politie", "contributor"), ("netbeheerder", "contributor"),
                ("gemeente", "requester"), ("belastingdienst", "requester"),
                ("riec", "requester")]}
            seed(api, made)
            requests = bodies()
            started = time.perf_counter()
            for i in range(args.requests):
                org, path, body = requests[i % len(requests)]
                answer = api.post(path, json=body, headers=made[org])
                assert answer.status_code == 200, answer.text
            print(f"journaled {args.requests} requests in {time.perf_counter() - started:.1f} s")

            actor = system_actor("bench")
            started = time.perf_counter()
            report = impact.replay(runtime, actor, draft)
            took = time.perf_counter() - started
            totals = report.impact.totals
            print(f"replay of {totals['requests']} journaled requests: {took:.2f} s "
                  f"({totals['requests'] / took:,.0f} requests/s); totals {totals}")

            def rate(seconds: float) -> float:
                done = [0]
                stop = time.perf_counter() + seconds
                body = requests[0][2]

                def worker() -> None:
                    while time.perf_counter() < stop:
                        answer = api.post("/v1/disclosures", json=body, headers=made["gemeente"])
                        assert answer.status_code == 200
                        done[0] += 1

                threads = [threading.Thread(target=worker) for _ in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                return done[0] / seconds

            alone = rate(args.seconds)
            running = threading.Event()
            replays = [0]

            def replaying() -> None:
                while not running.is_set():
                    impact.replay(runtime, actor, draft)
                    replays[0] += 1

            beside = threading.Thread(target=replaying)
            beside.start()
            with_replay = rate(args.seconds)
            running.set()
            beside.join()
            print(f"disclosures/s alone {alone:,.0f}; beside a running replay {with_replay:,.0f} "
                  f"({replays[0]} replays finished meanwhile); cores {os.cpu_count()}")
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
