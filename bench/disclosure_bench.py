"""Disclosures per second through real HTTP, beside a bare FastAPI echo on the same settings.

Two server processes per app bind one loopback port each with SO_REUSEPORT (the kernel
balances connections between them), uvicorn with uvloop and httptools, no access log. The
broker runs on SQLite (WAL, synchronous=FULL) with the demo pack; the request is the
gemeente's `POST /v1/disclosures` for `integrale-controle` about one address (`bag_id`),
which releases three signals (two energy readings, one hemp suspicion) through two rules,
with an ES256 bearer token and `X-Acting-User`. The echo app parses the same JSON body and
returns it. `wrk` (Debian's, installed with apt-get when missing) drives each with 32
connections from one thread, alternating echo and broker rounds; medians are reported.
Every broker answer must be 200 and every one must have its own audit entry; the log must
verify afterwards.

`--profile` then samples one broker worker with py-spy (`pip install py-spy`, the `bench`
extra) under the same load and prints where its time goes.

Run: .venv/bin/python bench/disclosure_bench.py [--seconds 8] [--rounds 3] [--connections 32]
     [--query bag|bsn] [--grow-seconds S] [--profile]

`--grow-seconds` loads the broker before the rounds (warm-up is otherwise 2 s), so that
they run against a grown log: costs that grow with the log show up there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402

PACK = REPO / "policies" / "ondermijning"
BAG = "0599010000000012"
BSN = "111222333"
WORKERS = 2


# --- the apps (built in the server processes) ---------------------------------------------


def broker_app() -> FastAPI:
    """The broker's app, as `broker serve` builds it (settings from the environment)."""
    from broker.app import create_app

    return create_app()


def echo_app() -> FastAPI:
    """A bare FastAPI echo: parse the JSON body, return it."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    return app


def serve(which: str, port: int) -> None:
    """One server process on a SO_REUSEPORT socket shared with its sibling."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    factory = broker_app if which == "broker" else echo_app
    config = uvicorn.Config(factory, factory=True, loop="uvloop", http="httptools",
                            access_log=False, log_level="warning", server_header=False,
                            timeout_keep_alive=30)
    uvicorn.Server(config).run(sockets=[sock])


