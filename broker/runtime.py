"""What a running broker holds between requests: settings, engine, keys, live policy, audit log.

Built once in the app's lifespan (or by a CLI command) and handed to services
as plain arguments. The live policy is one immutable snapshot swapped in a
single assignment, so a request that took a snapshot finishes on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy import Engine

from broker.audit.store import AuditLog
from broker.db import is_sqlite
from broker.keys import KeyRing
from broker.policy.evaluate import CompiledPolicy
from broker.policy.load import Pack
from broker.settings import Settings


@dataclass(frozen=True)
class LivePolicy:
    """One loaded pack and its compiled index; never mutated."""

    pack: Pack
    compiled: CompiledPolicy
    loaded_at: datetime


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    keys: KeyRing
    policy: LivePolicy
    audit: AuditLog
    started_at: datetime = field(default_factory=datetime.now)
    closers: list[Callable[[], None]] = field(default_factory=list)

    @cached_property
    def local_reads(self) -> bool:
        """Whether reads are local file reads (SQLite) rather than network round trips:
        short reads then run on the event loop instead of in the thread pool."""
        return is_sqlite(self.engine)

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.audit.close()
        self.engine.dispose()
