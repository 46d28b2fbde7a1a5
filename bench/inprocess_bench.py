"""Disclosures and the bare echo inside one process, without HTTP: CPU time or instructions.

The HTTP benchmark (`disclosure_bench.py`) measures what partners see, but on a shared
machine its figures move by a factor of two or three from one hour to the next. This one
drives each app directly: 32 concurrent ASGI calls on uvloop, the same request bodies and
headers as the HTTP benchmark, on the same seeded broker (SQLite, WAL, synchronous=FULL,
the demo pack), and measures

- CPU per request, from the process's and its threads' `/proc` counters (`--mode cpu`);
- instructions per request, under valgrind's callgrind, counted only while the measured
  requests run (`--mode instructions`): the same count from run to run whatever else the
  machine does, so two versions of the code compare in one run each.

Both leave out HTTP parsing and the socket, which the two apps share; checkpoint
signatures are left out too (they come every 1,000 entries; "Audit proofs and
verification" times them). The ratio of echo to broker is an upper bound for the ratio
over HTTP from the same code, where the two-worker setting adds its own costs.

Run: .venv/bin/python bench/inprocess_bench.py [--mode cpu|instructions] [--requests N]
     [--query bag|bsn]   (instructions: valgrind, Debian's package; about 5 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import disclosure_bench as http_bench  # noqa: E402

CONCURRENCY = 32
WARM_UP = 500
QUIET = {
    # Checkpoints are not part of the request: keep them out of the measured window.
    "BROKER_CHECKPOINT_EVERY_ENTRIES": str(10**9),
    "BROKER_CHECKPOINT_EVERY_SECONDS": str(10**6),
}


def prepare(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A seeded broker in `directory`: its environment and the gemeente's headers."""
    port = http_bench.free_port()
    env = http_bench.broker_env(directory, port)
    http_bench.broker_cli(env, "init")
    with http_bench.servers("broker", port, env, workers=1):
        headers = http_bench.seed(f"http://127.0.0.1:{port}", env)
    return {**env, **QUIET}, headers


# --- the child: one app, driven in process ------------------------------------------------


def _thread_ticks() -> int:
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _callgrind(switch: str) -> None:
    if os.environ.get("INPROCESS_CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True,
                       capture_output=True)


async def drive(which: str, headers: dict[str, str], body: bytes, requests: int
                ) -> dict[str, Any]:
    if which == "echo":
        app, path = http_bench.echo_app(), "/echo"
    else:
        from broker.app import create_app

        app, path = create_app(), "/v1/disclosures"
    head = [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")]
    head += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    statuses: dict[int, int] = {}

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "headers": head,
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await events.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                          "state": {}}, events.get, answers.put))
    started = await answers.get()
    assert started["type"] == "lifespan.startup.complete", started
    left = [0]

    async def caller() -> None:
        while left[0] > 0:
            left[0] -= 1
            await one()

    left[0] = WARM_UP
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    statuses.clear()
    left[0] = requests
    _callgrind("on")
    ticks, wall = _thread_ticks(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    wall, ticks = time.perf_counter() - wall, _thread_ticks() - ticks
    _callgrind("off")
    await events.put({"type": "lifespan.shutdown"})
    await answers.get()
    await lifespan
    return {"statuses": statuses, "cpu_us": ticks / os.sysconf("SC_CLK_TCK") / requests * 1e6,
            "wall_us": wall / requests * 1e6}


def child(which: str, requests: int, query: str) -> None:
    import uvloop

    headers = json.loads(os.environ["INPROCESS_HEADERS"])
    body = json.dumps(http_bench.request_body(query)).encode()
    result = uvloop.run(drive(which, headers, body, requests))
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: prepare, run each app, report --------------------------------------------


def run(which: str, env: dict[str, str], headers: dict[str, str], args: argparse.Namespace,
        directory: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", which, "--requests", str(args.requests),
               "--query", args.query]
    child_env = {**env, "INPROCESS_HEADERS": json.dumps(headers)}
    out_file = directory / f"callgrind.{which}.out"
    if args.mode == "instructions":
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            raise SystemExit("--mode instructions needs valgrind (apt-get install valgrind)")
        command = [valgrind, "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out_file}", *command]
        child_env["INPROCESS_CALLGRIND"] = "1"
    done = subprocess.run(command, env=child_env, cwd=BENCH.parent, capture_output=True,
                          text=True, check=False)
    found = re.search(r"^RESULT (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{which} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(found.group(1))
    if result["statuses"] != {"200": args.requests}:
        raise SystemExit(f"{which}: answers other than 200: {result['statuses']}")
    if args.mode == "instructions":
        counted = re.search(r"Collected : (\d+)", done.stderr)
        if counted is None:
            raise SystemExit(f"{which}: callgrind reported no count:\n{done.stderr[-2000:]}")
        result["instructions"] = int(counted.group(1)) / args.requests
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cpu", "instructions"], default="cpu")
    parser.add_argument("--requests", type=int, default=0,
                        help="measured requests per app (default: 5,000 for cpu, 400 under "
                             "callgrind)")
    parser.add_argument("--query", choices=["bag", "bsn"], default="bag")
    parser.add_argument("--child", choices=["broker", "echo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.requests:
        args.requests = 400 if args.mode == "instructions" or args.child else 5000
    if args.child:
        child(args.child, args.requests, args.query)
        return
    directory = Path(tempfile.mkdtemp(prefix="sluis-inprocess-"))
    try:
        env, headers = prepare(directory)
        results = {which: run(which, env, headers, args, directory)
                   for which in ("echo", "broker")}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    unit = "instructions" if args.mode == "instructions" else "cpu_us"
    label = "instructions per request" if unit == "instructions" else "CPU µs per request"
    print(f"in process, {CONCURRENCY} concurrent calls, {args.requests} measured requests "
          f"per app, query {args.query}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores")
    print(f"| app | {label} |")
    print("| --- | --- |")
    for which, name in (("echo", "FastAPI echo"), ("broker", "POST /v1/disclosures")):
        print(f"| {name} | {results[which][unit]:,.0f} |")
    ratio = results["echo"][unit] / results["broker"][unit]
    print(f"echo / disclosure: {ratio:.1%} (the HTTP target is 25% of the echo's rate)")


if __name__ == "__main__":
    main()
