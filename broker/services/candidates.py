"""Finding the signals a request is about: through the blind index, or by id. Reads only.

Identifiers in a query are normalised exactly as intake normalises them, then turned into
the same keyed blind-index tokens; no clear identifier is ever compared in SQL. Only the
clear envelope columns (category, source, legal basis, observed time) are read for the
policy decision; payloads are decrypted later, and only for signals a rule releases.

`find_reachable` reads only what a request's rules can release (`CompiledPolicy.reach`):
the blind index holds each signal's envelope, and the database seeks each (token,
category, source, legal basis) from the oldest observation its rule accepts. A signal the
caller may not see is never read, so it costs the request nothing: neither time nor a
place under the read's limit (docs/security.md row 51).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine

from broker.clock import as_utc
from broker.core import identifiers
from broker.core.policy.evaluate import Reach
from broker.db import read_rows
from broker.errors import FieldProblem, ValidationFailed
from broker.keys import KeyRing
from broker.schemas.disclosures import AddressQuery, AreaQuery, DisclosureQuery, SubjectQuery
from broker.sealing import Unreadable, blind_token, unseal
from broker.services.intake import address_key

MAX_CANDIDATES: Final = 5000
"""Signals one request considers at most (an area query over a busy postcode)."""

# The identifier each subject type is known by, as intake chooses it.
_SUBJECT_KIND = {"person": "bsn", "company": "kvk", "vehicle": "plate"}


def _invalid(loc: tuple[str | int, ...], message: str) -> ValidationFailed:
    return ValidationFailed("The query is not valid; see `errors`.",
                            errors=[FieldProblem(loc, message)])


def normalised_identifier(kind: str, value: str) -> str | None:
    """An identifier as intake stores it, or None when it is malformed."""
    if kind == "plate":
        return identifiers.normalise_plate(value)
    valid = {
        "bsn": identifiers.is_valid_bsn,
        "kvk": identifiers.is_valid_kvk,
        "bag_id": identifiers.is_valid_bag_id,
    }[kind]
    return value if valid(value) else None


def subject_token(keys: KeyRing, query: SubjectQuery, loc: tuple[str | int, ...]) -> bytes:
    """The blind-index token of the one identifier in `query`; 422 when it is malformed."""
    kind, value = query.identifier()
    normalised = normalised_identifier(kind, value)
    if normalised is None:
        raise _invalid((*loc, kind), f"not a valid {kind}")
    return blind_token(keys.active("blind_index"), kind, normalised)


def address_token(keys: KeyRing, query: AddressQuery, loc: tuple[str | int, ...]) -> bytes:
    postcode = identifiers.normalise_postcode(query.postcode)
    if postcode is None:
        raise _invalid((*loc, "postcode"), "not a postcode (1234AB)")
    key = address_key(postcode, query.house_number, query.house_letter, query.addition)
    return blind_token(keys.active("blind_index"), "address", key)


def area_of(query: AreaQuery, loc: tuple[str | int, ...]) -> tuple[str, str]:
    """("pc4" | "pc6", normalised postcode) of an area; 422 for anything else."""
    text = query.postcode.strip()
    if len(text) == 4 and text.isdigit() and text[0] != "0":
        return "pc4", text
    postcode = identifiers.normalise_postcode(text)
    if postcode is None:
        raise _invalid((*loc, "postcode"), "not a postcode area (1234AB or 1234)")
    return "pc6", postcode


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where to look: one blind-index token, or signal ids. `subject` is the token of the
    subject or address asked about (audited as the subject the request concerned)."""

    kind: str
    token: bytes | None = None
    signal_ids: tuple[str, ...] = ()
    subject: bytes | None = None
    area: str | None = None


def lookup_for(keys: KeyRing, query: DisclosureQuery) -> Lookup:
    """The look-up a disclosure query asks for."""
    loc: tuple[str | int, ...] = ("body", "query")
    if query.subject is not None:
        token = subject_token(keys, query.subject, (*loc, "subject"))
        return Lookup("subject", token=token, subject=token)
    if query.address is not None:
        token = address_token(keys, query.address, (*loc, "address"))
        return Lookup("address", token=token, subject=token)
    if query.area is not None:
        level, postcode = area_of(query.area, (*loc, "area"))
        return Lookup(level, token=area_token(keys, level, postcode), area=postcode)
    return Lookup("signals", signal_ids=tuple(dict.fromkeys(query.signals or ())))


