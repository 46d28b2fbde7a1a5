"""`GET /metrics`: Prometheus text exposition format 0.0.4, written by hand.

The figures say how much each route is used, so they are served only to a scraper that
sends `Authorization: Bearer` with `BROKER_METRICS_TOKEN` (compared in constant time);
without that setting `/metrics` is off (404). The token is not an access token: a
partner's token opens nothing here, and the metrics token opens nothing else.

Request counts and latencies come from this process's `Observations` (so with several
worker processes each scrape sees one process, as with any per-process exporter).
Disclosures by outcome and entries by action come from the audit log itself, which all
processes share: each process tallies the entries appended since its last scrape (at
most `SCAN_CAP` per scrape, so a first scrape of a large log catches up over a few),
reading each entry once; alerts (`sluis_audit_alerts_total`) are counted in the same pass,
as the officer's overview lists them. The log is the truth about what was disclosed;
counting it rather than counting answers means the figures cannot drift from it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from broker.api.deps import RuntimeDep
from broker.api.observe import BUCKETS, Observations, Snapshot
from broker.api.routing import StrictJSONRoute
from broker.audit.tables import audit_entry, tree_size
from broker.errors import NotFound, Unauthorized
from broker.runtime import Runtime
from broker.services.oversight import alert_kind

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
SCAN_CAP: Final = 20_000
DISCLOSING: Final = frozenset({"disclosure", "hit", "area_summary"})
ALERT_KINDS: Final = ("fishing", "lockout", "policy_reload")

router = APIRouter(route_class=StrictJSONRoute, tags=["operations"])
_state_lock = threading.Lock()


@dataclass
class AuditTally:
    """Entries of the shared audit log counted by (action, outcome), read incrementally."""

    next_seq: int = 0
    entries: dict[tuple[str, str], int] = field(default_factory=dict)
    disclosures: dict[tuple[str, str], int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, engine: Engine, cap: int = SCAN_CAP) -> None:
        """Count the entries appended since the last refresh (at most `cap` of them)."""
        with self.lock:
            query = (
                select(audit_entry.c.seq, audit_entry.c.action, audit_entry.c.bytes)
                .where(audit_entry.c.seq >= self.next_seq)
                .order_by(audit_entry.c.seq)
                .limit(cap)
            )
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            for seq, action, data in rows:
                self._count(str(action), bytes(data))
                self.next_seq = int(seq) + 1

    def counts(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Copies of the (entries, disclosures) counts so far."""
        with self.lock:
            return dict(self.entries), dict(self.disclosures)

    def alert_counts(self) -> dict[str, int]:
        """A copy of the alerts counted so far, by kind (`broker.services.oversight`)."""
        with self.lock:
            return dict(self.alerts)

    def _count(self, action: str, data: bytes) -> None:
        try:
            entry: Any = json.loads(data)
            outcome = str(entry["outcome"])
            objects = entry.get("objects") or {}
            kind = alert_kind(action, entry)
        except (ValueError, KeyError, TypeError, AttributeError):
            outcome, objects, kind = "unreadable", {}, None
        _bump(self.entries, (action, outcome))
        if kind is not None:
            self.alerts[kind] = self.alerts.get(kind, 0) + 1
        if action in DISCLOSING:
            _bump(self.disclosures, (action, outcome))
        elif action == "refusal" and objects.get("request") in DISCLOSING:
            _bump(self.disclosures, (str(objects["request"]), outcome))


def _bump(counts: dict[tuple[str, str], int], key: tuple[str, str]) -> None:
    counts[key] = counts.get(key, 0) + 1


# --- rendering (pure) ---


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _requests(snapshot: Snapshot) -> list[str]:
    name = "sluis_http_requests_total"
    lines = _family(name, "counter", "HTTP requests by method, route template and status.")
    for (method, route, status), count in sorted(snapshot.requests.items()):
        labels = _labels((("method", method), ("route", route), ("status", str(status))))
        lines.append(f"{name}{labels} {count}")
    return lines


def _latency(snapshot: Snapshot) -> list[str]:
    name = "sluis_http_request_duration_seconds"
    lines = _family(name, "histogram", "Time from request to the end of the answer.")
    for (method, route), latency in sorted(snapshot.latency.items()):
        base = (("method", method), ("route", route))
        running = 0
        for bound, count in zip((*map(_number, BUCKETS), "+Inf"), latency.buckets, strict=True):
            running += count
            lines.append(f"{name}_bucket{_labels((*base, ('le', bound)))} {running}")
        lines.append(f"{name}_sum{_labels(base)} {_number(latency.total)}")
        lines.append(f"{name}_count{_labels(base)} {latency.count}")
    return lines


