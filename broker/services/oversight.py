"""What the privacy officer reads beside the log's entries: the overview (the log's state,
its alerts, acts per day and per recipient, open re-identification requests), the history of packs
made live, the organisation's legal holds, and the re-identification requests.

Each read a page shows is recorded first, as the officer's `audit_read` (fail closed:
nothing is read for a view that could not be recorded). The counting is done here, since
the audit log has no aggregate query: the entries of the acts that count (disclosures,
hits, area summaries, refusals, re-identifications) since a date are read through the
(action, time) index, each through `entry_view` (the outcome lives only in the entry
bytes); reads of the log itself, the bulk of it, are never fetched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select

from broker.audit.drafts import draft, without_none
from broker.audit.integrity import LiveReport
from broker.audit.partner_view import acting_org
from broker.audit.reads import entry_view
from broker.audit.signer import StoredCheckpoint, latest_checkpoint
from broker.audit.tables import audit_entry, tree_size
from broker.auth.actors import Actor
from broker.clock import as_utc
from broker.errors import NotFound
from broker.models import policy_load, policy_version
from broker.models import reidentification as REQUESTS
from broker.models import signal as SIGNALS
from broker.runtime import Runtime
from broker.services import reidentification, retention

LOCAL: Final = ZoneInfo("Europe/Amsterdam")
SERIES: Final = ("disclosure", "refusal", "hit", "reidentification")
REQUEST_ACTIONS: Final = ("disclosure", "hit", "area_summary", "refusal")
COUNTED_ACTIONS: Final = (*REQUEST_ACTIONS, "reidentification_revealed")
HISTORY_LIMIT: Final = 100
REQUEST_LIMIT: Final = 200
_BATCH: Final = 1000
DISCLOSURE_SCAN: Final = 2000
ALERT_LIMIT: Final = 20
ALERT_SCAN: Final = 1000


# --- Recording the officer's reads ---


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads through the officer's pages: the officer's actor and the request's id."""

    actor: Actor
    request_id: str | None


def record_read(runtime: Runtime, reader: Reader, what: Mapping[str, Any], *,
                outcome: str = "granted", reason: str | None = None) -> None:
    """Record a read as an `audit_read` naming what was read (values None left out)."""
    runtime.audit.record(draft("audit_read", reader.actor, outcome=outcome, reason=reason,
                               request_id=reader.request_id, objects=without_none(what)))


# --- Dutch calendar days ---