def area_token(keys: KeyRing, level: str, postcode: str) -> bytes:
    return blind_token(keys.active("blind_index"), level, postcode)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live signal's clear envelope, and its sealed payload when asked for.
    `observed_us` is its observation time exactly (microseconds since the epoch), where a
    page continues from."""

    id: str
    source: str
    category: str
    legal_basis: str
    observed_ts: float
    key_version: int = 0
    wrapped_key: bytes | None = None
    ciphertext: bytes | None = None
    observed_us: int = 0


@dataclass(frozen=True, slots=True)
class After:
    """Where a page continues: after the signal observed at `observed_us` with `signal_id`,
    in the order candidates come (observation time, then id)."""

    observed_us: int
    signal_id: str


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_DECODER: Final = json.JSONDecoder()
_MICROSECOND: Final = timedelta(microseconds=1)
_SLACK: Final = 1.0
"""Seconds a reach's `since` is widened by in SQL: the database compares stored times,
the rule decides each signal exactly afterwards."""
_MARK = {"sqlite": "?", "postgresql": "%s"}
_ENVELOPE = "s.id, s.source, s.category, s.legal_basis, s.observed_at"
_SEALED = ", s.key_version, s.wrapped_key, s.ciphertext"
_FOUND = "r.signal_id, r.source, r.category, r.legal_basis, r.observed_at"
Term = tuple[str, str | None, str | None, float | None]
"""(category, source, legal basis, since) of one seek; None source and basis: the
category whole (`find` by categories)."""
_sql_cache: dict[tuple[str, bool, bool, int, int, bool, bool], str] = {}
_since_cache: dict[tuple[str, int | None], Any] = {}


def _stored(dialect: str, moment: datetime) -> Any:
    """A time as the driver compares it with stored ones: SQLite holds the text SQLAlchemy
    writes (UTC, always with microseconds), PostgreSQL a timestamptz."""
    if dialect == "sqlite":
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond:06d}"
    return moment


def _since(dialect: str, since: float | None) -> Any:
    """The lower bound of a seek for a reach's `since`: widened by `_SLACK` and down to the
    minute, so that one request after another mostly reuses the same (cached) value."""
    minute = None if since is None else int((since - _SLACK) // 60) * 60
    key = (dialect, minute)
    found = _since_cache.get(key)
    if found is None:
        if len(_since_cache) > 256:
            _since_cache.clear()
        if minute is None:
            found = ("0001-01-01 00:00:00.000000" if dialect == "sqlite"
                     else datetime.min.replace(tzinfo=UTC))
        else:
            found = _stored(dialect, datetime.fromtimestamp(minute, UTC))
        _since_cache[key] = found
    return found


def _seek(mark: str, whole: bool, after: bool) -> str:
    """One term's seek of `ix_signal_index_reach`."""
    where = [f"i.token = {mark}", f"i.category = {mark}"]
    if not whole:
        where += [f"i.source = {mark}", f"i.legal_basis = {mark}", f"i.observed_at >= {mark}"]
        if after:
            where.append(f"(i.observed_at > {mark} OR i.signal_id > {mark})")
    return ("SELECT i.signal_id, i.source, i.category, i.legal_basis, i.observed_at"  # noqa: S608
            f" FROM signal_index i WHERE {' AND '.join(where)}")


