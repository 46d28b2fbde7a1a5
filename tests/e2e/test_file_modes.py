"""The data directory as `broker init` and `broker serve` leave it: the owner's only.

The database holds client secret hashes, case references and the map of refs to signals,
so neither it nor its -wal and -shm files may be readable by another local user, whatever
the operator's umask; `broker serve` refuses a database that is. SQLite only: a
PostgreSQL database lives in its server's own data directory.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.serving import free_port, serving

REPO = Path(__file__).resolve().parents[2]
PERMISSIVE = 0o022  # a common default umask: files 644, folders 755


def environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update({
        "BROKER_DATABASE_URL": f"sqlite:///{data / 'broker.db'}",
        "BROKER_KEY_DIR": str(data / "keys"),
        "BROKER_POLICY_DIR": str(REPO / "policies" / "ondermijning"),
    })
    return env


def broker(env: dict[str, str], *args: str, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          umask=PERMISSIVE)


@contextmanager
def permissive_umask() -> Iterator[None]:
    """The test process's umask (which `serving` passes on) set to a permissive one."""
    previous = os.umask(PERMISSIVE)
    try:
        yield
    finally:
        os.umask(previous)


def modes(data: Path) -> dict[str, int]:
    """The permission bits of the data directory and of everything in it."""
    found = {".": stat.S_IMODE(data.stat().st_mode)}
    for path in sorted(data.rglob("*")):
        found[str(path.relative_to(data))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_init_creates_the_data_directory_and_database_for_the_owner_only(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = environment(data)
    result = broker(env, "init")
    assert result.returncode == 0, result.stderr
    found = modes(data)
    assert found["."] == 0o700
    assert found["broker.db"] == 0o600
    assert found["keys"] == 0o700
    assert {name: mode for name, mode in found.items() if mode & 0o077} == {}


def test_serve_keeps_every_file_it_makes_for_the_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = environment(data)
    assert broker(env, "init").returncode == 0
    port = free_port()
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port)]
    with permissive_umask(), serving(command, env, f"http://127.0.0.1:{port}",
                                     tmp_path / "serve.log"):
        found = modes(data)  # with the server's connections open, -wal and -shm exist
    assert {"broker.db", "broker.db-wal", "broker.db-shm"} <= set(found)
    assert {name: mode for name, mode in found.items() if mode & 0o077} == {}


@pytest.mark.parametrize(("suffix", "mode"), [
    pytest.param("", 0o644, id="db-644"), pytest.param("", 0o640, id="db-640"),
    pytest.param("-wal", 0o604, id="wal-604"), pytest.param("-shm", 0o644, id="shm-644")])
def test_serve_refuses_a_database_file_others_may_read(
    tmp_path: Path, suffix: str, mode: int
) -> None:
    data = tmp_path / "data"
    env = environment(data)
    assert broker(env, "init").returncode == 0
    exposed = data / f"broker.db{suffix}"
    exposed.touch()
    os.chmod(exposed, mode)
    result = broker(env, "serve", "--port", str(free_port()), timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"broker: database file {exposed} is open to other users (mode {mode:o}); it must "
        f"be readable by its owner only (chmod 600 {exposed})\n")
    assert result.stdout == ""
    if suffix:
        return
    os.chmod(exposed, 0o600)  # as the message says: then it serves
    port = free_port()
    with serving([sys.executable, "-m", "broker", "serve", "--port", str(port)], env,
                 f"http://127.0.0.1:{port}", tmp_path / "serve.log"):
        pass
