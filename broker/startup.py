"""Opening a broker: key ring, database at head, live policy pack, audit appender."""

from __future__ import annotations

from broker import migrate, packs
from broker.audit.store import AuditLog
from broker.db import make_engine
from broker.errors import PackInvalid, StartupError
from broker.keys import load_key_ring
from broker.policy.load import load_pack
from broker.rotation import KeyFollower
from broker.runtime import Runtime
from broker.settings import Settings


def describe_pack_problems(exc: PackInvalid) -> str:
    lines = [exc.detail] + [f"  {'/'.join(map(str, p.loc))}: {p.msg}" for p in exc.errors]
    return "\n".join(lines)


def open_runtime(settings: Settings) -> Runtime:
    """Load and check everything the broker needs; StartupError with a clear message if not."""
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