def local_day(moment: str | datetime) -> date:
    """The Dutch calendar day of an entry time (an RFC 3339 string or an aware datetime)."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(LOCAL).date()


def day_start(day: date) -> datetime:
    """Midnight of a Dutch calendar day, in UTC."""
    return datetime.combine(day, time(), LOCAL).astimezone(UTC)


# --- Activity ---


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """Requests of one recipient organisation for one purpose, and how many were refused."""

    org: str | None
    purpose: str | None
    requests: int
    refused: int

    @property
    def share_refused(self) -> int:
        """Refused requests as a whole percentage of all requests."""
        return round(100 * self.refused / self.requests) if self.requests else 0


@dataclass(frozen=True, slots=True)
class Activity:
    """Counts per series and Dutch calendar day, and per recipient and purpose."""

    days: list[date]
    series: dict[str, list[int]]
    by_recipient: list[RecipientRow]

    @property
    def empty(self) -> bool:
        return not any(any(counts) for counts in self.series.values())


def classify(view: dict[str, Any]) -> str | None:
    """Which series of the chart an entry counts in, if any."""
    action, outcome = view.get("action"), view.get("outcome")
    if action == "refusal" or (action in REQUEST_ACTIONS and outcome == "refused"):
        return "refusal"
    if outcome != "granted":
        return None
    if action == "disclosure":
        return "disclosure"
    if action == "hit":
        return "hit"
    if action == "reidentification_revealed":
        return "reidentification"
    return None


def activity(engine: Engine, *, today: date, weeks: int) -> Activity:
    """Counts per Dutch calendar day of the last `weeks` weeks (today included), and per
    recipient organisation and purpose over the same days."""
    first = today - timedelta(days=7 * weeks - 1)
    days = [first + timedelta(days=n) for n in range(7 * weeks)]
    position = {day: n for n, day in enumerate(days)}
    series = {key: [0] * len(days) for key in SERIES}
    requests: Counter[tuple[str | None, str | None]] = Counter()
    refused: Counter[tuple[str | None, str | None]] = Counter()
    query = (
        select(audit_entry.c.seq, audit_entry.c.bytes)
        .where(audit_entry.c.action.in_(COUNTED_ACTIONS), audit_entry.c.time >= day_start(first))
    )  # in no particular order: counts; an (action, time) index finds the window
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
        for seq, data in result:
            view = entry_view(int(seq), bytes(data))
            if view.get("damaged"):
                continue
            kind = classify(view)
            at = position.get(local_day(view["time"]))
            if kind is not None and at is not None:
                series[kind][at] += 1
            if view["action"] in REQUEST_ACTIONS:
                key = (acting_org(view), view["purpose"])
                requests[key] += 1
                if kind == "refusal":
                    refused[key] += 1
    rows = [
        RecipientRow(org, purpose, count, refused[(org, purpose)])
        for (org, purpose), count in requests.items()
    ]
    rows.sort(key=lambda r: (r.org or "", r.purpose or ""))
    return Activity(days, series, rows)


# --- Alerts ---


@dataclass(frozen=True, slots=True)
class Alert:
    """Something the officer should look at: its kind, the entry it concerns (if any),
    when, and who acted."""

    kind: str
    seq: int | None
    time: str | datetime | None
    org: str | None
    code: str | None = None


def alert_kind(action: str, entry: Mapping[str, Any]) -> str | None:
    """Which alert an entry is, if any: `fishing` (too many distinct subjects asked about),
    `lockout` (a release budget spent: further requests refused), `policy_reload` (a
    reload of a pack that does not load)."""
    reason = entry.get("reason")
    if action == "alert":
        return "lockout" if reason == "too_many_signals" else "fishing"
    if action == "refusal" and reason == "policy_pack_invalid":
        return "policy_reload"
    return None


def entry_alerts(engine: Engine, *, limit: int = ALERT_LIMIT) -> list[Alert]:
    """The newest alerts the log records, newest first: every `alert` entry and the
    refusals of a policy reload (the latest `ALERT_SCAN` refusals are read for those)."""
    found: list[Alert] = []
    with engine.connect() as conn:
        for action, cap in (("alert", limit), ("refusal", ALERT_SCAN)):
            query = (select(audit_entry.c.seq, audit_entry.c.bytes)
                     .where(audit_entry.c.action == action)
                     .order_by(audit_entry.c.seq.desc()).limit(cap))
            for seq, data in conn.execute(query):
                view = entry_view(int(seq), bytes(data))
                kind = None if view.get("damaged") else alert_kind(action, view)
                if kind is not None:
                    found.append(Alert(kind, int(seq), view["time"], acting_org(view),
                                       view.get("reason")))
    found.sort(key=lambda alert: alert.seq or 0, reverse=True)
    return found[:limit]


def integrity_alerts(report: LiveReport) -> list[Alert]:
    """The live verification's problems as alerts, each at the entry it names."""
    return [Alert("integrity", problem.seq, report.checked_at, None, problem.code)
            for problem in report.problems]


# --- The overview ---


@dataclass(frozen=True, slots=True)
class Overview:
    """The log's size and latest checkpoint, its activity, and the pending requests."""

    size: int
    checkpoint: StoredCheckpoint | None
    activity: Activity
    open_requests: list[dict[str, Any]]
    alerts: list[Alert]


def overview(runtime: Runtime, reader: Reader, *, today: date, weeks: int) -> Overview:
    """The overview page's figures over the last `weeks` weeks (the read recorded first)."""
    record_read(runtime, reader, {"read": "officer_overview"})
    with runtime.engine.connect() as conn:
        size, checkpoint = tree_size(conn), latest_checkpoint(conn)
    figures = activity(runtime.engine, today=today, weeks=weeks)
    pending = _requests(runtime, _org(reader), status="pending")
    return Overview(size, checkpoint, figures, pending, entry_alerts(runtime.engine))


# --- Policy history ---


@dataclass(frozen=True, slots=True)
class Load:
    """One activation of a pack."""

    loaded_at: datetime
    hash: str
    pack: str
    version: str
    loaded_by: str