# --- the driver ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_env(directory: Path, port: int) -> dict[str, str]:
    """The environment of a benchmark broker in `directory` serving on `port` (no
    `BROKER_*` setting of the caller's own leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update({
        "BROKER_DATABASE_URL": f"sqlite:///{directory / 'broker.db'}",
        "BROKER_KEY_DIR": str(directory / "keys"),
        "BROKER_POLICY_DIR": str(PACK),
        "BROKER_ISSUER": f"http://127.0.0.1:{port}",
        "BROKER_ACCESS_TOKEN_TTL_SECONDS": "900",
        "BROKER_REQUEST_RATE_PER_MINUTE": str(10**9),
        "BROKER_RELEASE_BUDGET_PER_HOUR": str(10**9),
        "BROKER_LOG_LEVEL": "WARNING",
        # One pooled connection per thread-pool thread (40) and the appender's: with
        # fewer, overflow connections are opened and closed per request under load.
        "BROKER_DB_POOL_SIZE": os.environ.get("BENCH_POOL", "48"),
    })
    return env


def broker_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "broker", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise SystemExit(f"broker {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


@contextmanager
def servers(which: str, port: int, env: dict[str, str], profile: Path | None = None,
            profile_seconds: int = 0, workers: int = WORKERS
            ) -> Iterator[list[subprocess.Popen[bytes]]]:
    """WORKERS server processes on `port`; with `profile`, the first runs under py-spy."""
    processes = []
    for index in range(workers):
        command = [sys.executable, __file__, "serve", which, str(port)]
        if profile is not None and index == 0:
            command = [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                       "record", "--format", "raw", "--rate", "250", "--nonblocking", "--gil",
                       "--duration", str(profile_seconds), "--output", str(profile),
                       "--", *command]
        processes.append(subprocess.Popen(command, env=env, cwd=REPO,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        wait_ready(f"http://127.0.0.1:{port}", which, processes)
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_ready(url: str, which: str, processes: list[subprocess.Popen[bytes]]) -> None:
    path = "/readyz" if which == "broker" else "/docs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                time.sleep(1.0)  # let the sibling process finish its start-up too
                return
        except httpx.TransportError:
            pass
        if any(p.poll() is not None for p in processes):
            errors = b"".join(p.stderr.read() for p in processes if p.stderr)
            raise SystemExit("a server process died:\n" + errors.decode(errors="replace"))
        time.sleep(0.2)
    raise SystemExit(f"{which} did not become ready")


def days_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).isoformat()


def seed(url: str, env: dict[str, str]) -> dict[str, str]:
    """Clients, signals about one address and one person; the gemeente's headers."""
    def client(org: str, roles: str) -> dict[str, str]:
        made = json.loads(broker_cli(env, "clients", "create", "--org", org, "--name",
                                     f"bench {org}", "--roles", roles, "--json"))
        token = httpx.post(url + "/oauth/token", data={
            "grant_type": "client_credentials", "client_id": made["client_id"],
            "client_secret": made["client_secret"]}, timeout=10).json()["access_token"]
        return {"Authorization": f"Bearer {token}", "X-Acting-User": f"{org}-1"}

    net, politie = client("netbeheerder", "contributor"), client("politie", "contributor")
    location = {"postcode": "3072AB", "house_number": 12, "street": "Kanaalstraat"}
    signals = [
        (net, {"category": "energie-afwijking", "legal_basis": "elektriciteitswet-levering",
               "subject": {"type": "address", "bag_id": BAG}, "location": location,
               "observed_at": days_ago(d), "description": "Verbruik verdrievoudigd",
               "attributes": {"kwh_per_month": 2100 + 200 * d, "meter_seal_broken": True}})
        for d in (3, 40)
    ]
    signals.append((politie, {
        "category": "hennepteelt-vermoeden", "legal_basis": "wpg-art-16",
        "subject": {"type": "address", "bag_id": BAG}, "location": location,
        "observed_at": days_ago(5), "description": "Warmtebeeld afwijkend",
        "attributes": {"bron": "warmtebeeld", "geschat_aantal_planten": 240,
                       "ontmanteld": False}}))
    for days in (1, 9):
        signals.append((politie, {
            "category": "drugsgerelateerde-melding", "legal_basis": "wpg-art-16",
            "subject": {"type": "person", "bsn": BSN, "name": "Sem de Vries",
                        "birthdate": "1990-04-02"},
            "location": {"postcode": "3072AC", "house_number": 3},
            "observed_at": days_ago(days), "description": "Overdracht gezien",
            "attributes": {"soort": "handel", "ernst": "midden"}}))
    for headers, body in signals:
        answer = httpx.post(url + "/v1/signals", json=body, headers=headers, timeout=10)
        assert answer.status_code == 201, answer.text
    return client("gemeente", "requester")


def request_body(query: str) -> dict[str, Any]:
    subject = {"bag_id": BAG} if query == "bag" else {"bsn": BSN}
    return {"purpose": "integrale-controle", "case_reference": "ZAAK-2026-0042",
            "query": {"subject": subject}}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def lua_script(directory: Path, name: str, body: dict[str, Any],
               headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(wrk: str, url: str, script: Path, seconds: float, connections: int
            ) -> dict[str, float]:
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60)
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = {p: float(v) * _UNITS[u] for p, v, u in
               re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)}
    return {"rps": rps, "requests": total, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": 1 if errors else 0, "p50": latency.get("50", 0.0),
            "p90": latency.get("90", 0.0), "p99": latency.get("99", 0.0)}


