"""A throwaway PostgreSQL cluster for tests and benchmarks.

Uses the server binaries of the machine (`BROKER_PG_BINDIR`, default
`/usr/lib/postgresql/15/bin`). PostgreSQL refuses to run as root, so when we
are root the cluster is created and run as the unprivileged `nobody` user in
a fresh directory under the system temp folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"
PORT_ATTEMPTS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    directory: Path
    port: int
    bindir: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.directory,
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(*, fsync: bool = False) -> Cluster:
    """Create and start a cluster on a free loopback port; trust authentication."""
    bindir = Path(os.environ.get("BROKER_PG_BINDIR", DEFAULT_BINDIR))
    if not (bindir / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL server binaries not found in {bindir}; set BROKER_PG_BINDIR "
            "or BROKER_TEST_POSTGRES_URL"
        )
    directory = Path(tempfile.mkdtemp(prefix="sluis-pg-"))
    user = "nobody" if os.geteuid() == 0 else None
    if user:
        shutil.chown(directory, user=user)
    os.chmod(directory, 0o700)
    cluster = Cluster(directory, _free_port(), bindir, user)
    cluster._run(
        "initdb",
        "-D",
        str(directory / "data"),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-sync",
        "--locale=C",
    )
    # Another process (a parallel test worker) may take the port between our choice and
    # the server's bind; then the server exits, and we try another free port.
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            _start(cluster, fsync=fsync)
            break
        except subprocess.CalledProcessError:
            if attempt == PORT_ATTEMPTS:
                log = directory / "log"
                detail = log.read_text(errors="replace") if log.exists() else ""
                cluster.stop()
                raise RuntimeError("PostgreSQL did not start:\n" + detail) from None
            cluster.port = _free_port()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", cluster.port)) == 0:
                return cluster
        time.sleep(0.1)
    cluster.stop()
    raise RuntimeError("PostgreSQL did not start")


def _start(cluster: Cluster, *, fsync: bool) -> None:
    options = f"-h 127.0.0.1 -p {cluster.port} -k {cluster.directory} -c max_connections=300"
    if not fsync:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    cluster._run(
        "pg_ctl",
        "-D",
        str(cluster.directory / "data"),
        "-o",
        options,
        "-l",
        str(cluster.directory / "log"),
        "-w",
        "-t",
        "60",
        "start",
    )
