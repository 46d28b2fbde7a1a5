"""Disclosures, hit checks and area summaries: the request that matters (docs/architecture.md).

For each candidate signal the one rule matching (recipient, purpose, category, source,
legal basis, age) decides; a signal no rule matches at the needed level does not exist
for the request: it is neither returned, nor counted, nor hinted at. The live pack is
read once per request, so the whole answer, and its audit entry's policy hash, come from
one pack even while another is being loaded. Each answer leaves only after its one audit
entry (and the rows re-identification needs, in the same transaction) is durable.

The verbs `disclose`, `check_hit` and `summarise_area` own the request's transaction:
each decides (`prepare_*`: the answer and its entry, writing nothing, or an
`AuditedRefusal` for a refusal that must be audited), appends the entry, awaiting it on
the event loop without holding a thread, and only then completes the answer with the
entry's `audit_seq`. On SQLite the decision runs on the event loop itself (its reads are
local page reads of a few microseconds, and a thread-pool round trip costs more than the
work, measured in bench/disclosure_bench.py); on PostgreSQL, whose reads wait on the
network, it runs in a worker thread. Under an `Idempotency-Key` a retry gets the first
answer, stored in the entry's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Any, TypeVar

from anyio import to_thread
from sqlalchemy import Table

from broker.audit.compact import RULE_FIELDS, compact
from broker.clock import utcnow
from broker.core import cellkey, randomness
from broker.core.policy.concealment import Concealment, concealment
from broker.core.policy.evaluate import COVENANT_TIMEZONE, CompiledRule
from broker.core.policy.model import ACCESS_LEVELS
from broker.core.transforms import (
    Pseudonymiser,
    b32,
    flatten_signal,
    pseudonymiser_for,
    release,
)
from broker.keys import KeyRing
from broker.models import disclosure_pseudonym
from broker.runtime import LivePolicy, Runtime
from broker.schemas.disclosures import AreaSummaryIn, DisclosureIn, HitIn, PurposeBound
from broker.services import idempotency
from broker.services.candidates import (
    Candidate,
    Lookup,
    area_of,
    area_token,
    find,
    find_reachable,
    lookup_for,
    payload_of,
    signal_subject_token,
    subject_token,
)
from broker.services.journal import journal_rows
from broker.services.purpose_binding import (
    Asker,
    AuditedRefusal,
    admit,
    check_categories,
    check_purpose,
    check_subject_count,
    draft,
)
from broker.services.volume import check_budget, decode_page, encode_page, release_page


def new_disclosure_id() -> str:
    return "dsc_" + b32(randomness.token_bytes(15))


@dataclass(slots=True)
class Released:
    """One signal as released: the answer's part, the entry's part, what re-identification
    needs."""

    answer: dict[str, Any]
    item: dict[str, Any]
    pseudonymised: list[str] = field(default_factory=list)
    signal_id: str = ""
    rule: str = ""
    subject: bytes | None = None


def _today() -> date:
    """The day of disclosure in the covenant's time zone (age bands count from it)."""
    return datetime.now(COVENANT_TIMEZONE).date()


