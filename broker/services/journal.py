"""The request journal (docs/policy.md, "Impact of a draft"): what partners asked, in
blind form, for the replay of a draft pack (`broker.services.impact`).

Each accountable request (disclosure, hit check, area summary) leaves one journal row in
its audit entry's transaction: the query in the blind form the signal index uses (a keyed
token, or signal ids, and the categories that narrow it), the recipient, purpose and
time. No clear identifier, case reference, client or acting person; a page that continues
a disclosure asks nothing new and leaves none. `BROKER_REPLAY_DAYS` keeps it (0: off);
the retention run deletes older rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine, Table, delete, select

from broker.models import request_journal as JOURNAL
from broker.runtime import Runtime
from broker.services.candidates import Lookup

_CHUNK: Final = 1000
"""Journal rows read at a time."""

Rows = list[tuple[Table, Sequence[dict[str, Any]]]]


def journal_rows(runtime: Runtime, kind: str, recipient: str, purpose: str, lookup: Lookup,
                 categories: Sequence[str] | None, at: datetime) -> Rows:
    """The journal row of one request, as `(table, rows)` for its audit entry's
    transaction; none while `BROKER_REPLAY_DAYS` is 0."""
    if runtime.settings.replay_days == 0:
        return []
    row = {"at": at, "kind": kind, "recipient": recipient, "purpose": purpose,
           "lookup": lookup.kind, "token": lookup.token,
           "signal_ids": ",".join(lookup.signal_ids) or None,
           "categories": ",".join(sorted(set(categories))) if categories else None}
    return [(JOURNAL, [row])]


def forget(conn: Any, replay_days: int, moment: datetime) -> int:
    """Delete journal rows older than `replay_days` at `moment` (all of them at 0)."""
    cutoff = moment - timedelta(days=replay_days)
    return int(conn.execute(delete(JOURNAL).where(JOURNAL.c.at < cutoff)).rowcount or 0)


@dataclass(frozen=True, slots=True)
class Journaled:
    """One journaled request, as replay reads it."""

    kind: str
    recipient: str
    purpose: str
    lookup: Lookup
    categories: frozenset[str] | None


def journaled(engine: Engine, since: datetime) -> Iterator[Journaled]:
    """The journaled requests from `since`, oldest first, read in chunks."""
    last = 0
    while True:
        query = (select(JOURNAL).where(JOURNAL.c.at >= since, JOURNAL.c.id > last)
                 .order_by(JOURNAL.c.id).limit(_CHUNK))
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            token = None if row.token is None else bytes(row.token)
            ids = tuple(row.signal_ids.split(",")) if row.signal_ids else ()
            narrowed = frozenset(row.categories.split(",")) if row.categories else None
            yield Journaled(row.kind, row.recipient, row.purpose,
                            Lookup(row.lookup, token=token, signal_ids=ids), narrowed)
        if len(rows) < _CHUNK:
            return
        last = rows[-1].id
