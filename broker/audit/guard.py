"""Fail closed on a log that is behind or forked.

A node remembers the newest checkpoint it signed or saw (the signer's state file, apart
from the database). When the log in the database holds fewer entries than that, or a
history that does not extend it (a database restored from an older backup, or rewritten),
or fewer entries than its own stored checkpoints sign, the guard names the problem: the
appender then refuses every accountable act (503 `audit_log_untrusted`), `/readyz` is not
ready, `sluis_audit_healthy` is 0, and nothing is signed. The guard looks when the log is
opened and then every few seconds; a checkpoint another node signed, that verifies and
extends the remembered one, becomes the remembered one, so every node knows how far the
deployment's log has come. Recovery is described in docs/operations.md.
"""

from __future__ import annotations

import logging

from broker.audit.signer import (
    CheckpointRefused,
    CheckpointSigner,
    continuity_problem,
    latest_checkpoint,
)
from broker.audit.tables import TreeDamaged, stored_root, tree_size
from broker.core.checkpoint import CheckpointInvalid, open_checkpoint
from broker.db import read_snapshot
from broker.errors import AuditUnavailable
from broker.follower import Follower

_log = logging.getLogger("broker.audit")


class LogUntrusted(AuditUnavailable):
    """The log is behind or forked against a checkpoint already signed or seen."""

    code = "audit_log_untrusted"
    title = "Audit log behind or forked"


class LogGuard:
    """The verdict on the log: `problem` None while it extends everything signed or seen."""

    def __init__(self, signer: CheckpointSigner) -> None:
        self._signer = signer
        self.problem: str | None = None
        self.floor = 0
        """The size of the newest checkpoint remembered: the log may not hold fewer."""

    def refuse(self) -> None:
        """Raise `LogUntrusted` while the log is behind or forked."""
        if self.problem is not None:
            raise LogUntrusted(
                f"The audit log is behind or forked: {self.problem}. Accountable acts are "
                "refused until an operator restores it (see the operations guide)."
            )

    def check(self) -> str | None:
        """Look at the log now; returns (and keeps) the problem, or None."""
        try:
            problem = self._problem()
        except CheckpointRefused as exc:
            problem = exc.detail
        except TreeDamaged as exc:
            problem = f"the log's tree is damaged: {exc}"
        if problem != self.problem:
            if problem is None:
                _log.warning("audit log trusted again", extra={"event": "audit_log_trusted"})
            else:
                _log.error("audit log behind or forked: accountable acts are refused",
                           extra={"event": "audit_log_untrusted"})
        self.problem = problem
        return problem

    def _problem(self) -> str | None:
        signer = self._signer
        state = signer.remembered()
        with read_snapshot(signer.engine) as conn:
            size = tree_size(conn)
            latest = latest_checkpoint(conn)
            problem = continuity_problem(conn, state, signer.origin, size,
                                         stored_root(conn, size))
            if problem is None and latest is not None and latest.size > size:
                problem = (f"the database's checkpoints sign {latest.size} entries, the log "
                           f"holds {size}: entries were removed")
            seen = None
            if (problem is None and latest is not None
                    and (state is None or latest.size > state.size)
                    and stored_root(conn, latest.size) == latest.root
                    and continuity_problem(conn, state, signer.origin, latest.size,
                                           latest.root) is None):
                seen = latest
        self.floor = state.size if state is not None else 0
        if seen is not None and self._verifies(seen.note):
            signer.remember_seen(seen.size, seen.root, seen.time)
            self.floor = seen.size
        return problem

    def _verifies(self, note: str) -> bool:
        try:
            open_checkpoint(note, self._signer.verifiers(), self._signer.origin)
        except CheckpointInvalid:
            return False
        return True


class GuardFollower(Follower):
    """Runs the guard every `audit_check_seconds`: a log restored or rewritten under a
    running process is refused within that time (its next append at once)."""

    name = "audit-guard"

    def __init__(self, guard: LogGuard, interval: float) -> None:
        super().__init__(interval)
        self._guard = guard

    def step(self) -> None:
        self._guard.check()

    def trouble(self, error: Exception) -> None:
        _log.warning("could not check the audit log", extra={"error_type": type(error).__name__})
