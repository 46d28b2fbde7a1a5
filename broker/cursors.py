"""Lists paged newest first by (time, id), with opaque cursors.

A cursor names the last item of a page: its time and id, behind a prefix that names the
list, base64url without padding. Anything else given as a cursor is a 422 on
`("query", "cursor")`, never a 500. `newest_first` runs a list's query one page at a time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, Select, and_, or_

from broker.clock import as_utc
from broker.errors import FieldProblem, ValidationFailed


def encode(prefix: str, moment: datetime, item_id: str) -> str:
    raw = f"{prefix}{as_utc(moment).isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(prefix: str, cursor: str) -> tuple[datetime, str]:
    """(time, id) a cursor of the list `prefix` continues after; 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii")
        if not raw.startswith(prefix):
            raise ValueError(raw)
        moment, item_id = raw.removeprefix(prefix).split("|", 1)
        return as_utc(datetime.fromisoformat(moment)), item_id
    except (ValueError, binascii.Error, UnicodeError):
        raise ValidationFailed(
            "The request is not valid; see `errors`.",
            errors=[FieldProblem(("query", "cursor"), "not a cursor of this list")],
        ) from None


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
