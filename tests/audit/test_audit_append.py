"""The appender: numbering, canonical bytes, subject tags, work in the same transaction,
group commit under concurrency, several appenders on one log, and failing closed."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from broker.audit.appender import AuditLog
from broker.audit.encoding import pre_encode
from broker.audit.pending import Pending
from broker.audit.signer import LOCK_FILE
from broker.clock import utcnow
from broker.core.entry import decode_entry, subject_tag
from broker.core.merkle import leaf_hash
from broker.db import writer_lock
from broker.errors import AuditUnavailable
from broker.models import policy_version
from tests.audit.audit_kit import ORIGIN, LogEnv, draft, inserts_refused

MakeLog = Callable[..., LogEnv]


def store_policy(hash_: str) -> Callable[[Connection], str]:
    """A unit of work writing one row of an ordinary table (the request's own write)."""

    def work(conn: Connection) -> str:
        conn.execute(
            text(
                "INSERT INTO policy_version (hash, pack, version, canonical, first_loaded_at) "
                "VALUES (:h, 'demo', '1', '{}', :t)"
            ),
            {"h": hash_, "t": utcnow()},
        )
        return hash_

    return work


def policy_rows(env: LogEnv) -> int:
    return int(env.scalar("SELECT count(*) FROM policy_version"))


def entry_count(env: LogEnv) -> int:
    return int(env.scalar("SELECT count(*) FROM audit_entry"))


def test_entries_are_numbered_from_zero_and_stored_as_canonical_bytes(make_log: MakeLog) -> None:
    env = make_log()
    recorded = [env.log.record(draft(i, org="gemeente", source="politie")) for i in range(3)]
    assert [r.seq for r in recorded] == [0, 1, 2]
    for r in recorded:
        data, leaf = env.row(r.seq)
        entry = decode_entry(data)  # re-encodes with rfc8785: the bytes are canonical
        assert (entry.seq, entry.id, entry.origin, entry.v) == (r.seq, r.entry_id, env.log.signer
                                                                 .origin, 1)
        assert entry.time.endswith("Z")
        assert leaf == leaf_hash(data)
    with env.engine.connect() as conn:
        orgs = conn.execute(text("SELECT org FROM audit_entry_org WHERE seq = 1 ORDER BY org"))
        assert orgs.scalars().all() == ["gemeente", "politie"]
        clear = conn.execute(text("SELECT action, org, purpose FROM audit_entry WHERE seq = 1"))
        assert tuple(clear.one()) == ("disclosure", "gemeente", "integrale-controle")
    assert env.verify().ok


def test_subjects_become_per_entry_tags_and_side_index_rows(make_log: MakeLog) -> None:
    env = make_log()
    token_a, token_b = b"blind-token-a" * 2, b"blind-token-b" * 2
    first = draft(1)
    first["items"][0]["subjects"] = [token_a]
    one = env.log.record(first, subjects=[token_a, token_b])
    two = env.log.record(draft(2), subjects=[token_a])
    with env.engine.connect() as conn:
        keys: dict[bytes, bytes] = {
            bytes(t): bytes(k)
            for t, k in conn.execute(text("SELECT token, subject_key FROM audit_subject"))
        }
        index = set(conn.execute(text("SELECT token, seq FROM audit_subject_entry")).all())
    assert set(keys) == {token_a, token_b}
    assert index == {(token_a, 0), (token_b, 0), (token_a, 1)}
    entry_one = decode_entry(env.row(one.seq)[0])
    entry_two = decode_entry(env.row(two.seq)[0])
    tag_a1 = subject_tag(keys[token_a], one.entry_id)
    assert entry_one.items[0].subject_tags == [tag_a1]
    # A subject outside every item is tagged under objects.
    assert entry_one.objects["subject_tags"] == [subject_tag(keys[token_b], one.entry_id)]
    assert entry_two.objects["subject_tags"] == [subject_tag(keys[token_a], two.entry_id)]
    assert tag_a1 not in env.row(two.seq)[0].decode()  # tags differ per entry: not linkable
    for data in (env.row(0)[0], env.row(1)[0]):
        assert b"blind-token" not in data
    # Erasing the subject deletes its key and index rows; the log still verifies.
    with env.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_subject_entry WHERE token = :t"), {"t": token_a})
        conn.execute(text("DELETE FROM audit_subject WHERE token = :t"), {"t": token_a})
    assert env.verify().ok


def test_work_runs_in_the_entrys_transaction_and_its_result_comes_back(make_log: MakeLog) -> None:
    env = make_log()
    recorded = env.log.record(draft(1), work=store_policy("sha256:a"))
    assert recorded.result == "sha256:a"
    assert policy_rows(env) == 1
    assert entry_count(env) == 1


def test_a_work_that_raises_leaves_nothing(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(2)

    def failing(conn: Connection) -> None:
        store_policy("sha256:b")(conn)
        raise LookupError("no such signal")

    with pytest.raises(LookupError, match="no such signal"):
        env.log.record(draft(9), work=failing, subjects=[b"subject-token-x"])
    assert policy_rows(env) == 0
    assert entry_count(env) == 2
    assert env.scalar("SELECT count(*) FROM audit_subject") == 0
    assert env.log.record(draft(10)).seq == 2
    assert env.verify().ok


def test_drafts_may_not_fill_what_the_appender_fills(make_log: MakeLog) -> None:
    env = make_log()
    with pytest.raises(ValueError, match="the appender fills seq"):
        env.log.record({**draft(1), "seq": 7})
    with pytest.raises(ValueError, match="validation error"):
        env.log.record({**draft(1), "action": "not-an-action"})
    env.log.start()
    with pytest.raises(TypeError, match="subject tokens"):
        env.log.record(draft(1), subjects=["111222333"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="mappings"):
        env.log.record({**draft(1), "items": ["sig_1"]})
    assert entry_count(env) == 0
    assert env.log.record(draft(2)).seq == 0


@pytest.mark.parametrize("threaded", [False, True])
def test_an_append_failure_is_audit_unavailable_and_writes_nothing(
    make_log: MakeLog, threaded: bool
) -> None:
    env = make_log()
    env.fill(1)  # the next entry (seq 1) completes node (1, 0)
    with inserts_refused(env.engine, "audit_node"):
        if threaded:
            env.log.start()
        with pytest.raises(AuditUnavailable):
            env.log.record(draft(1), work=store_policy("sha256:c"))
        assert policy_rows(env) == 0
        assert entry_count(env) == 1
        assert env.log.healthy  # the database answers: the next append may succeed
    assert env.log.record(draft(2), work=store_policy("sha256:d")).seq == 1
    assert policy_rows(env) == 1
    assert env.verify().ok


def test_a_batch_isolates_each_units_failure(make_log: MakeLog) -> None:
    """Units queued behind a slow one are appended as one batch; a failing work there
    drops only its own entry, and the others stay gap-free."""
    env = make_log()
    env.log.start()
    release = threading.Event()
    results: dict[int, Any] = {}

    def slow(conn: Connection) -> None:
        release.wait(10)

    def failing(conn: Connection) -> None:
        store_policy("sha256:fail")(conn)
        raise KeyError("refused")

    def call(number: int) -> None:
        work = failing if number % 3 == 0 else store_policy(f"sha256:{number}")
        try:
            results[number] = env.log.record(draft(number), work=work).seq
        except KeyError as exc:
            results[number] = exc

    first = threading.Thread(target=lambda: env.log.record(draft(0), work=slow))
    first.start()
    time.sleep(0.2)  # the appender now holds the slow unit's transaction
    callers = [threading.Thread(target=call, args=(n,)) for n in range(1, 13)]
    for thread in callers:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in [first, *callers]:
        thread.join(10)
    failed = {n for n, r in results.items() if isinstance(r, KeyError)}
    assert failed == {3, 6, 9, 12}
    assert sorted(r for r in results.values() if isinstance(r, int)) == list(range(1, 9))
    assert policy_rows(env) == 8
    assert env.verify().ok


def test_200_concurrent_appends_are_gap_free_and_the_log_verifies(make_log: MakeLog) -> None:
    env = make_log()
    env.log.start()
    seqs: list[int] = []
    lock = threading.Lock()

    def call(number: int) -> None:
        seq = env.log.record(draft(number), subjects=[b"subject-%d" % (number % 7)]).seq
        with lock:
            seqs.append(seq)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(seqs) == list(range(200))
    env.signer.sign()
    report = env.verify()
    assert report.ok, report.problems
    assert report.size == 200
    assert env.scalar("SELECT count(*) FROM audit_subject") == 7


def test_two_appenders_on_one_log_serialise_through_the_database(make_log: MakeLog) -> None:
    """Two processes' appenders (here: two engines) interleave; each notices the other's
    entries, rebuilds its frontier from stored nodes, and the tree stays one tree."""
    first, second = make_log(), make_log()
    first.log.start()
    second.log.start()
    seqs: list[int] = []
    lock = threading.Lock()

    def call(log: AuditLog, number: int) -> None:
        seq = log.record(draft(number)).seq
        with lock:
            seqs.append(seq)

    threads = [
        threading.Thread(target=call, args=((first if n % 2 else second).log, n))
        for n in range(120)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(seqs) == list(range(120))
    first.signer.sign()
    second.log.record(draft(999))
    second.signer.sign()
    report = first.verify()
    assert report.ok, report.problems
    assert report.size == 121


def test_checkpoints_are_signed_every_n_entries(make_log: MakeLog) -> None:
    env = make_log(settings={"checkpoint_every_entries": 10})
    env.log.start()
    for number in range(25):
        env.log.record(draft(number))
    env.log.close()
    with env.engine.connect() as conn:
        sizes = conn.execute(text("SELECT size FROM audit_checkpoint ORDER BY id")).scalars().all()
    assert sizes == [10, 20]
    assert env.verify().ok


def test_appends_go_on_while_a_checkpoint_is_being_signed(make_log: MakeLog) -> None:
    """The signature waits on the signer's lock (held here as another process's signature
    would hold it); the appender keeps answering meanwhile and the signatures follow."""
    env = make_log(settings={"checkpoint_every_entries": 5})
    env.log.start()
    lock_file = env.signer.state_path.with_name(LOCK_FILE)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        done: list[int] = []
        writer = threading.Thread(
            target=lambda: done.extend(env.log.record(draft(n)).seq for n in range(20)))
        writer.start()
        writer.join(30)
        assert done == list(range(20))  # all answered while no signature could be made
        assert env.scalar("SELECT count(*) FROM audit_checkpoint") == 0
    finally:
        os.close(held)  # closing releases the lock
    env.log.close()  # signs what was asked for before it returns
    with env.engine.connect() as conn:
        sizes = conn.execute(text("SELECT size FROM audit_checkpoint ORDER BY id")).scalars().all()
    # The first size waited for the lock; those asked for meanwhile are signed as one.
    assert sizes == [5, 20]
    assert env.log.signer_problem is None
    assert env.verify().ok


def test_an_unreadable_signer_state_stops_signatures_not_appends(make_log: MakeLog) -> None:
    env = make_log(settings={"checkpoint_every_entries": 5})
    env.log.start()
    state = env.signer.state_path
    state.parent.mkdir(parents=True, exist_ok=True)
    state.mkdir()  # reading it fails with an OSError, as a failing disk would
    seqs = [env.log.record(draft(n)).seq for n in range(12)]
    assert seqs == list(range(12))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and env.log.signer_problem is None:
        time.sleep(0.02)
    assert env.log.signer_problem is not None
    assert env.log.healthy
    assert env.log.record(draft(12)).seq == 12


def test_an_appender_counts_checkpoints_signed_by_another_process(make_log: MakeLog) -> None:
    first, second = make_log(settings={"checkpoint_every_entries": 10}), make_log(
        settings={"checkpoint_every_entries": 10})
    first.log.start()
    second.log.start()
    for number in range(10):
        first.log.record(draft(number))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and first.signer.remembered() is None:
        time.sleep(0.02)
    second.log.record(draft(10))  # 11 entries, none signed by this process's appender
    for number in range(11, 20):
        first.log.record(draft(number))
    first.log.close()
    second.log.close()
    with first.engine.connect() as conn:
        sizes = conn.execute(text("SELECT size FROM audit_checkpoint ORDER BY id")).scalars().all()
    assert sizes == [10, 20]  # not 11 as well: the second appender read the signed head


def test_checkpoints_are_signed_after_t_seconds_when_the_log_grew(make_log: MakeLog) -> None:
    env = make_log(settings={"checkpoint_every_seconds": 0.2})
    env.log.start()
    env.fill(3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not env.scalar("SELECT count(*) FROM audit_checkpoint"):
        time.sleep(0.05)
    assert env.scalar("SELECT max(size) FROM audit_checkpoint") == 3
    time.sleep(0.5)  # the log did not grow: no new checkpoint
    assert env.scalar("SELECT count(*) FROM audit_checkpoint") == 1


def test_a_closed_log_refuses_to_record(make_log: MakeLog) -> None:
    env = make_log()
    env.log.start()
    env.fill(1)
    env.log.close()
    assert not env.log.healthy
    with pytest.raises(AuditUnavailable):
        env.log.record(draft(1))


def test_work_may_not_record_an_entry_itself(make_log: MakeLog) -> None:
    env = make_log()
    env.log.start()

    def nested(conn: Connection) -> None:
        env.log.record(draft(2))

    with pytest.raises(RuntimeError, match="must not record"):
        env.log.record(draft(1), work=nested)
    assert entry_count(env) == 0


def test_200_concurrent_tasks_await_gap_free_entries_and_the_log_verifies(
    make_log: MakeLog,
) -> None:
    """`record_async`: 200 tasks on one event loop await their entries; the appender
    settles each batch with one wake-up of the loop."""
    env = make_log()
    env.log.start()

    async def main() -> list[int]:
        async def call(number: int) -> int:
            recorded = await env.log.record_async(
                draft(number), subjects=[b"subject-%d" % (number % 7)])
            return recorded.seq

        return list(await asyncio.gather(*(call(n) for n in range(200))))

    seqs = asyncio.run(main())
    assert sorted(seqs) == list(range(200))
    env.signer.sign()
    report = env.verify()
    assert report.ok, report.problems
    assert report.size == 200
    assert env.scalar("SELECT count(*) FROM audit_subject") == 7


def test_entries_recorded_in_one_turn_of_the_loop_are_one_batch(make_log: MakeLog) -> None:
    """What the loop's tasks record in one turn reaches the appender together: one
    transaction, where queued one by one the appender would wake for the first alone."""
    env = make_log()
    env.log.start()
    commits: list[int] = []
    event.listen(env.engine, "commit", lambda conn: commits.append(1))

    async def call(number: int) -> int:
        time.sleep(0.002)  # a local read lets go of the GIL: the appender could run now
        return (await env.log.record_async(draft(number))).seq

    async def main() -> list[int]:
        return list(await asyncio.gather(*(call(n) for n in range(40))))

    assert sorted(asyncio.run(main())) == list(range(40))
    assert len(commits) == 1


def test_what_arrives_while_another_writer_holds_sqlite_is_one_batch(
    make_log: MakeLog,
) -> None:
    """On SQLite the appender gathers its batch once the writer lock is its own: entries
    recorded while another writer held the lock go in together, in one transaction."""
    env = make_log()
    lock = writer_lock(env.engine)
    if lock is None:
        pytest.skip("PostgreSQL appenders serialise in the transaction (advisory lock)")
    env.log.start()
    commits: list[int] = []
    event.listen(env.engine, "commit", lambda conn: commits.append(1))
    seqs: list[int] = []
    with lock.held():  # another writer's turn
        callers = [threading.Thread(target=lambda n=n: seqs.append(env.log.record(draft(n)).seq))
                   for n in range(12)]
        for caller in callers:
            caller.start()
            time.sleep(0.01)  # one by one, as requests come
        time.sleep(0.2)
        assert commits == []
    for caller in callers:
        caller.join(30)
    assert sorted(seqs) == list(range(12))
    assert len(commits) == 1


def test_entries_held_when_the_log_closes_are_refused_not_lost(make_log: MakeLog) -> None:
    """A unit held for the loop's next turn when the log closes fails as closed (503):
    its caller was never told it was recorded, and nothing of it is written."""
    env = make_log()
    env.log.start()

    async def main() -> BaseException | None:
        held = asyncio.ensure_future(env.log.record_async(draft(1)))
        await asyncio.sleep(0)  # the task ran up to its wait; its unit is held
        env.log.close()
        try:
            await held
        except AuditUnavailable as exc:
            return exc
        return None

    assert isinstance(asyncio.run(main()), AuditUnavailable)
    assert entry_count(env) == 0


def test_a_cancelled_wait_still_leaves_its_entry(make_log: MakeLog) -> None:
    """A request cancelled while it awaits its entry abandons the wait, not the entry."""
    env = make_log()
    env.log.start()

    async def main() -> int:
        waiting = asyncio.ensure_future(env.log.record_async(draft(1)))
        await asyncio.sleep(0)  # queued
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return (await env.log.record_async(draft(2))).seq

    assert asyncio.run(main()) == 1
    assert env.scalar("SELECT count(*) FROM audit_entry") == 2


def test_record_async_without_an_appender_thread_appends_in_the_pool(
    make_log: MakeLog,
) -> None:
    """Command-line use keeps no appender thread; the awaitable record still appends."""
    env = make_log()
    assert asyncio.run(env.log.record_async(draft(1))).seq == 0
    assert env.scalar("SELECT count(*) FROM audit_entry") == 1


def _policy_row(hash_: str) -> dict[str, Any]:
    return {"hash": hash_, "pack": "demo", "version": "1", "canonical": "{}",
            "first_loaded_at": utcnow()}


def test_rows_are_written_in_the_entrys_transaction(make_log: MakeLog) -> None:
    env = make_log()
    env.log.start()
    table = policy_version
    recorded = env.log.record(draft(1), rows=[(table, [_policy_row("h1"), _policy_row("h2")])])
    assert recorded.seq == 0
    assert policy_rows(env) == 2
    # A row that cannot be written fails the append: neither the entry nor any row stays.
    with pytest.raises(AuditUnavailable):
        env.log.record(draft(2), rows=[(table, [_policy_row("h3"), _policy_row("h1")])])
    assert policy_rows(env) == 2
    assert entry_count(env) == 1
    assert env.log.record(draft(3)).seq == 1


def test_rows_that_fail_in_a_batch_fail_only_their_own_act(make_log: MakeLog) -> None:
    """The batch's rows are merged into one insert per table; when that insert fails, the
    batch is written again with each act's rows apart, and only the act whose rows cannot
    be written is refused."""
    env = make_log()
    table = policy_version
    env.log.record(draft(0), rows=[(table, [_policy_row("h1")])])
    units = [
        Pending(draft(1), None, (), [(table, [_policy_row("h2")])]),
        Pending(draft(2), None, (), [(table, [_policy_row("h1")])]),  # h1 exists: refused
        Pending(draft(3), None, ()),
        Pending(draft(4), None, (), [(table, [_policy_row("h3"), _policy_row("h4")])]),
    ]
    for unit in units:
        pre_encode(unit, ORIGIN)
    env.log._append(units)  # one batch, as the appender thread would write it
    with pytest.raises(AuditUnavailable):
        units[1].recorded()
    assert [units[i].recorded().seq for i in (0, 2, 3)] == [1, 2, 3]
    assert policy_rows(env) == 4  # h1 .. h4, each once
    assert entry_count(env) == 4
    assert env.verify().ok


def test_a_lost_connection_costs_no_act(make_log: MakeLog) -> None:
    """The appender keeps its connection between batches; when the server drops it (a
    restart, an idle connection cut), the next batch is written on a new one instead of
    failing its callers."""
    env = make_log()
    if not env.postgres:
        pytest.skip("SQLite connections are not dropped by a server")
    env.log.start()
    assert env.log.record(draft(0)).seq == 0
    with env.engine.connect() as conn:
        cut = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
    assert cut >= 1  # the appender's own connection among them
    assert env.log.record(draft(1)).seq == 1
    assert entry_count(env) == 2
    assert env.verify().ok
