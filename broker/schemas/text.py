"""Free text in requests: the one check that keeps control characters out of it.

Whatever a caller writes as free text (a description, a name, a justification, a reason)
is later shown to other people: in the thin client's terminal, in the officer's pages, in
partners' own systems. A control character there is an instruction to that terminal, not
text (`ESC [2J` clears the screen, `CR` overwrites a line, OSC sets the window title), so
C0 controls, DEL and C1 controls are refused with a 422 at the field, naming no value.
`TEXT` allows a newline (a description or a reason may have paragraphs); `LINE` (a name,
a street) allows none. Tab is refused too: nothing the broker stores needs it, and a
caller who pasted one gets told where.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import AfterValidator

_CONTROL: Final = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (a newline is allowed)")
    return value


def _line(value: str) -> str:
    if _CONTROL_OR_NEWLINE.search(value):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _text_if_text(value: Any) -> Any:
    return _text(value) if isinstance(value, str) else value


TEXT: Final = AfterValidator(_text)
"""Free text of several lines: no control characters but newline. Written after the
field's length constraints (`Annotated[str, StringConstraints(...), TEXT]`), so that those
keep their own messages and their place in the OpenAPI document."""

LINE: Final = AfterValidator(_line)
"""Free text of one line (a name, a street): no control characters at all."""

TEXT_IF_STRING: Final = AfterValidator(_text_if_text)
"""For a value of any JSON type (a signal's attributes): a string is checked as `TEXT`."""


def has_control_characters(value: str, *, newline_allowed: bool) -> bool:
    """Whether `value` holds what `TEXT` (newline allowed) or `LINE` refuses, for checks
    outside a request model (a client created from the command line)."""
    pattern = _CONTROL if newline_allowed else _CONTROL_OR_NEWLINE
    return pattern.search(value) is not None