def audit_count(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_entry").fetchone()[0])


def verify(env: dict[str, str]) -> bool:
    from broker.audit.integrity import verify_live
    from broker.audit.signer import CheckpointSigner
    from broker.db import make_engine
    from broker.keys import load_key_ring
    from broker.settings import Settings

    settings = Settings(database_url=env["BROKER_DATABASE_URL"],
                        key_dir=Path(env["BROKER_KEY_DIR"]), policy_dir=PACK)
    engine = make_engine(settings.database_url)
    try:
        signer = CheckpointSigner(engine, load_key_ring(settings.key_dir), settings)
        return bool(verify_live(engine, signer).ok)
    finally:
        engine.dispose()


# --- profile summary ----------------------------------------------------------------------

# (bucket, [(file path part, function name or "" for any)]). A sample counts for the
# innermost frame of our own code that a bucket names (the wrappers every request passes
# through, routing.py and middleware.py, excepted); failing that, for the innermost
# library frame a bucket names.
OURS: list[tuple[str, list[tuple[str, str]]]] = [
    ("audit entry (encoded in the request, appended by the appender thread)",
     [("broker/audit/", ""), ("broker/core/entry.py", ""), ("broker/core/merkle.py", ""),
      ("broker/db.py", "")]),
    ("token check (ES256 via python-jose)", [("broker/auth/tokens.py", "")]),
    ("client status read", [("broker/auth/clients.py", "")]),
    ("other auth dependencies", [("broker/auth/", ""), ("broker/api/deps.py", "")]),
    ("candidate read (SQL)", [("broker/services/candidates.py", "find"),
                              ("broker/services/candidates.py", "_candidate")]),
    ("decrypt payload", [("broker/sealing.py", "")]),
    ("policy + transforms", [("broker/core/policy/", ""), ("broker/core/transforms.py", "")]),
    ("disclosure service (rest)", [("broker/services/disclosure.py", ""),
                                   ("broker/services/candidates.py", ""),
                                   ("broker/services/purpose_binding.py", ""),
                                   ("broker/services/ratelimit.py", ""),
                                   ("broker/auth/actors.py", ""),
                                   ("broker/api/routes/disclosures.py", "")]),
    ("pack follower, checkpoints", [("broker/services/packs.py", "")]),
]
LIBRARIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("request body parse and validation (pydantic, json)", [("pydantic", ""), ("json/", ""),
                                                            ("broker/api/routing.py", "")]),
    ("SQLAlchemy / sqlite3", [("sqlalchemy/", ""), ("sqlite3", "")]),
    ("HTTP stack (uvicorn, Starlette, FastAPI, anyio, asyncio)", [
        ("fastapi/", ""), ("starlette/", ""), ("uvicorn/", ""), ("anyio/", ""),
        ("httptools", ""), ("uvloop", ""), ("asyncio/", ""), ("broker/api/", "")]),
    ("threads, queues, locks", [("threading.py", ""), ("queue.py", ""),
                                ("concurrent/", "")]),
]
_WRAPPERS = ("broker/api/routing.py", "broker/api/middleware.py")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(:\d+)?\)$")


def _named(frame: str, buckets: list[tuple[str, list[tuple[str, str]]]]) -> str | None:
    match = _FRAME.match(frame)
    func, file = (match.group("func"), match.group("file")) if match else (frame, "")
    for name, needles in buckets:
        if any(part in file and (not want or want == func) for part, want in needles):
            return name
    return None


def _bucket(stack: str) -> str:
    frames = stack.split(";")[::-1]
    for frame in frames:
        if not any(w in frame for w in _WRAPPERS):
            found = _named(frame, OURS)
            if found:
                return found
    for frame in frames:
        found = _named(frame, LIBRARIES)
        if found:
            return found
    return "other"


_START_UP = ("_find_and_load", "open_runtime", "lifespan")


def samples(path: Path) -> Iterator[tuple[str, int]]:
    """(stack, count) from py-spy's raw output, without the process's start-up."""
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if number.isdigit() and not any(marker in stack for marker in _START_UP):
            yield stack, int(number)


def summarise_profile(path: Path) -> list[tuple[str, float]]:
    """Share of the worker's samples per bucket (a sample counts for its innermost known
    frame), from py-spy's raw (collapsed stacks) output."""
    counts: Counter[str] = Counter()
    total = 0
    for stack, number in samples(path):
        counts[_bucket(stack)] += number
        total += number
    return [(name, 100.0 * n / total) for name, n in counts.most_common()] if total else []


