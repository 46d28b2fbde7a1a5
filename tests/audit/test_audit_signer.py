"""The checkpoint signer: remembers its last head apart from the log, refuses rewrites."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.audit.reads import verifier_key_text
from broker.audit.signer import (
    STATE_FILE,
    CheckpointRefused,
    CheckpointSigner,
    latest_checkpoint,
)
from broker.audit.tables import stored_root
from broker.core.checkpoint import open_checkpoint, verifier_key
from broker.keys import KeyRing, load_key_ring, rotate_key
from broker.settings import Settings
from tests.audit.audit_kit import ORIGIN, LogEnv

MakeLog = Callable[..., LogEnv]


def test_a_checkpoint_is_a_signed_note_over_the_stored_tree(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(7)
    checkpoint = env.signer.sign()
    opened = open_checkpoint(checkpoint.note, env.signer.verifier(), ORIGIN)
    with env.engine.connect() as conn:
        assert (opened.size, opened.root) == (7, stored_root(conn, 7))
    assert (checkpoint.size, checkpoint.root) == (opened.size, opened.root)


def test_the_signer_remembers_its_last_head_in_an_owner_only_file(make_log: MakeLog) -> None:
    env = make_log()
    assert env.signer.remembered() is None
    env.fill(3)
    checkpoint = env.signer.sign()
    state = env.signer.state_path
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    remembered = env.signer.remembered()
    assert remembered is not None
    assert (remembered.origin, remembered.size, remembered.root) == (ORIGIN, 3, checkpoint.root)


def test_signing_an_unchanged_tree_reuses_the_latest_checkpoint(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(2)
    first = env.signer.sign()
    assert env.signer.sign().id == first.id
    env.fill(1, start=2)
    assert env.signer.sign().id != first.id
    assert env.scalar("SELECT count(*) FROM audit_checkpoint") == 2


def test_two_processes_share_one_signer_state(make_log: MakeLog) -> None:
    one, two = make_log(), make_log()
    one.fill(2)
    one.signer.sign()
    two.fill(3, start=2)
    assert two.signer.sign().size == 5
    one.fill(1, start=5)
    assert one.signer.sign().size == 6
    assert one.verify().ok


def test_sign_at_signs_the_first_entries_only_and_never_behind_the_last_head(
    make_log: MakeLog,
) -> None:
    env = make_log()
    env.fill(9)
    first = env.signer.sign_at(4)
    assert first is not None
    with env.engine.connect() as conn:
        assert (first.size, first.root) == (4, stored_root(conn, 4))
    assert env.signer.sign_at(4) is None  # signed already (by another appender, say)
    assert env.signer.sign_at(3) is None  # never a head behind the last one
    later = env.signer.sign_at(9)
    assert later is not None and later.size == 9
    with pytest.raises(CheckpointRefused, match="holds 9"):
        env.signer.sign_at(10)
    assert env.scalar("SELECT count(*) FROM audit_checkpoint") == 2
    assert env.verify().ok


def test_sign_at_gives_way_to_a_stored_checkpoint_the_state_does_not_know(
    make_log: MakeLog,
) -> None:
    """A signature stored but not remembered (the process died between the two, or the
    key directory refused the write): no later, smaller checkpoint is stored after it."""
    env = make_log()
    env.fill(9)
    assert env.signer.sign_at(4) is not None
    older = env.signer.state_path.read_bytes()
    assert env.signer.sign_at(8) is not None
    env.signer.state_path.write_bytes(older)  # the state lags the table
    assert env.signer.sign_at(6) is None
    with env.engine.connect() as conn:
        assert latest_checkpoint(conn).size == 8  # type: ignore[union-attr]
    assert env.scalar("SELECT count(*) FROM audit_checkpoint") == 2


def test_the_default_state_lives_in_the_key_directory(
    keys: KeyRing, key_dir: Path, db_url: str
) -> None:
    from broker.db import make_engine

    engine = make_engine(db_url)
    try:
        signer = CheckpointSigner(engine, keys, Settings(database_url=db_url, key_dir=key_dir))
        assert signer.state_path == key_dir / STATE_FILE
        signer.sign()
        assert (key_dir / STATE_FILE).exists()
        load_key_ring(key_dir)  # the state file is not mistaken for a key
    finally:
        engine.dispose()


def test_an_unreadable_state_is_refused_and_reported(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(2)
    env.signer.sign()
    env.signer.state_path.write_text("{not json")
    with pytest.raises(CheckpointRefused, match="unreadable"):
        env.signer.sign()
    assert "signer_state_unreadable" in {p.code for p in env.verify().problems}


def test_a_state_of_another_log_is_refused(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(2)
    env.signer.sign()
    state = json.loads(env.signer.state_path.read_text())
    env.signer.state_path.write_text(json.dumps({**state, "origin": "other.example/log"}))
    with pytest.raises(CheckpointRefused, match="belongs to the log"):
        env.signer.sign()


def test_a_rotated_checkpoint_key_signs_new_checkpoints_and_old_ones_still_verify(
    make_log: MakeLog, key_dir: Path
) -> None:
    env = make_log()
    env.fill(2)
    old = env.signer.sign()
    rotate_key(key_dir, "checkpoint")
    env.log.use_keys(load_key_ring(key_dir))
    new = env.signer.sign()
    assert new.id != old.id  # same head, but the old note is not by the active key
    verifier = env.signer.verifier()
    assert verifier_key_text(env.signer) == verifier_key(verifier.name, verifier.public_key)
    open_checkpoint(new.note, verifier, ORIGIN)
    assert len(env.signer.verifiers()) == 2
    assert env.verify().ok