def _counted(
    name: str, help_text: str, first: str, counts: Mapping[tuple[str, str], int]
) -> list[str]:
    lines = _family(name, "counter", help_text)
    for (label, outcome), count in sorted(counts.items()):
        lines.append(f"{name}{_labels(((first, label), ('outcome', outcome)))} {count}")
    return lines


def render(
    snapshot: Snapshot,
    *,
    entries: Mapping[tuple[str, str], int],
    disclosures: Mapping[tuple[str, str], int],
    audit_size: int | None,
    audit_healthy: bool,
    alerts: Mapping[str, int] | None = None,
) -> str:
    """The exposition text of every family."""
    lines = _requests(snapshot) + _latency(snapshot)
    lines += _family("sluis_http_requests_in_flight", "gauge", "Requests being answered now.")
    lines.append(f"sluis_http_requests_in_flight {snapshot.in_flight}")
    lines += _counted(
        "sluis_disclosures_total",
        "Disclosures, hit checks and area summaries in the audit log, by outcome.",
        "request",
        disclosures,
    )
    lines += _counted(
        "sluis_audit_entries_total", "Audit entries by action and outcome.", "action",
        entries,
    )
    name = "sluis_audit_alerts_total"
    lines += _family(name, "counter", "Alerts in the audit log by kind (fishing, lockout, "
                                      "policy_reload), as the officer's overview lists them.")
    for kind in ALERT_KINDS:
        lines.append(f"{name}{_labels((('kind', kind),))} {(alerts or {}).get(kind, 0)}")
    lines += _family("sluis_audit_log_size", "gauge", "Entries in the audit log (tree size).")
    if audit_size is not None:
        lines.append(f"sluis_audit_log_size {audit_size}")
    lines += _family("sluis_audit_healthy", "gauge", "1 while the audit appender can append.")
    lines.append(f"sluis_audit_healthy {int(audit_healthy)}")
    return "\n".join(lines) + "\n"


# --- the route ---


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


async def scraper(request: Request) -> None:
    """Let the request through only with the metrics token (401), and only when one is
    configured (404 otherwise)."""
    runtime: Runtime = request.app.state.runtime
    expected = runtime.settings.metrics_token
    if expected is None:
        raise NotFound("Metrics are off: set BROKER_METRICS_TOKEN to serve them.")
    values = request.headers.getlist("authorization")
    scheme, _, presented = values[0].partition(" ") if len(values) == 1 else ("", "", "")
    # Digests of equal length, compared in constant time: neither the token nor its
    # length can be learnt from how long a refusal takes.
    if not (scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(presented.strip()), _digest(expected.get_secret_value()))):
        raise Unauthorized("The metrics token is required.")


ScraperDep = Annotated[None, Depends(scraper)]


def _tally_of(request: Request) -> AuditTally:
    state = request.app.state
    with _state_lock:
        tally: AuditTally | None = getattr(state, "audit_tally", None)
        if tally is None:
            tally = state.audit_tally = AuditTally()
    return tally


def _observations_of(request: Request) -> Observations:
    observations: Observations | None = getattr(request.app.state, "observations", None)
    return observations or Observations()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
               401: {}, 404: {}},
)
def metrics(request: Request, runtime: RuntimeDep, _: ScraperDep) -> Response:
    """Prometheus metrics: requests, latencies, disclosures by outcome, audit log size.

    Needs `Authorization: Bearer` with the metrics token (`BROKER_METRICS_TOKEN`), not an
    access token; without that setting, 404."""
    tally = _tally_of(request)
    size: int | None
    try:
        tally.refresh(runtime.engine)
        with runtime.engine.connect() as conn:
            size = tree_size(conn)
    except SQLAlchemyError:
        size = None  # the request figures (and the counts so far) are still worth a scrape
    entries, disclosures = tally.counts()
    body = render(
        _observations_of(request).snapshot(),
        entries=entries,
        disclosures=disclosures,
        audit_size=size,
        audit_healthy=runtime.audit.healthy and size is not None,
        alerts=tally.alert_counts(),
    )
    return Response(body, media_type=CONTENT_TYPE)