def _sql(dialect: str, *, with_payload: bool, by_token: bool, n_ids: int, n_terms: int,
         whole_categories: bool, after: bool) -> str:
    """The look-up statement for the driver's own parameter style, built once per shape.

    Runs on the driver connection, not through SQLAlchemy's statement layer: building and
    executing a Core select costs about 15 times the query itself here (220 µs against
    16 µs on SQLite), on the path every disclosure takes. Only our own column names and
    placeholders go into the text; every value is a bound parameter.

    By token, each term is a seek of its own in `ix_signal_index_reach` (a union, not one
    condition with ORs, which PostgreSQL may run as one scan of the token's rows), so the
    database reads no index row outside the terms; the index holds the envelope, and only
    a disclosure goes on to the signal rows, one by its key for each row found (on
    PostgreSQL a lateral look-up, so the planner cannot choose to walk the table instead).
    Index rows exist for live signals only: erasure deletes them with the payload's key.
    """
    key = (dialect, with_payload, by_token, n_ids, n_terms, whole_categories, after)
    found = _sql_cache.get(key)
    if found is not None:
        return found
    mark = _MARK[dialect]
    if by_token:
        seeks = " UNION ALL ".join([_seek(mark, whole_categories, after)] * n_terms)
        rows = f"({seeks}) AS r"
        if not with_payload:
            body = f"SELECT {_FOUND} FROM {rows}"  # noqa: S608
        elif dialect == "postgresql":
            body = (f"SELECT {_FOUND}{_SEALED} FROM {rows} CROSS JOIN LATERAL (SELECT"  # noqa: S608
                    f" {_SEALED[2:]} FROM signal s WHERE s.id = r.signal_id"
                    " AND s.erased_at IS NULL LIMIT 1) AS s")
        else:
            body = (f"SELECT {_FOUND}{_SEALED} FROM {rows} "  # noqa: S608
                    "JOIN signal s ON s.id = r.signal_id"
                    " WHERE s.erased_at IS NULL")
        order = "r.observed_at, r.signal_id"
    else:
        t = "s"
        parts = [f"{t}.category = {mark}"]
        if not whole_categories:
            parts += [f"{t}.source = {mark}", f"{t}.legal_basis = {mark}",
                      f"{t}.observed_at >= {mark}"]
            if after:
                parts.append(f"({t}.observed_at > {mark} OR s.id > {mark})")
        terms = " OR ".join(["(" + " AND ".join(parts) + ")"] * n_terms)
        columns = _ENVELOPE + (_SEALED if with_payload else "")
        body = (f"SELECT {columns} FROM signal s WHERE s.id IN"  # noqa: S608
                f" ({', '.join([mark] * n_ids)}) AND s.erased_at IS NULL AND ({terms})")
        order = "s.observed_at, s.id"
    found = _sql_cache[key] = f"{body} ORDER BY {order} LIMIT {mark}"
    return found


def statement(dialect: str, lookup: Lookup, terms: Sequence[Term], *, with_payload: bool,
              limit: int, after: After | None = None) -> tuple[str, list[Any]]:
    """The statement and parameters that find `lookup`'s live signals within `terms`,
    oldest first, after `after`; the terms must all name a source, or none."""
    whole = terms[0][1] is None
    by_token = lookup.token is not None
    sql = _sql(dialect, with_payload=with_payload, by_token=by_token,
               n_ids=len(lookup.signal_ids), n_terms=len(terms), whole_categories=whole,
               after=after is not None)
    if by_token and after is None and not whole:  # the usual request: a kept template
        params = _template(dialect, terms)
        params[0:-1:5] = [lookup.token] * len(terms)
        params[-1] = limit
        return sql, params
    params = [] if by_token else list(lookup.signal_ids)
    tail: list[Any] = []
    if after is not None and not whole:
        moment = _stored(dialect, _EPOCH + after.observed_us * _MICROSECOND)
        tail = [moment, after.signal_id]
    token = [lookup.token] if by_token else []
    for category, source, basis, since in terms:
        if whole:
            params += [*token, category]
        elif tail:
            params += [*token, category, source, basis, max(_since(dialect, since), tail[0]),
                       *tail]
        else:
            params += [*token, category, source, basis, _since(dialect, since)]
    params.append(limit)
    return sql, params


_templates: dict[tuple[str, int], tuple[Sequence[Term], list[Any]]] = {}


def _template(dialect: str, terms: Sequence[Term]) -> list[Any]:
    """A fresh copy of the parameters of a by-token seek of `terms` (token and limit left
    open), kept while the same terms object comes back."""
    key = (dialect, id(terms))
    found = _templates.get(key)
    if found is None or found[0] is not terms:
        if len(_templates) >= 256:
            _templates.clear()
        flat: list[Any] = []
        for category, source, basis, since in terms:
            flat += [None, category, source, basis, _since(dialect, since)]
        found = _templates[key] = (terms, [*flat, None])
    return list(found[1])


def find(
    engine: Engine,
    lookup: Lookup,
    categories: Collection[str],
    *,
    with_payload: bool,
    limit: int = MAX_CANDIDATES,
) -> list[Candidate]:
    """Live (not erased) signals of `categories` that the look-up names, oldest first.

    Categories the caller can receive nothing of are left out in SQL already; the caller
    still decides each signal by its rule. `find_reachable` leaves out every signal no
    rule of the request reaches.
    """
    terms: list[Term] = [(c, None, None, None) for c in sorted(categories)]
    return _find(engine, lookup, terms, with_payload=with_payload, limit=limit)