def _release_one(
    keys: KeyRing,
    candidate: Candidate,
    rule: CompiledRule,
    pseudonymiser: Pseudonymiser,
    asker: Asker,
    today: date,
    concealed: Concealment,
    subjects: dict[tuple[str, str], bytes],
) -> Released | None:
    payload = payload_of(keys, candidate)
    if payload is None:  # erased since it was found: it no longer exists
        return None
    fields = release(rule.fields, flatten_signal(payload), recipient=asker.org,
                     purpose=asker.purpose, pseudonym_key=keys.active("pseudonym").material,
                     today=today, pseudonymiser=pseudonymiser)
    answer: dict[str, Any]
    if rule.reveal_source:
        answer = {"ref": pseudonymiser.signal_ref(candidate.id), "category": candidate.category,
                  "legal_basis": candidate.legal_basis, "rule": rule.id, "fields": fields,
                  "source": candidate.source}
    else:  # nor what names the source: a basis or a rule that has one possible source
        answer = {"ref": pseudonymiser.signal_ref(candidate.id), "category": candidate.category}
        if candidate.legal_basis not in concealed.telling_bases:
            answer["legal_basis"] = candidate.legal_basis
        if rule.id not in concealed.anonymous:
            answer["rule"] = rule.id
        answer["fields"] = fields
    subject = signal_subject_token(keys, payload, subjects)
    item = {
        "signal_id": candidate.id,
        "rule": rule.id,
        "legal_basis": candidate.legal_basis,
        "category": candidate.category,
        "source": candidate.source,
        "fields": {path: rule.field_data[path] for path in fields},
        "subjects": [subject] if subject else [],
    }
    hidden = rule.pseudonymised
    pseudonymised = [p for p in fields if p in hidden] if hidden else []
    return Released(answer, item, pseudonymised, candidate.id, rule.id, subject)


def _decided(
    live: LivePolicy, asker: Asker, candidates: Sequence[Candidate], level: str, now_ts: float
) -> list[tuple[Candidate, CompiledRule]]:
    """The candidates with the one rule releasing each at `level` or above; the rest do not
    exist for this request."""
    decide = live.compiled.decide_ts
    wanted = ACCESS_LEVELS[level]
    out = []
    for c in candidates:
        rule = decide(asker.org, asker.purpose, c.category, c.source, c.legal_basis,
                      c.observed_ts, now_ts)
        if rule is not None and rule.level >= wanted:  # `rule.grants(level)`
            out.append((c, rule))
    return out


def _pseudonym_rows(
    disclosure_id: str, asker: Asker, released: Sequence[Released], now: datetime
) -> list[dict[str, Any]]:
    return [
        {"disclosure_id": disclosure_id, "ref": r.answer["ref"], "path": path, "org": asker.org,
         "purpose": asker.purpose, "signal_id": r.signal_id, "rule": r.rule, "created_at": now}
        for r in released for path in r.pseudonymised
    ]


@dataclass(slots=True)
class Prepared:
    """An answer waiting for its audit entry: the entry's draft, the subjects it concerns,
    the rows to write in its transaction, and the answer but for `audit_seq`."""

    entry: dict[str, Any]
    answer: dict[str, Any]
    subjects: list[bytes] = field(default_factory=list)
    rows: list[tuple[Table, Sequence[dict[str, Any]]]] = field(default_factory=list)

    def finish(self, seq: int) -> dict[str, Any]:
        """The answer, naming the durable entry that records it."""
        self.answer["audit_seq"] = seq
        return self.answer


Body = TypeVar("Body", bound=PurposeBound)
Decide = Callable[[Runtime, Asker, Body], Prepared]


async def _answer(runtime: Runtime, asker: Asker, body: Body, decide: Decide[Body],
                  key: str | None, route: str) -> dict[str, Any]:
    """Decide, record the entry durably, and return the answer naming it."""
    once = None if key is None else idempotency.begin(
        asker.client_id, asker.org, key, route, body.model_dump(mode="json"))
    if once is not None:
        earlier = await to_thread.run_sync(idempotency.replay, runtime, once)
        if earlier is not None:
            return dict(earlier.body)
    try:
        if runtime.local_reads:
            prepared = decide(runtime, asker, body)
        else:
            prepared = await to_thread.run_sync(decide, runtime, asker, body)
    except AuditedRefusal as refusal:
        await runtime.audit.record_async(refusal.entry)
        raise refusal.error from None
    if once is not None:  # rare: the answer is stored in the entry's transaction (a thread)
        return await to_thread.run_sync(partial(
            idempotency.record, runtime, once, prepared.entry, prepared.answer,
            status_code=200, rows=prepared.rows, subjects=prepared.subjects))
    recorded = await runtime.audit.record_async(prepared.entry, rows=prepared.rows,
                                                subjects=prepared.subjects)
    return prepared.finish(recorded.seq)


