"""How much one disclosure releases: its page, the budgets it draws on, the subjects it
names (docs/security.md row 52, docs/api.md "Disclosures, hits and area summaries").

- A disclosure answer carries at most `disclosure_page_size` signals, oldest first. When
  more match, the answer's `next_page` is an opaque token the caller sends back as `page`
  with the same query for the next page: each page is a request of its own, counted,
  limited and audited as one. The token names where the page ended (the last signal's
  observation time and id), sealed (AES-256-GCM under a key derived from the master key)
  and bound to the organisation, purpose and query it continues: it shows nothing of the
  signals, cannot be made up or moved to another query, and a damaged one is a 422.
- Each released signal counts against the client's and the acting person's budget
  (`broker.services.budget`); an exhausted budget is 429, its first refusal an `alert`.
- A query that names no subject (an area, signal ids) counts the subjects of the signals
  it releases against the distinct-subject brake, and its page ends before the first
  subject that does not fit; when none fits, 429 as for any fishing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.core.policy.evaluate import CompiledRule
from broker.errors import FieldProblem, ValidationFailed
from broker.keys import KeyRing
from broker.runtime import LivePolicy, Runtime
from broker.schemas.disclosures import DisclosureQuery
from broker.services.budget import ReleaseBudget
from broker.services.candidates import After, Candidate
from broker.services.purpose_binding import Asker, AuditedRefusal, draft

PAGE_PREFIX: Final = "p1"
_CONTEXT: Final = b"sluis/disclosure-page/v1"
_NONCE: Final = 12


class Releasable(Protocol):
    @property
    def subject(self) -> bytes | None: ...


R = TypeVar("R", bound=Releasable)


def budget_keys(asker: Asker) -> tuple[str, ...]:
    """The budgets a request draws on: its client's, and its acting person's if named."""
    tag = asker.actor.acting_user_tag
    client = "client:" + asker.client_id
    return (client, f"person:{asker.org}:{tag}") if tag else (client,)


def check_budget(budget: ReleaseBudget, live: LivePolicy, asker: Asker,
                 keys: tuple[str, ...] | None = None) -> None:
    """429 when a budget of the request has nothing left; the first time in an episode an
    `alert` entry is recorded first."""
    keys = keys or budget_keys(asker)
    first = budget.exhausted(keys)
    if first is None:
        return
    error = budget.over_budget(keys)
    if first:
        raise AuditedRefusal(
            draft(asker, live, "alert", outcome="refused", reason="too_many_signals",
                  objects={"released_signals_per_hour": budget.per_hour}),
            error)
    raise error


def _take(budget: ReleaseBudget, live: LivePolicy, asker: Asker, keys: tuple[str, ...],
          wanted: int) -> int:
    if wanted <= 0:
        return 0
    granted = budget.take(keys, wanted)
    if granted == 0:  # spent by a request racing this one since `check_budget`
        check_budget(budget, live, asker, keys)
        granted = budget.take(keys, wanted)
        if granted == 0:
            raise budget.over_budget(keys)
    return granted


def _fitting(runtime: Runtime, live: LivePolicy, asker: Asker,
             subjects: Sequence[bytes | None]) -> int:
    limits = runtime.limits
    fitting = limits.ask_about_released(asker.client_id, subjects)
    if fitting or not subjects:
        return fitting
    raise AuditedRefusal(
        draft(asker, live, "alert", outcome="refused", reason="too_many_subjects",
              objects={"distinct_subjects_per_hour": limits.subjects_per_hour}),
        limits.over_limit(asker.client_id))


def release_page(
    runtime: Runtime, live: LivePolicy, asker: Asker,
    decided: Sequence[tuple[Candidate, CompiledRule]], *, fetched: Sequence[Candidate],
    fetch_limit: int, count_subjects: bool, release: Callable[[Candidate, CompiledRule], R | None],
) -> tuple[list[R], After | None]:
    """Release one page of `decided` (the fetched candidates a rule releases, in order):
    at most a page and what the budgets grant, decrypting only those; with
    `count_subjects`, up to the first subject over the brake. Returns the released and,
    when more may follow, where the next page continues."""
    page_size = runtime.settings.disclosure_page_size
    keys = budget_keys(asker)
    granted = _take(runtime.budget, live, asker, keys, min(len(decided), page_size))
    released: list[tuple[int, R]] = []
    last = -1  # the last of `decided` this page has dealt with
    kept = 0  # what the budgets keep: nothing when the page is refused
    try:
        for index, (candidate, rule) in enumerate(decided):
            if len(released) == granted:
                break
            last = index
            one = release(candidate, rule)
            if one is not None:
                released.append((index, one))
        if count_subjects and released:
            fitting = _fitting(runtime, live, asker, [r.subject for _, r in released])
            if fitting < len(released):
                last = released[fitting][0] - 1
                released = released[:fitting]
        kept = len(released)
    finally:
        if granted > kept:
            runtime.budget.give_back(keys, granted - kept)
    after = None
    if 0 <= last < len(decided) - 1:
        after = _position(decided[last][0])
    elif fetched and len(fetched) >= fetch_limit:  # cut by the fetch: go on after it
        after = _position(fetched[-1])
    return [r for _, r in released], after


def _position(candidate: Candidate) -> After:
    return After(candidate.observed_us, candidate.id)


# --- the page token ---------------------------------------------------------------------


def _binding(asker: Asker, query: DisclosureQuery) -> bytes:
    what = json.dumps([asker.org, asker.purpose, query.model_dump(mode="json")],
                      sort_keys=True, separators=(",", ":"))
    return _CONTEXT + b"\x00" + hashlib.sha256(what.encode()).digest()


def _key(keys: KeyRing, version: int) -> AESGCM:
    master = keys.version("master", version)
    return AESGCM(hmac.new(master.material, _CONTEXT, hashlib.sha256).digest())


def encode_page(keys: KeyRing, asker: Asker, query: DisclosureQuery, after: After) -> str:
    """The `next_page` token continuing `query` after `after`."""
    version = keys.active("master").version
    nonce = os.urandom(_NONCE)
    plain = f"{after.observed_us}|{after.signal_id}".encode()
    sealed = nonce + _key(keys, version).encrypt(nonce, plain, _binding(asker, query))
    return f"{PAGE_PREFIX}.{version}.{base64.urlsafe_b64encode(sealed).rstrip(b'=').decode()}"


def _not_a_page() -> ValidationFailed:
    return ValidationFailed("The request is not valid; see `errors`.",
                            errors=[FieldProblem(("body", "page"), "not a page of this query")])


def decode_page(keys: KeyRing, asker: Asker, query: DisclosureQuery, page: str) -> After:
    """Where the page token `page` continues `query`; 422 for any other token."""
    try:
        prefix, version, text = page.split(".")
        if prefix != PAGE_PREFIX or not version.isdigit():
            raise ValueError(page)
        sealed = base64.urlsafe_b64decode(text.encode("ascii") + b"==")
        plain = _key(keys, int(version)).decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                                 _binding(asker, query))
        micros, signal_id = plain.decode().split("|", 1)
        return After(int(micros), signal_id)
    except (ValueError, KeyError, InvalidTag, binascii.Error, UnicodeError):
        raise _not_a_page() from None
