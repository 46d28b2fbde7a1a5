"""The replay of the request journal (`broker.services.journal`) under a draft pack
(docs/policy.md, "Impact of a draft").

`replay` answers every journaled request of a period under the live pack and under a
draft, against the signals as they are now, with the same reads as live requests
(`find_reachable`, `find`) and the same decisions (`CompiledPolicy.decide_ts`), both as of
now; it writes nothing but its `policy_impact` entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine

from broker.audit.drafts import draft
from broker.auth.actors import Actor
from broker.clock import as_utc, rfc3339, utcnow
from broker.core import cellkey
from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.impact import Answer, Grant, Impact, Replayed
from broker.core.policy.load import load_pack_from_text
from broker.core.policy.model import ACCESS_LEVELS
from broker.errors import FieldProblem, ValidationFailed
from broker.runtime import Runtime
from broker.services import pack_history
from broker.services.candidates import Candidate, find, find_reachable
from broker.services.journal import Journaled, journaled

PERIOD: Final = re.compile(r"([1-9][0-9]{0,4})([dh])")
"""A replay's period: days or hours back from now (`14d`, `36h`)."""
_LEVEL = {"disclosure": "disclose", "hit": "hit", "area_summary": "aggregate"}

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
