"""The request journal and the replay of it under a draft pack (docs/policy.md, "Impact
of a draft").

Each accountable request (disclosure, hit check, area summary) leaves one journal row in
its audit entry's transaction: the query in the blind form the signal index uses (a keyed
token, or signal ids, and the categories that narrow it), the recipient, purpose and
time. No clear identifier, case reference, client or acting person; a page that continues
a disclosure asks nothing new and leaves none. `BROKER_REPLAY_DAYS` keeps it (0: off);
the retention run deletes older rows.

`replay` answers every journaled request of a period under the live pack and under a
draft, against the signals as they are now, with the same reads as live requests
(`find_reachable`, `find`) and the same decisions (`CompiledPolicy.decide_ts`), both as of
now; it writes nothing but its `policy_impact` entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine, Table, delete, select

from broker.audit.drafts import draft
from broker.auth.actors import Actor
from broker.clock import as_utc, rfc3339, utcnow
from broker.core import cellkey
from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.impact import Answer, Grant, Impact, Replayed
from broker.core.policy.load import load_pack_from_text
from broker.core.policy.model import ACCESS_LEVELS
from broker.errors import FieldProblem, ValidationFailed
from broker.models import request_journal as JOURNAL
from broker.runtime import Runtime
from broker.services import pack_history
from broker.services.candidates import Candidate, Lookup, find, find_reachable

PERIOD: Final = re.compile(r"([1-9][0-9]{0,4})([dh])")
"""A replay's period: days or hours back from now (`14d`, `36h`)."""
_CHUNK: Final = 1000
"""Journal rows read at a time."""
_LEVEL = {"disclosure": "disclose", "hit": "hit", "area_summary": "aggregate"}

Rows = list[tuple[Table, Sequence[dict[str, Any]]]]


# --- The journal ----------------------------------------------------------------------------


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


# --- The replay -----------------------------------------------------------------------------


def period(text: str, loc: tuple[str, ...]) -> timedelta:
    """`14d` or `36h` as a time span; 422 for anything else."""
    found = PERIOD.fullmatch(text.strip())
    if found is None:
        raise ValidationFailed("Not a period.", errors=[FieldProblem(
            loc, "a number of days or hours, as 14d or 36h")])
    amount = int(found.group(1))
    return timedelta(days=amount) if found.group(2) == "d" else timedelta(hours=amount)


def _decided(policy: CompiledPolicy, request: Journaled, candidates: Sequence[Candidate],
             now_ts: float) -> dict[str, tuple[Candidate, Any]]:
    wanted = ACCESS_LEVELS[_LEVEL[request.kind]]
    out = {}
    for c in candidates:
        rule = policy.decide_ts(request.recipient, request.purpose, c.category, c.source,
                                c.legal_basis, c.observed_ts, now_ts)
        if rule is not None and rule.level >= wanted:
            out[c.id] = (c, rule)
    return out


def answer(engine: Engine, secret: bytes, policy: CompiledPolicy, request: Journaled,
           now_ts: float) -> Answer:
    """What `request` gets under `policy` from the signals as they are now: the signals
    released or counted with their rules, and for an area summary each cell's fate."""
    recipient, purpose = request.recipient, request.purpose
    if request.kind == "area_summary":
        allowed = policy.categories_for(recipient, purpose, "aggregate")
        found = find(engine, request.lookup, allowed, with_payload=False)
    else:
        reach = policy.reach(recipient, purpose, _LEVEL[request.kind], now_ts)
        if request.categories is not None:
            reach = tuple(r for r in reach if r.category in request.categories)
        found = find_reachable(engine, request.lookup, reach, with_payload=False)
    decided = _decided(policy, request, found, now_ts)
    signals = {i: Grant(rule.id, rule.field_data if request.kind == "disclosure" else {})
               for i, (_, rule) in decided.items()}
    if request.kind != "area_summary":
        return Answer(signals)
    members: dict[str, list[str]] = {c: [] for c in allowed}
    rules: dict[str, set[str]] = {c: set() for c in allowed}
    thresholds = dict.fromkeys(allowed, 1)
    for signal_id, (candidate, rule) in decided.items():
        members[candidate.category].append(signal_id)
        rules[candidate.category].add(rule.id)
        thresholds[candidate.category] = max(thresholds[candidate.category], rule.min_count)
    cells = {c: cellkey.published_count(secret, members[c], thresholds[c]) is not None
             for c in allowed}
    return Answer(signals, cells, {c: frozenset(r) for c, r in rules.items()})


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """A replay's report: which packs, which period, and the counts (`Impact`)."""

    live_hash: str
    draft_hash: str
    since: datetime
    until: datetime
    impact: Impact

    def as_dict(self) -> dict[str, Any]:
        return {"live": self.live_hash, "draft": self.draft_hash,
                "since": rfc3339(self.since), "until": rfc3339(self.until),
                **self.impact.as_dict()}


def compare(runtime: Runtime, live: CompiledPolicy, draft_policy: CompiledPolicy,
            since: datetime, now: datetime) -> Impact:
    """Replay every request journaled from `since` under both packs, as of `now`."""
    secret = runtime.keys.active("blind_index").material
    engine, now_ts = runtime.engine, now.timestamp()
    impact = Impact()
    for request in journaled(engine, since):
        impact.add(Replayed(request.kind, request.recipient, request.purpose,
                            answer(engine, secret, live, request, now_ts),
                            answer(engine, secret, draft_policy, request, now_ts)))
    return impact


def replay(runtime: Runtime, actor: Actor, draft_policy: CompiledPolicy, *,
           back: timedelta | None = None, request_id: str | None = None) -> ImpactReport:
    """What the draft would change in the journaled requests of the last `back` (default:
    all that the journal keeps), recorded as one `policy_impact` entry before it leaves."""
    now = utcnow()
    since = now - (back if back is not None else timedelta(days=runtime.settings.replay_days))
    live = runtime.policy.compiled
    impact = compare(runtime, live, draft_policy, since, now)
    report = ImpactReport(live.hash, draft_policy.hash, as_utc(since), now, impact)
    runtime.audit.record(draft("policy_impact", actor, request_id=request_id, objects={
        "live": live.hash, "draft": draft_policy.hash, "since": rfc3339(report.since),
        **impact.totals}))
    return report


def replay_draft(runtime: Runtime, actor: Actor, *, reference: str | None = None,
                 files: Mapping[str, str] | None = None, since: str | None = None,
                 request_id: str | None = None) -> ImpactReport:
    """`replay` for the API: the draft a recorded pack (`reference`, a hash or prefix) or
    the text of a pack's files (loaded as a folder is, nothing recorded); `since` a period
    (`14d`). 404 for an unknown hash, 422 for a pack that does not load."""
    if reference is not None:
        draft_policy = pack_history.compiled(runtime.engine, reference, loc=("body", "draft"))
    else:
        draft_policy = CompiledPolicy(load_pack_from_text(files or {}))
    back = None if since is None else period(since, ("body", "since"))
    return replay(runtime, actor, draft_policy, back=back, request_id=request_id)
