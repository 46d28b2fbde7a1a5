"""Pooled random identifiers: every slice fresh, across refills, threads and forks."""

from __future__ import annotations

import os
import re
import threading

from broker.core import randomness
from broker.core.randomness import RandomPool


def test_slices_are_fresh_across_refills() -> None:
    pool = RandomPool(size=64)
    taken = [pool.take(10) for _ in range(500)]  # a refill every six slices
    assert all(len(piece) == 10 for piece in taken)
    assert len(set(taken)) == len(taken)


def test_a_request_larger_than_the_pool_is_drawn_whole() -> None:
    pool = RandomPool(size=16)
    assert len(pool.take(100)) == 100


def test_threads_never_share_a_slice() -> None:
    pool = RandomPool(size=256)
    seen: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [pool.take(8) for _ in range(2000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 16_000
    assert len(set(seen)) == len(seen)


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    randomness.token_bytes(1)  # the pool holds a draw before the fork
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, randomness.token_bytes(16))
        os._exit(0)
    os.close(writer)
    mine = randomness.token_bytes(16)
    _, status = os.waitpid(child, 0)
    theirs = os.read(reader, 16)
    os.close(reader)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(theirs) == 16
    assert theirs != mine


def test_token_formats() -> None:
    assert re.fullmatch(r"[0-9a-f]{24}", randomness.token_hex(12))
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", randomness.token_urlsafe(32))
    assert re.fullmatch(r"[a-z2-7]{24}", randomness.token_b32(15))