def top_functions(path: Path, limit: int = 15) -> list[tuple[str, float]]:
    """Self time per function (the leaf frame), in percent of samples."""
    counts: Counter[str] = Counter()
    total = 0
    for stack, number in samples(path):
        leaf = stack.split(";")[-1]
        counts[re.sub(r":\d+\)$", ")", leaf)] += number
        total += number
    return [(name, 100.0 * n / total) for name, n in counts.most_common(limit)]


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--query", choices=["bag", "bsn"], default="bag")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-out", type=Path,
                        help="with --profile, also keep py-spy's raw samples in this file")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="server processes per app (default 2)")
    parser.add_argument("--grow-seconds", type=float, default=0.0,
                        help="load the broker this long before the rounds, so that they "
                             "run against a log that has grown (90 s appended about "
                             "200,000 entries on 2 cores)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="disclosure-bench-") as tmp:
        directory = Path(tmp)
        broker_port, echo_port = free_port(), free_port()
        env = broker_env(directory, broker_port)
        broker_cli(env, "init")
        broker_url, echo_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{echo_port}"
        body = request_body(args.query)
        with servers("broker", broker_port, env):
            headers = seed(broker_url, env)
        probe_signals = 0
        echo_runs: list[dict[str, float]] = []
        broker_runs: list[dict[str, float]] = []
        broker_script = lua_script(directory, "broker", body, headers)
        echo_script = lua_script(directory, "echo", body, {})
        with servers("broker", broker_port, env, workers=args.workers), \
                servers("echo", echo_port, env, workers=args.workers):
            probe = httpx.post(broker_url + "/v1/disclosures", json=body, headers=headers)
            assert probe.status_code == 200, probe.text
            probe_signals = len(probe.json()["signals"])
            run_wrk(wrk, echo_url + "/echo", echo_script, 2, args.connections)  # warm-up
            run_wrk(wrk, broker_url + "/v1/disclosures", broker_script,
                    max(2.0, args.grow_seconds), args.connections)
            before = audit_count(directory / "broker.db")
            for _ in range(args.rounds):
                echo_runs.append(run_wrk(wrk, echo_url + "/echo", echo_script, args.seconds,
                                         args.connections))
                broker_runs.append(run_wrk(wrk, broker_url + "/v1/disclosures", broker_script,
                                           args.seconds, args.connections))
            time.sleep(0.5)
            appended = audit_count(directory / "broker.db") - before
        profile_path = directory / "worker.txt"
        if args.profile:
            seconds = int(args.seconds) + 4
            with servers("broker", broker_port, env, profile=profile_path,
                         profile_seconds=seconds, workers=args.workers):
                run_wrk(wrk, broker_url + "/v1/disclosures", broker_script, args.seconds,
                        args.connections)
                time.sleep(seconds - args.seconds + 1)
        if args.profile and args.profile_out is not None and profile_path.exists():
            shutil.copyfile(profile_path, args.profile_out)
        verified = verify(env)
        report(args, probe_signals, echo_runs, broker_runs, appended, verified,
               profile_path if args.profile else None, before)


def report(args: argparse.Namespace, signals: int, echo: list[dict[str, float]],
           broker: list[dict[str, float]], appended: int, verified: bool,
           profile: Path | None, grown: int) -> None:
    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    requests = sum(int(r["requests"]) for r in broker)
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, "
          f"{args.rounds} rounds of {args.seconds:g} s, {args.connections} connections, "
          f"{args.workers} workers each, query {args.query} ({signals} signals per answer), "
          f"{grown:,} audit entries in the log when the rounds began")
    print("| server | req/s (median) | p50 ms | p90 ms | p99 ms | non-2xx |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, runs in (("FastAPI echo", echo), ("POST /v1/disclosures", broker)):
        print(f"| {name} | {median(runs, 'rps'):,.0f} | {median(runs, 'p50'):.1f} | "
              f"{median(runs, 'p90'):.1f} | {median(runs, 'p99'):.1f} | "
              f"{sum(int(r['non2xx']) for r in runs)} |")
    ratio = median(broker, "rps") / median(echo, "rps")
    print(f"ratio disclosures/echo: {ratio:.1%} (target >= 25%); "
          f"p99 {median(broker, 'p99'):.1f} ms (target < 50 ms)")
    print(f"rounds (req/s): echo {[round(r['rps']) for r in echo]}, "
          f"broker {[round(r['rps']) for r in broker]}")
    print(f"audit entries appended during the rounds: {appended} for {requests} answers "
          f"(wrk counts completed requests); log verifies: {verified}")
    if profile is not None and profile.exists():
        held = sum(n for _, n in samples(profile))
        print(f"\nprofile of one broker worker: {held} samples holding the GIL at 250 Hz "
              f"over the {args.seconds:g} s of load and its margins")
        print("share of GIL-holding samples (py-spy --gil):")
        for name, share in summarise_profile(profile):
            print(f"  {share:5.1f}%  {name}")
        print("\ntop functions by self time:")
        for name, share in top_functions(profile):
            print(f"  {share:5.1f}%  {name}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
