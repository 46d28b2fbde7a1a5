"""Structured application logs: one JSON object per line per event, and nothing personal.

Every record becomes one line of JSON (`ensure_ascii`, so a CR, LF or ANSI escape in
any field is written as `\\r`, `\\n` or `\\u001b` and can never start a forged line:
ASVS 16.4.1). Only allow-listed `extra` fields reach the line, and only as plain scalars;
a field a caller adds by mistake (a body, a BSN, a header) is dropped, not written. An
exception is logged as its type and the places it passed through, never its message:
database errors quote the offending values (psycopg's `DETAIL: Key (...)=(...)`).
As a last net, anything shaped like a JWT or a nine-digit number in a string is masked.

`log_config()` is the `logging.config.dictConfig` document that `broker serve` hands to
uvicorn (applied in every worker process); `configure_logging()` applies it elsewhere.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
import traceback
from typing import Any, Final

SAFE_FIELDS: Final = (
    "event",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "client_id",
    "token_id",
    "remote_addr",
    "reason",
    "error_type",
    "batch",
    "seq",
    "size",
    "count",
    "org",
    "purpose",
    "action",
    "outcome",
    "key_name",
    "version",
    "hash",
    "previous_hash",
    "retry_after",
)
"""The only `extra` fields a log line may carry: identifiers, codes and numbers."""

MAX_TEXT: Final = 200
MAX_FRAMES: Final = 12
MASK: Final = "[masked]"
# A JWT (header.payload[.signature]), or a nine-digit number standing alone (BSN-shaped;
# not one inside an identifier such as a request id's hex).
_SECRET_SHAPES: Final = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?|\b[0-9]{9}\b"
)


def scrub(text: str, limit: int = MAX_TEXT) -> str:
    """A string cut to `limit` characters with JWT- and BSN-shaped parts masked."""
    return _SECRET_SHAPES.sub(MASK, text[: limit * 2])[:limit]


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, str):
        return scrub(value)
    return None  # anything else (dicts, bytes, objects) is not written at all


def _frames(record: logging.LogRecord) -> list[str]:
    """Where an exception passed, innermost last, as `file:line in function`."""
    if not record.exc_info or record.exc_info[2] is None:
        return []
    summary = traceback.extract_tb(record.exc_info[2])[-MAX_FRAMES:]
    return [f"{_short_path(f.filename)}:{f.lineno} in {f.name}" for f in summary]


def _short_path(filename: str) -> str:
    """A source path from its package on (no machine-specific prefix)."""
    parts = filename.replace("\\", "/").split("/")
    for anchor in ("site-packages", "broker", "migrations"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            start = index + 1 if anchor == "site-packages" else index
            return "/".join(parts[start:])
    return parts[-1]


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with allow-listed fields only."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(_message(record), 500),
        }
        fields = record.__dict__
        for name in SAFE_FIELDS:
            if name in fields:
                line[name] = _scalar(fields[name])
        if "event" not in line:
            line["event"] = _event_name(record)
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
            line["frames"] = _frames(record)
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str)


def _utc(created: float) -> str:
    """RFC 3339 UTC with milliseconds (cheaper than going through `datetime`)."""
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string must not lose the event
        return str(record.msg)


_LIBRARY_EVENTS: Final = {"uvicorn": "server", "uvicorn.error": "server"}


def _event_name(record: logging.LogRecord) -> str:
    """A stable event name for records that do not name one (library records)."""
    known = _LIBRARY_EVENTS.get(record.name)
    return known or re.sub(r"[^a-z0-9]+", "_", record.name.lower()).strip("_") or "log"


def log_config(level: str = "INFO") -> dict[str, Any]:
    """The `dictConfig` document: JSON lines on stderr for the broker's and uvicorn's loggers.

    uvicorn's own access log is silenced: it writes raw paths with query strings. The
    broker's access records (`broker.access`, one per request) replace it.
    """
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": {
            "broker": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["json"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


def configure_logging(level: str = "INFO") -> None:
    """Apply `log_config(level)` to this process."""
    logging.config.dictConfig(log_config(level))