def find_reachable(
    engine: Engine,
    lookup: Lookup,
    reach: Sequence[Reach],
    *,
    with_payload: bool,
    limit: int = MAX_CANDIDATES,
    after: After | None = None,
) -> list[Candidate]:
    """Live signals the look-up names within `reach` (`CompiledPolicy.reach`), oldest
    first, after `after`: exactly the (category, source, legal basis) a rule of the request
    can release, no older than its rule accepts. Signals outside are never read, so the
    answer's time does not depend on them. The caller still decides each by its rule."""
    return _find(engine, lookup, _terms(reach), with_payload=with_payload, limit=limit,
                 after=after)


_terms_cache: dict[int, tuple[Sequence[Reach], list[Term]]] = {}


def _terms(reach: Sequence[Reach]) -> list[Term]:
    """The terms of a reach; kept while the same reach object comes back (a compiled pack
    keeps one per recipient, purpose, level and minute)."""
    found = _terms_cache.get(id(reach))
    if found is not None and found[0] is reach:
        return found[1]
    terms: list[Term] = [(r.category, r.source, r.legal_basis, r.since) for r in reach]
    if len(_terms_cache) >= 256:
        _terms_cache.clear()
    _terms_cache[id(reach)] = (reach, terms)
    return terms


def _find(engine: Engine, lookup: Lookup, terms: Sequence[Term], *, with_payload: bool,
          limit: int, after: After | None = None) -> list[Candidate]:
    if not terms or (lookup.token is None and not lookup.signal_ids):
        return []
    sql, params = statement(engine.dialect.name, lookup, terms, with_payload=with_payload,
                            limit=limit, after=after)
    rows = read_rows(engine, sql, params, "signal store")
    return [_candidate(row, with_payload) for row in rows]


def _micros(value: datetime | str) -> int:
    """Microseconds since the epoch of a stored time: psycopg gives aware datetimes,
    sqlite3 the text SQLAlchemy wrote (UTC, without offset)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
        if value.tzinfo is None:  # as SQLAlchemy writes it: UTC
            return (value - _NAIVE_EPOCH) // _MICROSECOND
    return (as_utc(value) - _EPOCH) // _MICROSECOND


def _candidate(row: Sequence[Any], with_payload: bool) -> Candidate:
    micros = _micros(row[4])
    observed_ts = micros / 1_000_000
    if not with_payload:
        return Candidate(row[0], row[1], row[2], row[3], observed_ts, observed_us=micros)
    wrapped = None if row[6] is None else bytes(row[6])
    sealed = None if row[7] is None else bytes(row[7])
    return Candidate(row[0], row[1], row[2], row[3], observed_ts, int(row[5]), wrapped, sealed,
                     micros)


def payload_of(keys: KeyRing, candidate: Candidate) -> dict[str, Any] | None:
    """The decrypted payload, or None when the signal was erased meanwhile."""
    try:
        plain = unseal(keys, candidate.key_version, candidate.wrapped_key, candidate.ciphertext,
                       candidate.id.encode())
    except Unreadable:
        return None
    try:  # `json.loads` without its encoding and whitespace passes, on UTF-8 JSON alone
        text = plain.decode("utf-8")
        found, end = _DECODER.raw_decode(text)
    except ValueError:
        text, end = "", -1  # anything else: `json.loads` decides, answer or error
    payload: dict[str, Any] = found if end == len(text) else json.loads(plain)
    return payload


def signal_subject_token(keys: KeyRing, payload: dict[str, Any],
                         known: dict[tuple[str, str], bytes] | None = None) -> bytes | None:
    """The blind-index token of the subject a signal is about, chosen as intake chooses it:
    the BSN, KvK number or plate; for an address its BAG id, else the address itself.
    `known` keeps one request's tokens (its signals mostly share a subject); never longer."""
    found = _subject_identifier(payload)
    if found is None:
        return None
    token = (known or {}).get(found) or blind_token(keys.active("blind_index"), *found)
    if known is not None:
        known[found] = token
    return token


def _subject_identifier(payload: dict[str, Any]) -> tuple[str, str] | None:
    subject = payload.get("subject") or {}
    kind = _SUBJECT_KIND.get(subject.get("type", ""))
    if kind is not None:
        value = subject.get(kind)
        return (kind, value) if value else None
    if subject.get("bag_id"):
        return "bag_id", subject["bag_id"]
    location = payload.get("location") or {}
    if location.get("postcode") and location.get("house_number"):
        return "address", address_key(location["postcode"], location["house_number"],
                                      location.get("house_letter"), location.get("addition"))
    return None
