"""Hypothesis over random live packs, drafts, signals and journaled requests: the replay's
signals gained and lost, and its hit checks that flip, are exactly the difference of the
two packs' answers computed directly from the rules expanded by hand (the pure policy
properties' model), with the store read as live requests read it.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from broker.clock import utcnow
from broker.core.policy import CompiledPolicy, load_pack_from_text
from broker.models import request_journal, signal, signal_index
from broker.runtime import Runtime
from broker.services import impact, journal
from broker.services.candidates import Lookup
from tests.unit.packs import as_files
from tests.unit.test_policy_properties import ORGS, PURPOSES, packs, rule_for, rule_keys

LEVELS = {"hit": 1, "aggregate": 2, "disclose": 3}
KIND_LEVEL = {"disclosure": 3, "hit": 1}


@st.composite
def live_and_draft(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A random pack, and a draft of it: some of its rules kept, others drawn anew."""
    live, _ = draw(packs())
    cats = live["categories"]
    rules: list[dict[str, Any]] = []
    taken: set[tuple[str, ...]] = set()
    candidates = [r for r in live["rules"] if draw(st.booleans())]
    candidates += [draw(rule_for(cats, f"n-{i}")) for i in range(draw(st.integers(0, 4)))]
    for rule in candidates:
        keys = rule_keys(rule, cats)
        if keys & taken:
            continue
        taken |= keys
        rules.append(rule)
    return live, {**live, "version": "2", "rules": rules}


@st.composite
def signals(draw: st.DrawFn, cats: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(category, source, legal basis) of a few signals as intake would accept them."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        category = draw(st.sampled_from(sorted(cats)))
        out.append((category, draw(st.sampled_from(cats[category]["contributors"])),
                    draw(st.sampled_from(cats[category]["legal_bases"]))))
    return out


def granted(data: dict[str, Any], key: tuple[str, ...], level: int) -> bool:
    """Whether a rule of the pack covers `key` at `level` or above (by hand)."""
    return any(key in rule_keys(r, data["categories"]) and LEVELS[r["access"]] >= level
               for r in data["rules"])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pair=live_and_draft(), data=st.data())
def test_gained_and_lost_are_the_difference_of_the_two_answers(
    runtime: Runtime, pair: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    live_data, draft_data = pair
    # Mostly what some rule of either pack covers, so that answers differ; some anything.
    keys: list[tuple[str, ...]] = sorted(set().union(*(
        rule_keys(r, live_data["categories"]) for r in live_data["rules"] + draft_data["rules"]
        if r["access"] == "disclose")))
    stored = data.draw(signals(live_data["categories"]))
    if keys:  # the signals of keys a disclosure rule covers, in this example's pack or draft
        stored += [(k[2], k[3], k[4]) for k in data.draw(st.lists(st.sampled_from(keys),
                                                                   min_size=1, max_size=6))]
    askers = st.tuples(st.sampled_from(ORGS), st.sampled_from(PURPOSES))
    if keys:
        askers = st.sampled_from(sorted({k[:2] for k in keys})) | askers
    requests = data.draw(st.lists(st.tuples(st.sampled_from(["disclosure", "hit"]), askers)
                                  .map(lambda r: (r[0], *r[1])), min_size=1, max_size=6))
    token = secrets.token_bytes(16)  # this example's subject: no other example's signals
    now = utcnow()
    observed = now - timedelta(days=1)
    ids = [f"sig_{token.hex()[:12]}_{n}" for n in range(len(stored))]
    with runtime.engine.begin() as conn:
        conn.execute(delete(request_journal))
        for signal_id, (category, source, basis) in zip(ids, stored, strict=True):
            conn.execute(signal.insert().values(
                id=signal_id, source=source, category=category, legal_basis=basis,
                subject_type="person", observed_at=observed, received_at=observed,
                retention_until=now + timedelta(days=30), key_version=1,
                created_by="property"))
            conn.execute(signal_index.insert().values(
                token=token, signal_id=signal_id, category=category, source=source,
                legal_basis=basis, observed_at=observed))
        lookup = Lookup("subject", token=token, subject=token)
        for kind, recipient, purpose in requests:
            for table, rows in journal.journal_rows(runtime, kind, recipient, purpose, lookup,
                                                   None, now):
                conn.execute(table.insert(), list(rows))
    live = CompiledPolicy(load_pack_from_text(as_files(live_data)))
    draft = CompiledPolicy(load_pack_from_text(as_files(draft_data)))

    report = impact.compare(runtime, live, draft, now - timedelta(minutes=1), utcnow())

    gained = lost = flipped = 0
    for kind, recipient, purpose in requests:
        level = KIND_LEVEL[kind]
        before = {i for i, (c, s, b) in zip(ids, stored, strict=True)
                  if granted(live_data, (recipient, purpose, c, s, b), level)}
        after = {i for i, (c, s, b) in zip(ids, stored, strict=True)
                 if granted(draft_data, (recipient, purpose, c, s, b), level)}
        if kind == "disclosure":
            gained, lost = gained + len(after - before), lost + len(before - after)
        else:
            flipped += bool(before) != bool(after)
    event("something gained or lost" if gained or lost else "nothing gained or lost")
    event("a hit flips" if flipped else "no hit flips")
    totals = report.totals
    assert (totals["requests"], totals["signals_gained"], totals["signals_lost"],
            totals["hits_flipped"]) == (len(requests), gained, lost, flipped)
    per_rule = [r for g in report.groups.values() for r in g.rules.values()]
    assert sum(r.signals_gained for r in per_rule) == gained
    assert sum(r.signals_lost for r in per_rule) == lost
