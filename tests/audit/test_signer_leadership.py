"""One signer at a time (docs/operations.md "Leader take-over"): on PostgreSQL only the
process holding the signer's advisory lock signs, another takes over when its session
ends; on either database a stored checkpoint never shrinks or forks the log."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from broker.audit.signer import latest_checkpoint
from broker.db import is_sqlite
from tests.audit.audit_kit import LogEnv

MakeLog = Callable[..., LogEnv]


def test_one_process_signs_and_another_takes_over_when_it_dies(make_log: MakeLog) -> None:
    leader, other = make_log(state="a"), make_log(state="b")
    if is_sqlite(leader.engine):
        pytest.skip("on SQLite the one machine's processes share the signer's lock file")
    leader.fill(6)
    assert leader.signer.sign_at(3) is not None  # the first due signer takes the role
    assert other.signer.sign_at(6) is None  # the role is taken: nothing signed
    assert other.signer.leadership.held() is False
    # The leader's session ends (its process died, its connection was cut).
    with leader.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_locks "
                          "WHERE locktype = 'advisory' AND objid = :key AND granted"),
                     {"key": 0x5A1D_5164 & 0xFFFF_FFFF})
    taken = other.signer.sign_at(6)
    assert taken is not None and taken.size == 6
    assert leader.signer.leadership.held() is False  # it lost the role with its session
    assert leader.signer.sign_at(6) is None
    with other.engine.connect() as conn:
        assert latest_checkpoint(conn).size == 6  # type: ignore[union-attr]
    assert other.verify().ok


def test_the_database_refuses_a_checkpoint_that_shrinks_or_forks_the_log(
    make_log: MakeLog,
) -> None:
    env = make_log()
    env.fill(5)
    five = env.signer.sign()
    for size, root in ((4, five.root), (5, bytes(32))):
        with pytest.raises(DBAPIError, match="grows only"), env.engine.begin() as conn:
            conn.execute(text("INSERT INTO audit_checkpoint (size, root_hash, time, note) "
                              "SELECT :n, :r, time, note FROM audit_checkpoint"),
                         {"n": size, "r": root})
    assert env.scalar("SELECT count(*) FROM audit_checkpoint") == 1
    # The same head signed again (a rotated key) and a larger one are stored.
    with env.engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_checkpoint (size, root_hash, time, note) "
                          "SELECT size, root_hash, time, note FROM audit_checkpoint"))
    env.fill(1, start=5)
    assert env.signer.sign().size == 6
