"""What a running broker holds between requests (settings, engine, keys, live policy, audit
log), and how one is opened.

Built once in the app's lifespan (or by a CLI command) and handed to services
as plain arguments. The live policy is one immutable snapshot swapped in a
single assignment, so a request that took a snapshot finishes on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy import Engine

from broker import migrate
from broker.audit.appender import AuditLog
from broker.audit.guard import GuardFollower
from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.load import Pack, load_pack
from broker.db import is_sqlite, make_engine
from broker.errors import PackInvalid, StartupError
from broker.keys import KeyRing
from broker.services.brakes import SIGN_IN_FAILURES_PER_MINUTE, FailureBrake
from broker.services.budget import ReleaseBudget
from broker.services.ratelimit import AbuseLimits
from broker.settings import Settings

_log = logging.getLogger("broker.runtime")


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
    token_brake: FailureBrake = field(init=False)
    """Failed token requests, shared by every process of the deployment."""
    sign_in_brake: FailureBrake = field(init=False)
    """Failed officer sign-ins, shared alike."""

    def __post_init__(self) -> None:
        self.limits = AbuseLimits(self.settings.request_rate_per_minute,
                                  self.settings.fishing_subjects_per_hour)
        self.budget = ReleaseBudget(self.settings.release_budget_per_hour)
        self.token_brake = FailureBrake(self.engine, lambda: self.keys,
                                        self.settings.token_rate_per_minute)
        self.sign_in_brake = FailureBrake(self.engine, lambda: self.keys,
                                          SIGN_IN_FAILURES_PER_MINUTE)

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


def _folder_pack(settings: Settings) -> Pack:
    try:
        return load_pack(settings.policy_dir)
    except PackInvalid as exc:
        raise StartupError(
            f"policy pack {settings.policy_dir} does not load:\n{describe_pack_problems(exc)}"
        ) from exc


def _starting_pack(engine: Engine, settings: Settings) -> tuple[Pack, bool]:
    """The pack to serve, and whether it is the first of this database (to be recorded):
    the database's live pack, or the folder's on a database that has none."""
    from broker.services import packs

    with engine.connect() as conn:
        newest, stored = packs.starting_pack(conn)
    if newest is None:
        return _folder_pack(settings), True
    if stored is None:
        raise StartupError(f"the live policy pack {newest} in the database does not load "
                           "with this broker; load one that does with `broker policy load`")
    if settings.policy_dir.is_dir():
        try:
            folder = load_pack(settings.policy_dir).hash
        except PackInvalid:
            folder = "a pack that does not load"
        if folder != newest:
            _log.info("the policy folder holds another pack; this process follows the "
                      "database's live pack", extra={"event": "policy_folder_differs",
                                                     "hash": newest, "folder_hash": folder})
    return stored, False


def open_runtime(settings: Settings) -> Runtime:
    """Load and check everything the broker needs; StartupError with a clear message if not."""
    # The services build on the runtime's types, so they are imported when one is opened.
    from broker.services import keyring, packs
    from broker.services.rotation import KeyFollower

    engine = make_engine(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )
    try:
        migrate.require_head(engine)
        keys = keyring.open_ring(engine, settings).ring
        pack, first = _starting_pack(engine, settings)
        audit = AuditLog(engine, keys, settings)
        audit.start()
        runtime = Runtime(settings, engine, keys, packs.live(pack), audit)
        try:
            if first:
                packs.record_first(runtime)
        except BaseException:
            audit.close()
            raise
    except BaseException:
        engine.dispose()
        raise
    # A policy reload or a key rotation made through another process reaches this one.
    for follower in (packs.PackFollower(runtime, settings.policy_follow_seconds),
                     KeyFollower(runtime),
                     GuardFollower(runtime.audit.guard, settings.audit_check_seconds)):
        follower.start()
        runtime.closers.append(follower.stop)
    return runtime
