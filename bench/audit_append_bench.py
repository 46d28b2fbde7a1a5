"""Audit appends per second: group commit vs one transaction per entry, SQLite and PostgreSQL.

N threads (default 64) call `AuditLog.record()` in a loop for a few seconds, as request
threads do. "group" is the appender as shipped (one transaction per batch of whatever is
queued); "single" caps batches at one entry (one commit per entry), for the ratio.
"tasks" is group commit with N asyncio tasks on one event loop awaiting
`AuditLog.record_async()`, as the disclosure endpoints do: the appender wakes the loop once
per batch instead of each waiting thread.
SQLite runs with synchronous=FULL (the broker's setting); PostgreSQL is a throwaway
cluster started with fsync and synchronous_commit on. Reports the median of the rounds,
the process CPU per append, and the mean batch size.

"alone" hands the appender batches of 1000 directly, without waiting threads: its own
capacity. `--processes 1 2` also runs two processes sharing the threads, as two broker
workers share one database (group commit only).

Run: .venv/bin/python bench/audit_append_bench.py [--threads 64] [--seconds 3] [--rounds 3]
     [--only sqlite|postgresql] [--processes 1 [2]]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import platform
import resource
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
from broker.audit.appender import AuditLog  # noqa: E402
from broker.audit.encoding import pre_encode  # noqa: E402
from broker.audit.pending import Pending  # noqa: E402
from broker.audit.signer import CheckpointSigner  # noqa: E402
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

    def _write(self, units: Any) -> Any:
        self.batches += 1
        return super()._write(units)


@dataclass
class Result:
    rate: float
    user_us: float
    system_us: float
    batch: float


def run_round(url: str, key_dir: Path, state: Path, threads: int, seconds: float,
              batch_cap: int, tasks: bool = False) -> Result:
    settings = Settings(database_url=url, key_dir=key_dir, checkpoint_every_seconds=3600,
                        checkpoint_every_entries=10**9, db_pool_size=4)
    keys = load_key_ring(key_dir)
    engine = make_engine(url, pool_size=4)
    signer = CheckpointSigner(engine, keys, settings, state_path=state)
    log = CountingLog(engine, keys, settings, signer=signer, batch_cap=batch_cap)
    log.start()
    gc.freeze()  # as the broker does once started (broker/app.py)
    stop = threading.Event()
    counts = [0] * threads

    def worker(index: int) -> None:
        number = index * 10_000_000
        while not stop.is_set():
            log.record(draft(number))
            number += 1
            counts[index] += 1

    async def task(index: int) -> None:
        number = index * 10_000_000
        while not stop.is_set():
            await log.record_async(draft(number))
            number += 1
            counts[index] += 1

    async def tasks_main() -> None:
        await asyncio.gather(*(task(i) for i in range(threads)))

    if tasks:
        pool = [threading.Thread(target=asyncio.run, args=(tasks_main(),))]
    else:
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    time.sleep(0.3)  # warm up: connections open, queue full
    start_count, start_batches = sum(counts), log.batches
    wall, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(seconds)
    done, batches = sum(counts) - start_count, log.batches - start_batches
    after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - wall
    user, system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
    stop.set()
    for thread in pool:
        thread.join()
    log.close()
    engine.dispose()
    per = 1e6 / max(done, 1)
    return Result(done / wall, user * per, system * per, done / max(batches, 1))


def run_appender_only(url: str, key_dir: Path, state: Path, seconds: float) -> Result:
    """The appender's own capacity: batches of 1000 handed to it directly, no request
    threads waiting (so no thread hand-offs): the ceiling the threads eat into."""
    settings = Settings(database_url=url, key_dir=key_dir, checkpoint_every_seconds=3600,
                        checkpoint_every_entries=10**9)
    keys = load_key_ring(key_dir)
    engine = make_engine(url, pool_size=4)
    log = CountingLog(engine, keys, settings,
                      signer=CheckpointSigner(engine, keys, settings, state_path=state))
    gc.freeze()  # as the broker does once started (broker/app.py)
    done, number = 0, 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    while time.perf_counter() - wall < seconds:
        units = [Pending(draft(number + i), None, ()) for i in range(1000)]
        for unit in units:
            pre_encode(unit, settings.audit_origin)  # as `record` does in its caller
        log._append(units)  # the appender thread's own step, called inline
        number += 1000
        done += 1000
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    engine.dispose()
    per = 1e6 / done
    return Result(done / wall, (after.ru_utime - usage.ru_utime) * per,
                  (after.ru_stime - usage.ru_stime) * per, 1000.0)


def run_processes(url: str, key_dir: Path, state: Path, args: argparse.Namespace,
                  cap: int) -> Result:
    """One round in `args.processes` processes at once (each with its share of threads),
    as broker workers share one database; rates add up, CPU and batch are averaged."""
    tasks = cap < 0
    cap = abs(cap)
    if args.processes == 1:
        return run_round(url, key_dir, state, args.threads, args.seconds, cap, tasks)
    share = args.threads // args.processes
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        parts = pool.starmap(
            run_round, [(url, key_dir, state, share, args.seconds, cap, tasks)] * args.processes
        )
    total = sum(p.rate for p in parts)
    return Result(
        total,
        sum(p.user_us * p.rate for p in parts) / total,
        sum(p.system_us * p.rate for p in parts) / total,
        statistics.mean(p.batch for p in parts),
    )


def measure(name: str, make_url: Any, key_dir: Path, args: argparse.Namespace) -> None:
    # A negative cap: the same cap, with asyncio tasks instead of threads.
    modes = (("group", 1000), ("tasks", -1000), ("single", 1), ("alone", 0)) \
        if args.processes == 1 else (("group", 1000), ("tasks", -1000))
    for mode, cap in modes:
        results = []
        for _ in range(args.rounds):
            url = make_url()
            state = Path(tempfile.mkdtemp()) / "signer.json"
            if mode == "alone":
                results.append(run_appender_only(url, key_dir, state, args.seconds))
            else:
                results.append(run_processes(url, key_dir, state, args, cap))
        rates = [r.rate for r in results]
        label = f"{name} x{args.processes}" if args.processes > 1 else name
        print(f"{label:15} {mode:6} median {statistics.median(rates):9.0f} appends/s  "
              f"(rounds {', '.join(f'{r:.0f}' for r in rates)}); "
              f"CPU user {statistics.median(r.user_us for r in results):5.1f} + system "
              f"{statistics.median(r.system_us for r in results):5.1f} µs/append; "
              f"batch {statistics.median(r.batch for r in results):6.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="process counts to run (the threads are shared out)")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}  "
          f"nproc {os.cpu_count()}  Python {platform.python_version()}  "
          f"threads {args.threads}, {args.seconds:.0f} s x {args.rounds} rounds")
    process_counts = list(args.processes)
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

        for args.processes in process_counts:
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

            for args.processes in process_counts:
                measure("postgresql", pg_url, key_dir, args)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
