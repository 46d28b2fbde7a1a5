"""The opaque cursors of every paged list, and the newest-first walk of (time, id) lists.

A cursor is a prefix that names the list, then what the next page continues from, as
base64url without padding: the last item's time and id (`encode`, `decode`), or, for the
audit log's entries and a subject's access report, the last entry's seq (`encode_seq`,
`decode_seq`; the log's list continues below it, the report, oldest first, above).
Anything else given as a cursor is a 422 on `("query", "cursor")`, never a 500.
`newest_first` runs a (time, id) list's query one page at a time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Engine, Row, Select, and_, or_

from broker.clock import as_utc
from broker.errors import FieldProblem, ValidationFailed

MAX_SEQ_DIGITS: Final = 19
"""Digits of the largest seq a cursor may name (a signed 64-bit integer's)."""


def not_a_cursor() -> ValidationFailed:
    """The 422 for a cursor that is not one of the list's."""
    return ValidationFailed(
        "The request is not valid; see `errors`.",
        errors=[FieldProblem(("query", "cursor"), "not a cursor of this list")],
    )


def encode_text(prefix: str, payload: str) -> str:
    """The cursor of the list `prefix` that carries `payload`."""
    return base64.urlsafe_b64encode(f"{prefix}{payload}".encode()).rstrip(b"=").decode()


def decode_text(prefix: str, cursor: str) -> str:
    """The payload of a cursor of the list `prefix`; 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        raise not_a_cursor() from None
    if not raw.startswith(prefix):
        raise not_a_cursor()
    return raw.removeprefix(prefix)


def encode(prefix: str, moment: datetime, item_id: str) -> str:
    """The cursor of a (time, id) list continuing after the item of `moment` and `item_id`."""
    return encode_text(prefix, f"{as_utc(moment).isoformat()}|{item_id}")


def decode(prefix: str, cursor: str) -> tuple[datetime, str]:
    """(time, id) a cursor of the list `prefix` continues after; 422 for anything else."""
    payload = decode_text(prefix, cursor)
    try:
        moment, item_id = payload.split("|", 1)
        return as_utc(datetime.fromisoformat(moment)), item_id
    except ValueError:
        raise not_a_cursor() from None


def encode_seq(prefix: str, seq: int) -> str:
    """The cursor of a list by seq continuing past `seq` (below it newest first, above it
    oldest first)."""
    return encode_text(prefix, str(seq))


def decode_seq(prefix: str, cursor: str) -> int:
    """The seq a cursor of the list `prefix` continues past; 422 for anything else."""
    number = decode_text(prefix, cursor)
    if not number.isdigit() or len(number) > MAX_SEQ_DIGITS:
        raise not_a_cursor()
    return int(number)


def newest_first(
    engine: Engine, query: Select[Any], time: ColumnElement[Any], ident: ColumnElement[Any],
    *, prefix: str, limit: int, cursor: str | None,
) -> tuple[Sequence[Row[Any]], str | None]:
    """One page of `query`'s rows, newest first by (`time`, `ident`), after `cursor`; and
    the cursor of the next page, or None on the last."""
    if cursor:
        moment, last = decode(prefix, cursor)
        # The first condition is implied by the second; it lets the database seek to the
        # cursor in a (time, id) index instead of walking the newer rows again.
        query = query.where(time <= moment,
                            or_(time < moment, and_(time == moment, ident < last)))
    query = query.order_by(time.desc(), ident.desc()).limit(limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    last_row = page[-1]._mapping
    return page, encode(prefix, last_row[time], last_row[ident])