async def disclose(runtime: Runtime, asker: Asker, body: DisclosureIn,
                   key: str | None = None) -> dict[str, Any]:
    """What the policy releases to the asker for a purpose, audited before it is returned."""
    return await _answer(runtime, asker, body, prepare_disclosure, key, "disclosures.create")


async def check_hit(runtime: Runtime, asker: Asker, body: HitIn,
                    key: str | None = None) -> dict[str, Any]:
    """Whether the asker may know of signals about a subject, audited before it is returned."""
    return await _answer(runtime, asker, body, prepare_hit, key, "hits.create")


async def summarise_area(runtime: Runtime, asker: Asker, body: AreaSummaryIn,
                         key: str | None = None) -> dict[str, Any]:
    """Counts per category over a postcode area, audited before they are returned."""
    return await _answer(runtime, asker, body, prepare_area_summary, key,
                         "area-summaries.create")


def prepare_disclosure(runtime: Runtime, asker: Asker, body: DisclosureIn) -> Prepared:
    """Decide a disclosure request: one page of the signals the policy releases,
    transformed (`broker.services.volume`: the page, its budgets, its `next_page`)."""
    live = runtime.policy  # once: the whole request is decided by this pack
    limits = runtime.limits
    admit(limits, live, asker)
    check_purpose(live, asker, "disclosure")
    check_categories(live, body.query.categories)
    keys = runtime.keys
    lookup = lookup_for(keys, body.query)
    after = None if body.page is None else decode_page(keys, asker, body.query, body.page)
    check_budget(runtime.budget, live, asker)
    if lookup.subject is not None:
        check_subject_count(limits, live, asker, lookup.subject)
    now = utcnow()
    reach = live.compiled.reach(asker.org, asker.purpose, "disclose", now.timestamp())
    if body.query.categories:
        narrowed = frozenset(body.query.categories)
        reach = tuple(r for r in reach if r.category in narrowed)
    fetch = runtime.settings.disclosure_page_size + 1
    candidates = find_reachable(runtime.engine, lookup, reach, with_payload=True, limit=fetch,
                                after=after)
    pseudonym_key = keys.active("pseudonym")
    pseudonymiser = pseudonymiser_for(pseudonym_key.material, asker.org, asker.purpose)
    concealed = concealment(live.pack)
    today = _today()
    subjects: dict[tuple[str, str], bytes] = {}  # this request's subject tokens
    released, continues = release_page(
        runtime, live, asker, _decided(live, asker, candidates, "disclose", now.timestamp()),
        fetched=candidates, fetch_limit=fetch, count_subjects=lookup.subject is None,
        release=lambda c, rule: _release_one(keys, c, rule, pseudonymiser, asker, today,
                                             concealed, subjects))
    next_page = None if continues is None else encode_page(keys, asker, body.query, continues)
    disclosure_id = new_disclosure_id()
    rows = _pseudonym_rows(disclosure_id, asker, released, now)
    objects: dict[str, Any] = {"disclosure_id": disclosure_id, "query": lookup.kind,
                               "released": len(released)}
    if released:  # the key of the answer's refs: the requester's view of the entry shows them
        objects["pseudonym_key"] = pseudonym_key.version
    if lookup.area:
        objects["area"] = lookup.area
    if body.query.categories:
        objects["categories"] = sorted(set(body.query.categories))
    items = [r.item for r in released]
    rule_fields = compact(items)  # a page's rule's fields once, not per signal
    if rule_fields:
        objects[RULE_FIELDS] = rule_fields
    if body.page is not None:
        objects["continued"] = True
    if next_page is not None:
        objects["more"] = True
    journaled = [] if body.page is not None else journal_rows(  # a continued page: asked already
        runtime, "disclosure", asker.org, asker.purpose, lookup, body.query.categories, now)
    entry = draft(asker, live, "disclosure", items=items, objects=objects,
                  confidential_until=body.confidential_until)
    return Prepared(
        entry,
        {
            "disclosure_id": disclosure_id,
            "audit_seq": None,
            "policy_hash": live.pack.hash,
            "purpose": asker.purpose,
            "signals": [r.answer for r in released],
            "truncated": next_page is not None,
            "next_page": next_page,
        },
        subjects=[lookup.subject] if lookup.subject else [],
        rows=([(disclosure_pseudonym, rows)] if rows else []) + journaled,
    )


