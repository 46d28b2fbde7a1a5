"""The overview's figures: acts per day and per recipient and purpose, over recent weeks.

The audit service has no aggregate query, so this one reads the entries of the acts that
count (disclosures, hits, area summaries, refusals, re-identifications) since a date
through the (action, time) index, and reads each through the service's `entry_view`
(the outcome lives only in the entry bytes). Reads of the log itself, the bulk of it,
are never fetched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from broker.audit.reads import entry_view
from broker.audit.tables import audit_entry

LOCAL: Final = ZoneInfo("Europe/Amsterdam")
SERIES: Final = ("disclosure", "refusal", "hit", "reidentification")
REQUEST_ACTIONS: Final = ("disclosure", "hit", "area_summary", "refusal")
COUNTED_ACTIONS: Final = (*REQUEST_ACTIONS, "reidentification_revealed")
_BATCH: Final = 1000


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
    days: list[date]
    series: dict[str, list[int]]
    by_recipient: list[RecipientRow]

    @property
    def empty(self) -> bool:
        return not any(any(counts) for counts in self.series.values())


def local_day(moment: str | datetime) -> date:
    """The Dutch calendar day of an entry time (an RFC 3339 string or an aware datetime)."""
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(LOCAL).date()


def day_start(day: date) -> datetime:
    """Midnight of a Dutch calendar day, in UTC."""
    return datetime.combine(day, time(), LOCAL).astimezone(UTC)


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
                key = (view["org"], view["purpose"])
                requests[key] += 1
                if kind == "refusal":
                    refused[key] += 1
    rows = [
        RecipientRow(org, purpose, count, refused[(org, purpose)])
        for (org, purpose), count in requests.items()
    ]
    rows.sort(key=lambda r: (r.org or "", r.purpose or ""))
    return Activity(days, series, rows)
