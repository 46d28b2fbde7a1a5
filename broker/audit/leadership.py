"""Which process of a deployment signs the log's checkpoints: one at a time.

On PostgreSQL, the signer is the process that holds a session-level advisory lock, taken
on a connection kept for the purpose (outside the pool, so closing it ends the session and
frees the lock). When the leader dies its session ends, and the next process that is due
to sign takes the lock: within one checkpoint period. On SQLite every process of the one
machine may sign, serialised by the signer's lock file as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Final

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from broker.db import is_sqlite

SIGNER_LOCK_KEY: Final = 0x5A1D_5164
"""The session-level advisory lock of the one signer."""

_log = logging.getLogger("broker.audit")


class SignerLeadership:
    """Whether this process is the deployment's signer, taking the role when it is free."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._everyone = is_sqlite(engine)
        self._conn: Connection | None = None
        self._mutex = threading.Lock()

    def held(self) -> bool:
        """True while this process signs: it holds the lock (checked on its connection) or
        has just taken it. False when another process holds it or the database is away."""
        if self._everyone:
            return True
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.exec_driver_sql("SELECT 1")
                    self._conn.commit()
                    return True
                except DBAPIError:
                    _log.warning("signer leadership lost with its connection")
                    self._drop()
            return self._take()

    def _take(self) -> bool:
        try:
            conn = self._engine.connect()
        except DBAPIError:
            return False
        try:
            conn.detach()  # its own session: closing it frees the lock
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                      {"key": SIGNER_LOCK_KEY}).scalar())
            conn.commit()
        except DBAPIError:
            conn.close()
            return False
        if not taken:
            conn.close()
            return False
        self._conn = conn
        _log.info("this process signs the log's checkpoints", extra={"event": "signer_leader"})
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(DBAPIError):
                conn.close()

    def release(self) -> None:
        """Give the role up (at close): another process takes it when it is due to sign."""
        with self._mutex:
            self._drop()
