"""Field transforms and pseudonyms: how a signal's fields leave the broker (pure code).

A rule maps field paths to transforms (docs/policy.md "Transforms"); `release` applies them to a
flattened signal. Pseudonyms and signal references are keyed HMACs over the recipient and the
purpose too, so the same person gets unrelated pseudonyms in different organisations and
purposes: data obtained for one purpose cannot be joined with data obtained for another.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from broker.core.policy.transform_spec import Transform

__all__ = [
    "PSEUDONYM_PREFIX",
    "HmacKey",
    "Pseudonymiser",
    "b32",
    "b32_26",
    "SIGNAL_REF_PREFIX",
    "flatten_signal",
    "generalise",
    "mask",
    "normalise_value",
    "pseudonymise",
    "pseudonymiser_for",
    "release",
    "signal_ref",
]

PSEUDONYM_PREFIX = "ps_"
SIGNAL_REF_PREFIX = "sg_"
_FLAT_SECTIONS = ("subject", "location")
_TOP_LEVEL_FIELDS = ("observed_at", "description")
_SECTION_PREFIXES = tuple((s, s + ".") for s in (*_FLAT_SECTIONS, "attributes"))


class HmacKey:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pads hashed once.

    Copying two prepared SHA-256 states is cheaper than copying an HMAC object, and the
    budget is 2 µs per pseudonymised field.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-256 block size; longer keys are hashed first (RFC 2104)
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def mac(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@lru_cache(maxsize=16)
def hmac_key(key: bytes) -> HmacKey:
    """The prepared HMAC key for `key` (cached: keys change only on rotation)."""
    return HmacKey(key)


def _part(data: bytes) -> bytes:
    # Length-prefixed, so ("ab", "c") and ("a", "bc") give different MAC inputs.
    return len(data).to_bytes(4, "big") + data


# RFC 4648 base32, lower case, ten bits (two characters) per table entry: the standard
# library's b32encode is pure Python and alone would take the whole 2 µs budget.
_B32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = tuple(a + b for a in _B32_ALPHABET for b in _B32_ALPHABET)


def b32_26(digest: bytes) -> str:
    """The first 26 characters of the lower-case RFC 4648 base32 encoding of `digest`."""
    p = _B32_PAIRS
    n0 = int.from_bytes(digest[0:5], "big")
    n1 = int.from_bytes(digest[5:10], "big")
    n2 = int.from_bytes(digest[10:15], "big")
    return "".join((
        p[n0 >> 30], p[(n0 >> 20) & 1023], p[(n0 >> 10) & 1023], p[n0 & 1023],
        p[n1 >> 30], p[(n1 >> 20) & 1023], p[(n1 >> 10) & 1023], p[n1 & 1023],
        p[n2 >> 30], p[(n2 >> 20) & 1023], p[(n2 >> 10) & 1023], p[n2 & 1023],
        p[(digest[15] << 2) | (digest[16] >> 6)],
    ))


def b32(data: bytes) -> str:
    """The lower-case RFC 4648 base32 encoding of `data`, whose length is a multiple of 5
    (so without padding)."""
    if len(data) % 5:
        raise ValueError("b32 encodes whole groups of 5 bytes")
    p = _B32_PAIRS
    n = int.from_bytes(data, "big")
    return "".join([p[(n >> shift) & 1023] for shift in range(len(data) * 8 - 10, -1, -10)])


def normalise_value(value: object) -> bytes:
    """The bytes a value is pseudonymised as: equal values give equal bytes.

    A type tag comes first, so the text "12" and the number 12 differ. Text is NFC-normalised
    and stripped; 2400 and 2400.0 are the same number; other values use canonical JSON.
    """
    if isinstance(value, str):
        return b"s:" + unicodedata.normalize("NFC", value.strip()).encode("utf-8")
    if isinstance(value, bool):
        return b"b:1" if value else b"b:0"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return b"i:" + str(value).encode("ascii")
    return b"j:" + json.dumps(value, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, default=str).encode("utf-8")


class Pseudonymiser:
    """Pseudonyms and signal references for one recipient and purpose (one request)."""

    __slots__ = ("_key", "_pseudonym_prefix", "_ref_prefix")

    def __init__(self, key: bytes, recipient: str, purpose: str) -> None:
        self._key = hmac_key(key)
        context = _part(recipient.encode("utf-8")) + _part(purpose.encode("utf-8"))
        # Distinct labels: a pseudonym and a signal reference never share a MAC input.
        self._pseudonym_prefix = _part(b"sluis/pseudonym/v1") + context
        self._ref_prefix = _part(b"sluis/signal-ref/v1") + context

    def pseudonymise(self, path: str, value: object) -> str:
        message = (self._pseudonym_prefix + _part(path.encode("utf-8"))
                   + _part(normalise_value(value)))
        return PSEUDONYM_PREFIX + b32_26(self._key.mac(message))

    def signal_ref(self, signal_id: str) -> str:
        message = self._ref_prefix + _part(signal_id.encode("utf-8"))
        return SIGNAL_REF_PREFIX + b32_26(self._key.mac(message))


@lru_cache(maxsize=1024)
def pseudonymiser_for(key: bytes, recipient: str, purpose: str) -> Pseudonymiser:
    """The (cached) pseudonymiser for a key, recipient and purpose."""
    return Pseudonymiser(key, recipient, purpose)


def pseudonymise(key: bytes, recipient: str, purpose: str, path: str, value: object) -> str:
    """`ps_` + 26 base32 characters of HMAC-SHA256(key, recipient, purpose, path, value)."""
    return pseudonymiser_for(key, recipient, purpose).pseudonymise(path, value)


def signal_ref(key: bytes, recipient: str, purpose: str, signal_id: str) -> str:
    """`sg_` + 26 base32 characters: a signal's reference, stable per recipient and purpose."""
    return pseudonymiser_for(key, recipient, purpose).signal_ref(signal_id)