def policy_history(runtime: Runtime, reader: Reader, *,
                   limit: int = HISTORY_LIMIT) -> list[Load]:
    """The most recent activations, newest first, from the `policy_load` and
    `policy_version` tables `broker.services.packs` writes (the read recorded first)."""
    record_read(runtime, reader, {"read": "officer_policy"})
    query = (
        select(policy_load.c.loaded_at, policy_load.c.hash, policy_version.c.pack,
               policy_version.c.version, policy_load.c.loaded_by)
        .join(policy_version, policy_version.c.hash == policy_load.c.hash)
        .order_by(policy_load.c.id.desc())
        .limit(limit)
    )
    with runtime.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Load(as_utc(at), h, p, v, by) for at, h, p, v, by in rows]


# --- Legal holds ---


def organisation_holds(runtime: Runtime, reader: Reader, org: str, *,
                       limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The organisation's legal holds, newest first, as `retention.listed` gives them
    (the read recorded first)."""
    record_read(runtime, reader, {"read": "officer_legal_holds"})
    return retention.listed(runtime, org, limit=limit)


# --- Re-identification requests ---


def _org(reader: Reader) -> str:
    return reader.actor.org or ""


def _requests(runtime: Runtime, org: str, *,
              status: str | None = None) -> list[dict[str, Any]]:
    """The requests an officer of `org` sees, newest first (at most `REQUEST_LIMIT`),
    optionally of one status, each as the re-identification service lists it (with the
    requester's `client_id` and the `rule`)."""
    return reidentification.list_requests(runtime, org, status=status,
                                          limit=REQUEST_LIMIT)[0]


def reidentification_queue(runtime: Runtime, reader: Reader) -> list[dict[str, Any]]:
    """The re-identification requests the officer sees, newest first: those on its
    organisation's signals (every one for the covenant's officer) and its organisation's
    own (the read recorded first: a justification may name people)."""
    record_read(runtime, reader, {"read": "officer_reidentifications"})
    return _requests(runtime, _org(reader))


def reidentification_request(runtime: Runtime, request_id: str, org: str, *,
                             reader: Reader | None) -> dict[str, Any]:
    """One request an officer of `org` sees, with its justification, the requester's
    `client_id`, the `rule` and whether the officer may decide it; NotFound if there is
    none it sees. A page view gives its `reader` and the read is recorded first; `reader`
    None reads without a record (the decision form shown again to say why a decision was
    not taken)."""
    if reader is not None:
        record_read(runtime, reader,
                    {"read": "officer_reidentification", "reidentification": request_id})
    with runtime.engine.connect() as conn:
        row = conn.execute(select(REQUESTS).where(REQUESTS.c.id == request_id[:64])).first()
        signal = None if row is None else conn.execute(
            select(SIGNALS.c.source, SIGNALS.c.category).where(SIGNALS.c.id == row.signal_id)
        ).first()
        source = signal.source if signal is not None else None
        pack = runtime.policy.pack
        if row is None or not reidentification.officer_sees(pack, org, row.org, source or ""):
            raise NotFound("No such re-identification request.")
        seq, disclosed = _disclosure_entry(conn, row)
    item: dict[str, Any] = next(
        (i for i in disclosed.get("items", ()) if i.get("signal_id") == row.signal_id), {})
    may_decide = org in reidentification.deciding_orgs(pack, source or "")
    return {**reidentification.view(runtime.keys, row), "client_id": row.client_id,
            "rule": row.rule, "may_decide": may_decide, "source": source,
            "category": signal.category if signal is not None else item.get("category"),
            "case_reference": disclosed.get("case_reference"), "disclosure_seq": seq}


def _disclosure_entry(conn: Connection, row: Any) -> tuple[int | None, dict[str, Any]]:
    """(seq, entry) of the disclosure that released the request's signal: the latest
    disclosure entry of the requester and purpose, up to the request, that names the
    disclosure and the signal ((None, {}) when none of the last `DISCLOSURE_SCAN` does)."""
    query = (
        select(audit_entry.c.seq, audit_entry.c.bytes)
        .where(audit_entry.c.action == "disclosure", audit_entry.c.org == row.org,
               audit_entry.c.purpose == row.purpose,
               audit_entry.c.time <= as_utc(row.created_at))
        .order_by(audit_entry.c.seq.desc())
        .limit(DISCLOSURE_SCAN)
    )
    for seq, data in conn.execute(query):
        view = entry_view(int(seq), bytes(data))
        if (not view.get("damaged")
                and view["objects"].get("disclosure_id") == row.disclosure_id
                and any(i.get("signal_id") == row.signal_id for i in view["items"])):
            return int(seq), view
    return None, {}
