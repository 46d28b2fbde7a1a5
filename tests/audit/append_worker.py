"""A process that appends audit entries from several threads until it is killed.

Each seq is printed (and flushed) only once `record` returned, that is once the entry is
durable; the SIGKILL test holds the log to every line printed. Checkpoints are signed
often, so a kill may also land in the middle of one.

Usage: python -m tests.audit.append_worker DATABASE_URL KEY_DIR STATE_FILE
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from broker.audit.appender import AuditLog
from broker.audit.signer import CheckpointSigner
from broker.db import make_engine
from broker.keys import load_key_ring
from broker.settings import Settings
from tests.audit.audit_kit import ORIGIN, draft

THREADS = 8


def main(url: str, key_dir: str, state: str) -> None:
    settings = Settings(
        database_url=url, key_dir=Path(key_dir), audit_origin=ORIGIN,
        checkpoint_key_name=ORIGIN, checkpoint_every_entries=25, checkpoint_every_seconds=0.05,
    )
    keys = load_key_ring(settings.key_dir)
    engine = make_engine(url)
    signer = CheckpointSigner(engine, keys, settings, state_path=Path(state))
    log = AuditLog(engine, keys, settings, signer=signer)
    log.start()
    out = sys.stdout
    lock = threading.Lock()

    def loop(worker: int) -> None:
        number = 0
        while True:
            seq = log.record(draft(worker * 1_000_000 + number)).seq
            number += 1
            with lock:
                out.write(f"{seq}\n")
                out.flush()

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(*sys.argv[1:4])