# --- generalise and mask ------------------------------------------------------------------


def _as_date(value: object) -> date | None:
    """The calendar date of a date or date-time (as written, in its own offset)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date() if len(value) > 10 \
                else date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _age(birthdate: date, today: date) -> int:
    before_birthday = (today.month, today.day) < (birthdate.month, birthdate.day)
    return today.year - birthdate.year - before_birthday


def _band(value: float, width: int) -> dict[str, int | float]:
    k = math.floor(value / width)
    # The float division can round across a boundary (a tiny negative value / width is -0.0);
    # step k so that the band really contains the value.
    if k * width > value:
        k -= 1
    elif (k + 1) * width <= value:
        k += 1
    return {"gte": k * width, "lt": (k + 1) * width}


def generalise(option: str, n: int | None, value: object, today: date) -> object:
    """Coarsen a value: year/month/day of a date, pc4 of a postcode, a number bucket or an
    age band. A value that does not fit gives None: withheld, never released unchanged."""
    if option in ("year", "month", "day"):
        day = _as_date(value)
        if day is None:
            return None
        if option == "year":
            return f"{day.year:04d}"
        return f"{day.year:04d}-{day.month:02d}" if option == "month" else day.isoformat()
    if option == "pc4":
        if isinstance(value, str) and len(value) >= 4 and value[:4].isdigit():
            return value[:4]
        return None
    if option == "bucket" and n:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return _band(value, n) if math.isfinite(value) else None
    if option == "age_band" and n:
        born = _as_date(value)
        if born is None or isinstance(value, datetime):
            return None
        age = _age(born, today)
        return {"gte": age - age % n, "lt": age - age % n + n}
    return None


def mask(value: object, keep_last: int) -> str | None:
    """All but the last `keep_last` characters replaced by `*`.

    A value no longer than `keep_last` is masked entirely: keeping it would reveal it whole.
    """
    if not isinstance(value, str):
        return None
    if len(value) <= keep_last:
        return "*" * len(value)
    return "*" * (len(value) - keep_last) + (value[-keep_last:] if keep_last else "")


# --- signals ------------------------------------------------------------------------------


def flatten_signal(payload: Mapping[str, Any]) -> dict[str, object]:
    """A signal payload (as in POST /v1/signals) as {dotted path: value}.

    `subject.*`, `location.*` and `attributes.*` become dotted paths; `observed_at` and
    `description` stay; the envelope (category, legal basis, ids) is not a field. Missing and
    null values are absent.
    """
    flat: dict[str, object] = {}
    for section, prefix in _SECTION_PREFIXES:
        inner = payload.get(section)
        if type(inner) is dict or isinstance(inner, Mapping):
            for name, value in inner.items():
                if value is not None:
                    flat[prefix + name] = value
    for name in _TOP_LEVEL_FIELDS:
        value = payload.get(name)
        if value is not None:
            flat[name] = value.isoformat() if isinstance(value, datetime) else value
    return flat


def apply_transform(transform: Transform, path: str, value: object,
                    pseudonymiser: Pseudonymiser, today: date) -> object:
    """One transform on one value."""
    kind = transform.kind
    if kind == "reveal":
        return value
    if kind == "redact":
        return None
    if kind == "pseudonymise":
        return pseudonymiser.pseudonymise(path, value)
    if kind == "mask":
        return mask(value, transform.n or 0)
    return generalise(transform.option or "", transform.n, value, today)


def release(rule_fields: Mapping[str, Transform], flat_signal: Mapping[str, object], *,
            recipient: str, purpose: str, pseudonym_key: bytes,
            today: date, pseudonymiser: Pseudonymiser | None = None) -> dict[str, object]:
    """The fields a rule releases: only paths the rule names, each through its transform.

    A path the rule names but the signal lacks is absent from the answer; a path the
    signal has but the rule does not name is dropped. Pass a `pseudonymiser` built once per
    request to save its set-up per signal.
    """
    bound = pseudonymiser or pseudonymiser_for(pseudonym_key, recipient, purpose)
    released: dict[str, object] = {}
    for path, transform in rule_fields.items():
        if path in flat_signal:
            value = flat_signal[path]
            released[path] = (value if transform.kind == "reveal"
                              else apply_transform(transform, path, value, bound, today))
    return released
