"""Strict JSON for every route: no NaN or Infinity, no duplicate keys, no NUL, no lone surrogates.

The standard parser accepts all of these; each would later surface as a 500
or as data PostgreSQL refuses. Numbers are held to what a field can use: a
float literal too large for a double (`1e999999`, which the parser makes
infinity) and an integer literal of more than `MAX_INTEGER_DIGITS` digits are
refused too. FastAPI turns a `JSONDecodeError` raised here into a 422 without
echoing the body, as for any other bad JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_MARKERS = ("\\u0000", "\\ud", "\\uD")
MAX_INTEGER_DIGITS = 100
"""Far beyond any field's range (a 64-bit count has 19 digits). Refusing longer literals
before `int()` also keeps clear of its quadratic conversion, which Python stops at 4300
digits with a plain ValueError (an unexplained 400 before this check)."""


def _refuse(reason: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(reason, "", 0)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _refuse("duplicate key")
    return result


def _no_constants(_name: str) -> Any:
    raise _refuse("NaN and Infinity are not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _refuse("number too large")
    return value


def _bounded_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INTEGER_DIGITS:
        raise _refuse("integer too long")
    return int(text)


def _clean_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _refuse("NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse("lone surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_loads(body: bytes) -> Any:
    """Parse a JSON body strictly, raising `JSONDecodeError` for anything doubtful."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("invalid UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise _refuse("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _refuse(exc.msg) from None
    if any(marker in text for marker in _MARKERS):
        _clean_strings(value)
    return value


class StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose request parses JSON with `strict_loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictRequest(request.scope, request.receive))

        return strict_handler
