"""Audit appends per second: group commit vs one transaction per entry, SQLite and PostgreSQL.

N threads (default 64) call `AuditLog.record()` in a loop for a few seconds, as request
threads do. "group" is the appender as shipped (one transaction per batch of whatever is
queued); "single" caps batches at one entry (one commit per entry), for the ratio.
SQLite runs with synchronous=FULL (the broker's setting); PostgreSQL is a throwaway
cluster started with fsync and synchronous_commit on. Reports the median of the rounds,
the process CPU per append, and the mean batch size.

Run: .venv/bin/python bench/audit_append_bench.py [--threads 64] [--seconds 3] [--rounds 3]
     [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from broker import migrate  # noqa: E402
from broker.audit.signer import CheckpointSigner  # noqa: E402
from broker.audit.store import AuditLog  # noqa: E402
from broker.db import make_engine  # noqa: E402
from broker.keys import create_key_ring, load_key_ring  # noqa: E402
from broker.settings import Settings  # noqa: E402
from tests.pgcluster import start_cluster  # noqa: E402


def draft(number: int) -> dict[str, Any]:
    """A one-signal disclosure, the commonest accountable act."""
    return {
        "action": "disclosure",
        "outcome": "granted",
        "reason": None,
        "actor": {"client": "cl_gemeente_01", "org": "gemeente", "roles": ["requester"],
                  "acting_user_tag": "u1LTXdJ5uz5VmohDiUJ2Vw"},
        "purpose": "integrale-controle",
        "case_reference": "ZAAK-2026-0042",
        "policy": {"pack": "ondermijning", "hash": "sha256:" + "9f86" * 16},
        "request_id": f"req_{number}",
        "items": [{
            "signal_id": f"sig_{number:012d}", "rule": "gemeente-energie-integrale-controle",
            "legal_basis": "elektriciteitswet-levering", "category": "energie-afwijking",
            "source": "netbeheerder",
            "fields": {"location.postcode": "reveal", "observed_at": {"generalise": "month"},
                       "attributes.kwh_per_month": {"bucket": 500}},
        }],
        "objects": {"disclosure_id": f"dsc_{number}"},
    }


class CountingLog(AuditLog):
    """The appender, counting its transactions (to report the batch size)."""

    batches = 0

    def _write(self, units: Any) -> Any:  # type: ignore[override]
        self.batches += 1
        return super()._write(units)


@dataclass
class Result:
    rate: float
    cpu_us: float
    batch: float


def run_round(url: str, key_dir: Path, state: Path, threads: int, seconds: float,
              batch_cap: int) -> Result:
    settings = Settings(database_url=url, key_dir=key_dir, checkpoint_every_seconds=3600,
                        checkpoint_every_entries=10**9, db_pool_size=4)
    keys = load_key_ring(key_dir)
    engine = make_engine(url, pool_size=4)
    signer = CheckpointSigner(engine, keys, settings, state_path=state)
    log = CountingLog(engine, keys, settings, signer=signer, batch_cap=batch_cap)
    log.start()
    stop = threading.Event()
    counts = [0] * threads

    def worker(index: int) -> None:
        number = index * 10_000_000
        while not stop.is_set():
            log.record(draft(number))
            number += 1
            counts[index] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    time.sleep(0.3)  # warm up: connections open, queue full
    start_count, start_batches = sum(counts), log.batches
    wall, cpu = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    done, batches = sum(counts) - start_count, log.batches - start_batches
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stop.set()
    for thread in pool:
        thread.join()
    log.close()
    engine.dispose()
    return Result(done / wall, cpu / max(done, 1) * 1e6, done / max(batches, 1))


def measure(name: str, make_url: Any, key_dir: Path, args: argparse.Namespace) -> None:
    for mode, cap in (("group", 1000), ("single", 1)):
        results = []
        for _ in range(args.rounds):
            url = make_url()
            state = Path(tempfile.mkdtemp()) / "signer.json"
            results.append(run_round(url, key_dir, state, args.threads, args.seconds, cap))
        rates = [r.rate for r in results]
        print(f"{name:10} {mode:6} median {statistics.median(rates):9.0f} appends/s  "
              f"(rounds {', '.join(f'{r:.0f}' for r in rates)}); "
              f"CPU {statistics.median(r.cpu_us for r in results):5.1f} µs/append; "
              f"batch {statistics.median(r.batch for r in results):6.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}  "
          f"nproc {os.cpu_count()}  Python {platform.python_version()}  "
          f"threads {args.threads}, {args.seconds:.0f} s x {args.rounds} rounds")
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    key_dir = work / "keys"
    create_key_ring(key_dir)
    if args.only != "postgresql":
        counter = iter(range(1000))

        def sqlite_url() -> str:
            url = f"sqlite:///{work / f'bench-{next(counter)}.db'}"
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
            return url

        measure("sqlite", sqlite_url, key_dir, args)
    if args.only != "sqlite":
        import psycopg

        cluster = start_cluster(fsync=True)
        try:
            counter_pg = iter(range(1000))

            def pg_url() -> str:
                name = f"bench_{next(counter_pg)}"
                admin = cluster.url.replace("postgresql+psycopg://", "postgresql://")
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}".encode())
                engine = make_engine(cluster.url_for(name))
                migrate.upgrade(engine)
                engine.dispose()
                return cluster.url_for(name)

            measure("postgresql", pg_url, key_dir, args)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