def prepare_hit(runtime: Runtime, asker: Asker, body: HitIn) -> Prepared:
    """Whether signals about a subject exist that a rule lets the caller know of (at least
    `hit`), and their sources where the rule reveals them. No content leaves."""
    live = runtime.policy
    limits = runtime.limits
    admit(limits, live, asker)
    check_purpose(live, asker, "hit")
    token = subject_token(runtime.keys, body.subject, ("body", "subject"))
    check_subject_count(limits, live, asker, token)
    now = utcnow()
    now_ts = now.timestamp()
    # Only what a rule lets the caller know of is read: the answer's time does not depend
    # on signals it may not see.
    reach = live.compiled.reach(asker.org, asker.purpose, "hit", now_ts)
    lookup = Lookup("subject", token=token, subject=token)
    candidates = find_reachable(runtime.engine, lookup, reach, with_payload=False)
    counted = _decided(live, asker, candidates, "hit", now_ts)
    sources = sorted({c.source for c, rule in counted if rule.reveal_source})
    items = [
        {"signal_id": c.id, "rule": rule.id, "legal_basis": c.legal_basis,
         "category": c.category, "source": c.source, "fields": {}, "subjects": [token]}
        for c, rule in counted
    ]
    entry = draft(asker, live, "hit", items=items, objects={"hit": bool(counted)},
                  confidential_until=body.confidential_until)
    return Prepared(entry, {"hit": bool(counted), "sources": sources, "audit_seq": None,
                            "policy_hash": live.pack.hash}, subjects=[token],
                    rows=journal_rows(runtime, "hit", asker.org, asker.purpose, lookup, None, now))


def prepare_area_summary(runtime: Runtime, asker: Asker, body: AreaSummaryIn) -> Prepared:
    """Counts per category over a postcode area, of signals whose rule grants at least
    `aggregate`, each with the cell key method's noise (broker/core/cellkey.py: the same
    signals always get the same count); a perturbed count below the rule's `min_count` is
    suppressed (null). The entry records the counts as published, nothing of the noise."""
    live = runtime.policy
    admit(runtime.limits, live, asker)
    check_purpose(live, asker, "area_summary")
    level, postcode = area_of(body.area, ("body", "area"))
    allowed = live.compiled.categories_for(asker.org, asker.purpose, "aggregate")
    lookup = Lookup(level, token=area_token(runtime.keys, level, postcode), area=postcode)
    candidates = find(runtime.engine, lookup, allowed, with_payload=False)
    cells: dict[str, list[str]] = {category: [] for category in allowed}
    thresholds: dict[str, int] = dict.fromkeys(allowed, 1)
    now = utcnow()
    for candidate, rule in _decided(live, asker, candidates, "aggregate", now.timestamp()):
        cells[candidate.category].append(candidate.id)
        thresholds[candidate.category] = max(thresholds[candidate.category], rule.min_count)
    # Record keys under the blind-index key, which never rotates: a new key would give every
    # cell fresh noise, and fresh noise can be averaged away.
    secret = runtime.keys.active("blind_index").material
    categories = []
    for category in sorted(allowed):
        count = cellkey.published_count(secret, cells[category], thresholds[category])
        categories.append({"category": category, "count": count, "suppressed": count is None})
    objects = {"area": postcode, "area_level": level,
               "counts": {c["category"]: c["count"] for c in categories}}
    return Prepared(draft(asker, live, "area_summary", objects=objects),
                    {"area": {"postcode": postcode}, "categories": categories,
                     "audit_seq": None, "policy_hash": live.pack.hash},
                    rows=journal_rows(runtime, "area_summary", asker.org, asker.purpose, lookup,
                                      None, now))
