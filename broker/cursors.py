"""Opaque page cursors for lists ordered newest first by (time, id).

A cursor names the last item of a page: its time and id, behind a prefix that names the
list, base64url without padding. Anything else given as a cursor is a 422 on
`("query", "cursor")`, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

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
