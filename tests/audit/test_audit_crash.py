"""SIGKILL during appends: nothing a caller was told is durable goes missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from tests.audit.audit_kit import LogEnv, draft

MakeLog = Callable[..., LogEnv]
REPO = Path(__file__).resolve().parents[2]


def run_and_kill(url: str, key_dir: Path, state: Path, after: float) -> list[int]:
    """Start the appending process, SIGKILL it `after` seconds past its first durable entry,
    and return every seq it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.audit.append_worker", url, str(key_dir), str(state)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[bytes] = []
    first = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert first.wait(60), process.stderr.read().decode() if process.stderr else ""
        time.sleep(after)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        reader.join(30)
        if process.stderr:
            process.stderr.close()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    # A line cut in half by the kill was never complete, so never a promise.
    return [int(line) for line in lines if line.endswith(b"\n")]


def test_a_killed_appender_loses_no_durable_entry(make_log: MakeLog, key_dir: Path) -> None:
    env = make_log()
    state = env.signer.state_path
    promised: list[int] = []
    for after in (0.3, 0.8):
        promised += run_and_kill(env.url, key_dir, state, after)
    assert len(promised) > 20
    assert len(set(promised)) == len(promised)
    with env.engine.connect() as conn:
        stored = set(conn.execute(text("SELECT seq FROM audit_entry")).scalars())
    assert set(promised) <= stored
    report = env.verify()
    assert report.ok, report.problems
    # A new appender carries on where the killed ones stopped, and signing still works.
    env.log.start()
    assert env.log.record(draft(1)).seq == report.size
    env.signer.sign()
    assert env.verify().ok
