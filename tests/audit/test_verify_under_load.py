"""Live verification reads one snapshot bounded by the size it read: entries appended
while it runs (by another thread, as another node's would be) raise no false alarm, on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from broker.audit.drafts import draft
from broker.audit.integrity import verify_live
from broker.auth.actors import system_actor
from broker.runtime import Runtime


def test_verification_while_entries_are_appended_finds_nothing_wrong(runtime: Runtime) -> None:
    actor = system_actor("load")
    for _ in range(300):  # a tree with nodes on several levels before the load starts
        runtime.audit.record(draft("alert", actor, outcome="refused", reason="load"))
    stop = threading.Event()
    appended = [0]

    def append() -> None:
        while not stop.is_set():
            runtime.audit.record(draft("alert", actor, outcome="refused", reason="load"))
            appended[0] += 1

    writer = threading.Thread(target=append)
    writer.start()
    try:
        reports = [verify_live(runtime.engine, runtime.audit.signer) for _ in range(15)]
    finally:
        stop.set()
        writer.join()
    assert appended[0] > 0
    assert [p.as_dict() for r in reports for p in r.problems] == []
    assert all(r.ok for r in reports)
    assert verify_live(runtime.engine, runtime.audit.signer).ok
