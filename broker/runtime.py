"""What a running broker holds between requests (settings, engine, keys, live policy, audit
log), and how one is opened.

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

from broker import migrate
from broker.audit.appender import AuditLog
from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.load import Pack, load_pack
from broker.db import is_sqlite, make_engine
from broker.errors import PackInvalid, StartupError
from broker.keys import KeyRing, load_key_ring
from broker.services.budget import ReleaseBudget
from broker.services.ratelimit import AbuseLimits
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
    limits: AbuseLimits = field(init=False)
    """The request rate and fishing limits of this process."""
    budget: ReleaseBudget = field(init=False)
    """The released-signal budgets of this process's clients and acting persons."""

    def __post_init__(self) -> None:
        self.limits = AbuseLimits(self.settings.request_rate_per_minute,
                                  self.settings.fishing_subjects_per_hour)
        self.budget = ReleaseBudget(self.settings.release_budget_per_hour)

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



def describe_pack_problems(exc: PackInvalid) -> str:
    lines = [exc.detail] + [f"  {'/'.join(map(str, p.loc))}: {p.msg}" for p in exc.errors]
    return "\n".join(lines)


def open_runtime(settings: Settings) -> Runtime:
    """Load and check everything the broker needs; StartupError with a clear message if not."""
    # The services build on the runtime's types, so they are imported when one is opened.
    from broker.services import packs
    from broker.services.rotation import KeyFollower

    keys = load_key_ring(settings.key_dir)
    try:
        pack = load_pack(settings.policy_dir)
    except PackInvalid as exc:
        raise StartupError(
            f"policy pack {settings.policy_dir} does not load:\n{describe_pack_problems(exc)}"
        ) from exc
    engine = make_engine(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )
    try:
        migrate.require_head(engine)
        audit = AuditLog(engine, keys, settings)
        audit.start()
        runtime = Runtime(settings, engine, keys, packs.live(pack), audit)
        try:
            packs.ensure_recorded(runtime)
        except BaseException:
            audit.close()
            raise
    except BaseException:
        engine.dispose()
        raise
    # A policy reload or a key rotation made through another process reaches this one.
    for follower in (packs.PackFollower(runtime, settings.policy_follow_seconds),
                     KeyFollower(runtime)):
        follower.start()
        runtime.closers.append(follower.stop)
    return runtime
