"""Server processes for the end-to-end tests: started, awaited until ready, stopped."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def serving(command: Sequence[str], env: Mapping[str, str], url: str, log_path: Path,
            *, timeout: float = 30.0) -> Iterator[None]:
    """Run `command` from the repository (its output to `log_path`) until the block ends,
    entering it once `url` answers `/readyz` with 200; the log is in the error when the
    server exits or is not ready within `timeout` seconds."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(list(command), env=dict(env), cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not _ready(url):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("the server did not become ready:\n"
                                         + log_path.read_text(errors="replace"))
                time.sleep(0.2)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
