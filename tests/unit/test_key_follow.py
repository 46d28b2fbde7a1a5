"""Two key rings over one key directory: a rotation through one is seen by the other.

`reload_if_changed` compares the directory's key files (names, sizes, times) with the
fingerprint a ring was loaded from, so a process notices another one's rotation without
reading a key; new key files appear whole, and concurrent rotations never collide.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from broker.errors import StartupError
from broker.keys import (
    ROTATABLE,
    KeyRing,
    create_key_ring,
    key_files_fingerprint,
    load_key_ring,
    reload_if_changed,
    rotate_key,
)


def contents(ring: KeyRing) -> tuple[object, ...]:
    """What a ring holds, comparable across loads (key objects compare by identity)."""
    return (
        {n: {v: k.material for v, k in vs.items()} for n, vs in ring.symmetric.items()},
        {v: k.kid for v, k in ring.signing.items()},
        {v: k.public_bytes for v, k in ring.checkpoint.items()},
    )


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    return directory


@pytest.mark.parametrize("name", ROTATABLE)
def test_a_rotation_through_one_ring_reaches_the_other(key_dir: Path, name: str) -> None:
    mine, theirs = load_key_ring(key_dir), load_key_ring(key_dir)
    assert reload_if_changed(theirs, key_dir) is None
    assert rotate_key(key_dir, name) == 2  # through `mine`'s process
    mine = reload_if_changed(mine, key_dir)
    seen = reload_if_changed(theirs, key_dir)
    assert mine is not None and seen is not None
    assert contents(seen) == contents(mine)  # the same keys, loaded twice
    assert seen.describe()[name] == [1, 2]
    assert reload_if_changed(seen, key_dir) is None  # nothing new since
    assert theirs.describe()[name] == [1]  # a ring never changes: callers swap rings


def test_the_new_active_keys_are_the_rotated_ones(key_dir: Path) -> None:
    before = load_key_ring(key_dir)
    rotate_key(key_dir, "signing")
    rotate_key(key_dir, "master")
    after = reload_if_changed(before, key_dir)
    assert after is not None
    assert after.active_signing.version == 2
    assert after.active_signing.kid != before.active_signing.kid
    assert set(after.verification_keys()) == {before.active_signing.kid, after.active_signing.kid}
    assert after.active("master").version == 2
    assert after.version("master", 1).material == before.active("master").material


def test_other_files_in_the_directory_do_not_count(key_dir: Path) -> None:
    ring = load_key_ring(key_dir)
    (key_dir / "checkpoint-signer.json").write_text("{}")  # the signer's state lives here
    (key_dir / ".partial-master.v2.key.0000").write_bytes(b"half")
    (key_dir / "notes.txt").write_text("x")
    assert reload_if_changed(ring, key_dir) is None
    assert all(not n.startswith((".partial", "notes", "checkpoint-"))
               for n, _, _ in key_files_fingerprint(key_dir))


def test_a_replaced_key_file_counts(key_dir: Path) -> None:
    ring = load_key_ring(key_dir)
    path = key_dir / "pseudonym.v1.key"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reloaded = reload_if_changed(ring, key_dir)
    assert reloaded is not None and contents(reloaded) == contents(ring)


def test_a_damaged_directory_raises_and_leaves_the_ring(key_dir: Path) -> None:
    ring = load_key_ring(key_dir)
    rotate_key(key_dir, "pseudonym")
    (key_dir / "pseudonym.v2.key").write_bytes(b"short")
    with pytest.raises(StartupError, match=r"pseudonym\.v2\.key"):
        reload_if_changed(ring, key_dir)
    assert ring.describe()["pseudonym"] == [1]


def test_concurrent_rotations_get_distinct_versions_and_leave_no_partial_file(
    key_dir: Path,
) -> None:
    versions: list[int] = []
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            versions.append(rotate_key(key_dir, "pseudonym"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(versions) == list(range(2, 10))
    assert load_key_ring(key_dir).describe()["pseudonym"] == list(range(1, 10))
    assert not [p for p in key_dir.iterdir() if p.name.startswith(".partial-")]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in key_dir.iterdir())
