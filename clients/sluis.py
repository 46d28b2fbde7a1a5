#!/usr/bin/env python3
"""sluis: the thin client of the Sluis broker, for team members and the privacy officer.

One file, Python 3.9 or newer, standard library only, so that it can be copied onto any
workstation. It speaks the broker's REST API: reference data, signals, disclosures, hits,
area summaries, re-identification and the audit log.

It does not take the audit log on trust. It checks checkpoint signatures itself (Ed25519,
RFC 8032, implemented below because the standard library has none), checks inclusion and
consistency proofs (RFC 9162), verifies exported logs offline, and remembers the last
checkpoint it saw per broker: a broker that later shows a smaller tree, or a root that
does not extend the remembered one, is reported loudly (docs/audit.md, "Checkpoints").

Settings come from flags, then the environment (SLUIS_*), then the config file
($XDG_CONFIG_HOME/sluis/config.ini, section [default] or the one --profile names).
Client-secret authentication needs nothing else; private_key_jwt (an ES256 client
assertion) needs the optional `cryptography` package, because the standard library
cannot sign with ECDSA.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import configparser
import csv
import email.utils
import hashlib
import http.client
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, NoReturn

__version__ = "0.1.0"

EXIT_OK = 0
EXIT_FAILED = 1  # refused, not found, a check failed, the broker unreachable
EXIT_USAGE = 2

MAX_BATCH = 1000
TOKEN_MARGIN_SECONDS = 30  # a cached token this close to expiry is renewed first
ASSERTION_SECONDS = 120  # client assertions live 2 minutes (the broker accepts up to 5)
USER_AGENT = f"sluis/{__version__} (Python {sys.version_info[0]}.{sys.version_info[1]})"


# --- Errors ---------------------------------------------------------------------------


class SluisError(Exception):
    """A failure reported as one line on stderr; `code` is the exit code."""

    code = EXIT_FAILED


class UsageError(SluisError):
    """Bad flags or configuration (exit 2)."""

    code = EXIT_USAGE


class CheckFailed(SluisError):
    """A signature, proof, hash or checkpoint that does not verify (exit 1)."""


@dataclass
class FieldProblem:
    loc: list[Any]
    msg: str


class Problem(SluisError):
    """A refusal by the broker: RFC 9457 problem details, or an RFC 6749 token error."""

    def __init__(
        self, status: int, title: str, detail: str | None,
        errors: Sequence[FieldProblem] = (), request_id: str | None = None,
    ) -> None:
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.request_id = list(errors), request_id
        super().__init__(self.line())

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        text = f"{self.status} {visible(self.title)}"
        if self.detail and self.detail != self.title:
            text += f": {visible(self.detail)}"
        if self.status >= 500 and self.request_id:
            text += f" (request id {visible(self.request_id)})"
        return text


# --- Base64 ---------------------------------------------------------------------------


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Standard, padded, canonical base64 (one text per byte string), or CheckFailed."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise CheckFailed(f"{what} is not base64") from None
    if b64encode(data) != text:
        raise CheckFailed(f"{what} is not canonical base64")
    return data


def hash_b64(text: object, what: str) -> bytes:
    """A 32-byte hash sent as standard base64 (every hash of the audit API)."""
    if not isinstance(text, str):
        raise CheckFailed(f"{what} is missing")
    data = b64decode(text, what)
    if len(data) != 32:
        raise CheckFailed(f"{what} is not a 32-byte hash")
    return data


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- RFC 9162 Merkle tree -------------------------------------------------------------

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the prefix keeps a leaf from posing as an inner node."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 9162 root over leaf hashes, level by level (carrying an odd last node up
    gives the same tree as splitting at the largest power of two below n)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _are_hashes(values: Sequence[bytes]) -> bool:
    return all(isinstance(v, bytes) and len(v) == 32 for v in values)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show leaf hash `leaf` at `index` in (size, root)?"""
    if not (_is_size(index) and _is_size(size) and index < size):
        return False
    if not _are_hashes([leaf, root, *proof]):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (first, first_root) a prefix of (second, second_root)?

    The RFC covers 0 < first < second; for first == second the proof must be empty and the
    roots equal, and for first == 0 the proof must be empty and first_root the empty root.
    """
    if not (_is_size(first) and _is_size(second) and first <= second):
        return False
    if not _are_hashes([first_root, second_root, *proof]):
        return False
    if first == second or first == 0 or not proof:
        return _trivially_consistent(first, second, first_root, second_root, proof)
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def _trivially_consistent(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """The edge cases: equal sizes, an empty first tree, or an empty proof."""
    if proof:
        return False
    if first == second:
        return first_root == second_root
    return first == 0 and first_root == EMPTY_ROOT


# --- Ed25519 verification (RFC 8032 section 5.1.7) ------------------------------------
# Verification only: it handles public data, so constant time does not matter here.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = (0, 1, 1, 0)


def _point_add(p: tuple[int, ...], q: tuple[int, ...]) -> tuple[int, ...]:
    """Addition in extended homogeneous coordinates (RFC 8032 5.1.4)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _point_mul(scalar: int, point: tuple[int, ...]) -> tuple[int, ...]:
    result: tuple[int, ...] = _IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _point_add(result, point)
        point = _point_add(point, point)
        scalar >>= 1
    return result


def _point_equal(p: tuple[int, ...], q: tuple[int, ...]) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _point_decode(data: bytes) -> tuple[int, ...] | None:
    """RFC 8032 5.1.3; None for a non-canonical y or an x that does not exist."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        return (0, y, 1, 0)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


_BASE = _point_decode((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Does `signature` sign `message` under the 32-byte Ed25519 `public_key`?

    RFC 8032 5.1.7 with the cofactored group equation [8][S]B = [8]R + [8][k]A.
    """
    if len(public_key) != 32 or len(signature) != 64 or _BASE is None:
        return False
    a = _point_decode(public_key)
    r = _point_decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    left = _point_mul(8 * s, _BASE)
    right = _point_mul(8, _point_add(r, _point_mul(k % _L, a)))
    return _point_equal(left, right)


# --- C2SP signed notes, checkpoints and receipts --------------------------------------

EM_DASH = "\u2014"
RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class NoteKey:
    """A note verifier key (c2sp.org/signed-note): name, 4-byte key id, Ed25519 key."""

    name: str
    key_id: bytes
    public_key: bytes

    def text(self) -> str:
        material = b64encode(b"\x01" + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{material}"


def note_key_id(name: str, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + public_key).digest()[:4]


def _valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def parse_verifier_key(text: str) -> NoteKey:
    """Parse ``name+hex(key id)+base64(0x01 || key)``; the key id must match."""
    parts = text.strip().split("+", 2)  # the base64 key itself may hold "+"
    if len(parts) != 3 or not _valid_key_name(parts[0]) or len(parts[1]) != 8:
        raise CheckFailed("not a note verifier key (name+keyid+key)")
    material = b64decode(parts[2], "verifier key")
    if len(material) != 33 or material[0] != 1:
        raise CheckFailed("not an Ed25519 note verifier key")
    key = NoteKey(parts[0], note_key_id(parts[0], material[1:]), material[1:])
    if key.key_id.hex() != parts[1]:
        raise CheckFailed("verifier key id does not match its name and key")
    return key


def _signature_lines(block: str) -> Iterator[tuple[str, bytes, bytes]]:
    for line in block[:-1].split("\n"):
        dash, _, rest = line.partition(" ")
        name, _, sig_b64 = rest.partition(" ")
        if dash != EM_DASH or not _valid_key_name(name) or not sig_b64:
            raise CheckFailed("malformed signature line in note")
        raw = b64decode(sig_b64, "note signature")
        if len(raw) < 5:
            raise CheckFailed("note signature too short")
        yield name, raw[:4], raw[4:]


def open_note(note: str, keys: Sequence[NoteKey]) -> str:
    """The signed text of `note` if a trusted key signed it; CheckFailed otherwise.

    As signed-note requires, signatures by unknown keys are ignored, and a signature by
    a known key that fails rejects the note.
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise CheckFailed("not a signed note")
    text, block = note[: split + 1], note[split + 2 :]
    known = {(k.name, k.key_id): k for k in keys}
    verified = False
    for name, kid, signature in _signature_lines(block):
        key = known.get((name, kid))
        if key is None:
            continue
        if not ed25519_verify(key.public_key, text.encode("utf-8"), signature):
            raise CheckFailed(f"the signature by {name}+{kid.hex()} does not verify")
        verified = True
    if not verified:
        names = ", ".join(k.text() for k in keys) or "none"
        raise CheckFailed(f"the note is not signed by a trusted key (trusted: {names})")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """The log's signed statement: its tree of `size` entries from `origin` has `root`."""

    origin: str
    size: int
    root: bytes


def parse_checkpoint(body: str) -> Checkpoint:
    """``origin\\nsize\\nbase64(root)\\n`` plus optional extension lines."""
    lines = body[:-1].split("\n") if body.endswith("\n") else []
    if len(lines) < 3 or not all(lines):
        raise CheckFailed("checkpoint needs origin, size and root hash lines")
    if not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise CheckFailed("checkpoint size is not a decimal number")
    return Checkpoint(lines[0], int(lines[1]), hash_b64(lines[2], "checkpoint root hash"))


def open_checkpoint(note: str, keys: Sequence[NoteKey]) -> Checkpoint:
    """Verify a signed checkpoint note and parse it."""
    return parse_checkpoint(open_note(note, keys))


@dataclass(frozen=True)
class Receipt:
    """A c2sp.org/tlog-proof: entry index, inclusion proof, signed checkpoint note."""

    index: int
    hashes: list[bytes]
    checkpoint_note: str


def parse_receipt(text: str) -> Receipt:
    lines = text.split("\n")
    if lines[0] != RECEIPT_HEADER:
        raise CheckFailed("not a c2sp.org/tlog-proof@v1 receipt")
    at = 2 if len(lines) > 1 and lines[1].startswith("extra ") else 1
    if len(lines) <= at or not lines[at].startswith("index "):
        raise CheckFailed("receipt has no index line")
    number = lines[at][len("index "):]
    if not number.isdigit():
        raise CheckFailed("receipt index is not a number")
    hashes: list[bytes] = []
    at += 1
    while at < len(lines) and lines[at] and len(hashes) <= 64:
        hashes.append(hash_b64(lines[at], "receipt proof hash"))
        at += 1
    checkpoint = "\n".join(lines[at + 1 :])
    if not checkpoint:
        raise CheckFailed("receipt has no checkpoint")
    return Receipt(int(number), hashes, checkpoint)


# --- RFC 8785 canonical JSON (the subset audit entries use: no floats) ----------------


def _reject(value: str) -> NoReturn:
    raise ValueError(f"{value} is not allowed in audit entries")


def _safe_int(text: str) -> int:
    """Integers beyond 2**53 have no exact RFC 8785 form (it writes numbers as doubles)."""
    number = int(text)
    if abs(number) >= 2**53:
        raise ValueError("integer out of the safe range")
    return number


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _canonical_text(value: Any) -> str:
    """Exact RFC 8785 text: keys sorted by UTF-16 code units, minimal escaping."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + _canonical_text(v) for k, v in items
        ) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical_text(v) for v in value) + "]"
    if isinstance(value, float):
        raise ValueError("floats are not allowed in audit entries")
    return json.dumps(value, ensure_ascii=False)


def is_canonical(data: bytes) -> bool:
    """Do these bytes re-canonicalise to themselves (RFC 8785, no floats, no duplicates)?"""
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_reject, parse_int=_safe_int,
                           parse_constant=_reject, object_pairs_hook=_unique_object)
        if data.isascii():
            # For ASCII keys, code-point order is UTF-16 order: the C encoder is exact.
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        else:
            text = _canonical_text(value)
        return text.encode("utf-8") == data
    except (ValueError, UnicodeError, RecursionError):
        return False


# --- Exported logs --------------------------------------------------------------------


@dataclass
class ExportReport:
    """What offline verification of an export found."""

    entries: int = 0
    checkpoint: Checkpoint | None = None
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.checkpoint is not None

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [seq for seq, _ in self.problems if seq is not None]
        return min(seqs) if seqs else None

    def add(self, seq: int | None, message: str) -> None:
        if len(self.problems) < 50:
            self.problems.append((seq, message))


def _check_export_entry(
    report: ExportReport, line_no: int, item: Mapping[str, Any], origins: dict[str, int]
) -> None:
    expected = len(report.leaves)
    seq = item.get("seq")
    if seq != expected:
        report.add(expected, f"line {line_no} holds seq {seq!r} where seq {expected} belongs: "
                             "an entry is missing, inserted or out of order")
    encoded = item.get("entry_b64")
    try:
        data = b64decode(encoded if isinstance(encoded, str) else "?", f"entry {expected}")
    except CheckFailed as exc:
        report.add(expected, str(exc))
        data = b""
    leaf = leaf_hash(data)
    report.leaves.append(leaf)
    if item.get("leaf_hash") != b64encode(leaf):
        report.add(expected, f"the leaf hash of seq {expected} does not match its bytes")
    if not is_canonical(data):
        report.add(expected, f"entry {expected} is not canonical JSON (RFC 8785)")
        return
    entry = json.loads(data)
    if not isinstance(entry, dict) or entry.get("seq") != expected:
        report.add(expected, f"entry {expected} names another seq inside: it was moved")
    else:
        origins.setdefault(str(entry.get("origin")), expected)


def _check_export_checkpoint(
    report: ExportReport, item: Mapping[str, Any], keys: Sequence[NoteKey],
    origins: Mapping[str, int],
) -> None:
    note = item.get("note")
    if not isinstance(note, str):
        report.add(None, "the export's last line has no checkpoint note")
        return
    try:
        checkpoint = open_checkpoint(note, keys)
    except CheckFailed as exc:
        report.add(None, f"checkpoint: {exc}")
        return
    report.checkpoint = checkpoint
    if item.get("size") != checkpoint.size or item.get("root_hash") != b64encode(checkpoint.root):
        report.add(None, "the checkpoint's JSON fields disagree with its signed note")
    if item.get("origin") not in (None, checkpoint.origin):
        report.add(None, "the checkpoint's origin field disagrees with its signed note")
    for origin, seq in origins.items():
        if origin != checkpoint.origin:
            report.add(seq, f"entry {seq} belongs to another log ({origin!r})")
    if checkpoint.size > len(report.leaves):
        report.add(len(report.leaves), f"the checkpoint signs {checkpoint.size} entries, the "
                                       f"export holds {len(report.leaves)}: entries are missing")
    elif merkle_root(report.leaves[: checkpoint.size]) != checkpoint.root:
        report.add(None, f"the root of the first {checkpoint.size} entries is not the "
                         "checkpoint's root: the log was changed")


def verify_export(lines: Iterable[str], keys: Sequence[NoteKey]) -> ExportReport:
    """Verify an export (JSON Lines: entries, then the checkpoint) against trusted keys:
    every leaf hash, canonical bytes, gap-free seq, the signature and the root."""
    report = ExportReport()
    origins: dict[str, int] = {}
    checkpoint_item: Mapping[str, Any] | None = None
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            report.add(len(report.leaves), f"line {line_no} is not JSON")
            continue
        if not isinstance(item, dict):
            report.add(len(report.leaves), f"line {line_no} is not an object")
        elif "note" in item and "seq" not in item:
            if checkpoint_item is not None:
                report.add(None, "the export holds more than one checkpoint")
            checkpoint_item = item
        else:
            if checkpoint_item is not None:
                report.add(len(report.leaves), "entries follow the checkpoint line")
            _check_export_entry(report, line_no, item, origins)
    report.entries = len(report.leaves)
    if checkpoint_item is None:
        report.add(None, "the export ends without a checkpoint")
    else:
        _check_export_checkpoint(report, checkpoint_item, keys, origins)
    return report


# --- Configuration --------------------------------------------------------------------

ENVIRONMENT = {
    "url": "SLUIS_URL",
    "client_id": "SLUIS_CLIENT_ID",
    "client_secret": "SLUIS_CLIENT_SECRET",
    "private_key_file": "SLUIS_PRIVATE_KEY_FILE",
    "acting_user": "SLUIS_ACTING_USER",
    "ca_file": "SLUIS_CA_FILE",
    "token_audience": "SLUIS_TOKEN_AUDIENCE",
    "checkpoint_key": "SLUIS_CHECKPOINT_KEY",
}
SECRET_SETTINGS = frozenset({"client_secret"})


def _xdg_dir(variable: str, *fallback: str) -> Path:
    """An XDG base directory; relative values are ignored, as the spec asks."""
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value) / "sluis"
    return Path.home().joinpath(*fallback) / "sluis"


def config_file(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("SLUIS_CONFIG"):
        return Path(os.environ["SLUIS_CONFIG"]).expanduser()
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "config.ini"


def cache_dir() -> Path:
    return _xdg_dir("XDG_CACHE_HOME", ".cache")


def data_dir() -> Path:
    return _xdg_dir("XDG_DATA_HOME", ".local", "share")


def _open_to_others(info: os.stat_result) -> bool:
    """Group or other permission bits, or another owner (POSIX only: elsewhere the bits
    do not describe access, and the user's profile directory is private already)."""
    if os.name != "posix":
        return False
    return bool(info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)) or info.st_uid != os.getuid()


def _readable_by_others(path: Path) -> bool:
    try:
        return _open_to_others(path.stat())
    except OSError:
        return False


def warn(message: str) -> None:
    say(f"sluis: warning: {message}", err=True)


@dataclass
class Settings:
    """The effective settings and where each came from (flag, environment, file)."""

    values: dict[str, str]
    origins: dict[str, str]
    profile: str
    path: Path
    missing: str | None = None
    """Why the config file gave nothing (no such file, no such section), if it did not."""

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None

    @property
    def url(self) -> str:
        url = self.get("url")
        if not url:
            raise UsageError("no broker URL: pass --url, set SLUIS_URL, or put url in "
                             f"[{self.profile}] of {self.path}")
        return check_url(url)


def _file_settings(path: Path, profile: str, explicit_profile: bool
                   ) -> tuple[dict[str, str], str | None]:
    """The profile's settings in the config file, and why there are none if there are not
    (an asked-for profile must be there; [default] may be absent)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        if explicit_profile:
            raise UsageError(f"profile {profile!r} asked for, but {path} does not exist") from None
        return {}, f"{path} does not exist"
    except (OSError, configparser.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not parser.has_section(profile):
        if explicit_profile:
            raise UsageError(f"{path} has no section [{profile}]")
        sections = ", ".join(parser.sections()) or "none"
        return {}, (f"{path} has no section [{profile}] (its profiles: {sections}; pick one "
                    "with --profile NAME or SLUIS_PROFILE)")
    values = dict(parser.items(profile))
    unknown = sorted(set(values) - set(ENVIRONMENT))
    if unknown:
        raise UsageError(f"{path} [{profile}]: unknown setting {', '.join(unknown)}")
    if values.get("client_secret") and _readable_by_others(path):
        warn(f"{path} holds a client secret and is readable by others: chmod 600 it")
    return values, None


def load_settings(args: argparse.Namespace) -> Settings:
    """Flags override the environment, which overrides the config file."""
    explicit_profile = bool(args.profile or os.environ.get("SLUIS_PROFILE"))
    profile = args.profile or os.environ.get("SLUIS_PROFILE") or "default"
    path = config_file(args.config)
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    from_file, missing = _file_settings(path, profile, explicit_profile)
    for name, value in from_file.items():
        values[name], origins[name] = value, f"config file [{profile}]"
    for name, variable in ENVIRONMENT.items():
        if os.environ.get(variable):
            values[name], origins[name] = os.environ[variable], variable
    for name in ENVIRONMENT:
        flag = getattr(args, name, None)
        if flag:
            values[name], origins[name] = flag, "--" + name.replace("_", "-")
    return Settings(values, origins, profile, path, missing)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """The broker URL without a trailing slash; plain http only to this machine."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"the broker URL must be https://HOST[:PORT], not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError("the broker URL must not carry a query, fragment or credentials")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(f"refusing plain http:// to {parts.hostname}: use https:// "
                         "(plain http is allowed for localhost only)")
    return url.strip().rstrip("/")


# --- Private files (token cache, remembered checkpoints) ------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def read_private_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a file of ours; None if absent, unreadable or open to others."""
    try:
        if _open_to_others(path.stat()):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:24]


# --- HTTP -----------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: urllib would resend the Authorization header elsewhere."""

    def redirect_request(  # type: ignore[override]
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: Mapping[str, str], newurl: str,
    ) -> None:
        return None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeError):
            raise SluisError(f"the broker's answer ({self.status}) is not JSON") from None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _problem_from(answer: Answer) -> Problem:
    """One Problem from any error answer: problem details, OAuth error or bare status."""
    try:
        data = json.loads(answer.body.decode("utf-8"))
    except (ValueError, UnicodeError):
        data = None
    request_id = answer.headers.get("x-request-id")
    try:
        default_title = http.client.responses[answer.status]
    except KeyError:
        default_title = "Error"
    if isinstance(data, dict) and "error" in data and "title" not in data:
        return Problem(answer.status, str(data["error"]),
                       str(data.get("error_description") or "") or None, request_id=request_id)
    if not isinstance(data, dict):
        return Problem(answer.status, default_title, None, request_id=request_id)
    errors = [
        FieldProblem(list(e.get("loc") or []), str(e.get("msg", "")))
        for e in data.get("errors") or [] if isinstance(e, dict)
    ]
    return Problem(answer.status, str(data.get("title") or default_title),
                   str(data["detail"]) if data.get("detail") else None, errors, request_id)


class Broker:
    """One broker: requests with a bearer token, cached per broker and client."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.url = settings.url
        self.timeout = timeout
        ca_file = settings.get("ca_file")
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the CA file {ca_file}: {exc}") from None
        handlers: list[urllib.request.BaseHandler] = [
            _NoRedirect(), urllib.request.HTTPSHandler(context=context)
        ]
        host = urllib.parse.urlsplit(self.url).hostname or ""
        if _is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    # -- plumbing --

    def open(
        self, method: str, path: str, *, body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """Send one request; return the open response (2xx) or raise Problem/SluisError."""
        # check_url allowed https (or http to this machine) only: no file: or custom schemes.
        request = urllib.request.Request(  # noqa: S310
            self.url + path, data=body, method=method)
        request.add_header("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            try:
                answer = Answer(error.code, _lower(error.headers.items()), error.read())
            finally:
                error.close()
            if 300 <= error.code < 400:
                where = error.headers.get("Location", "elsewhere")
                raise SluisError(f"the broker answered {error.code} redirecting to {where}: "
                                 "set the broker URL to that address") from None
            raise _problem_from(answer) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            reason = getattr(reason, "strerror", None) or reason
            hint = " (pass --ca-file for a private CA)" if "CERTIFICATE" in str(reason) else ""
            raise SluisError(f"cannot reach the broker at {self.url} ({reason}){hint}") from None
        return response  # type: ignore[no-any-return]

    def exchange(
        self, method: str, path: str, *, body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        response = self.open(method, path, body=body, headers=headers)
        try:
            return Answer(response.status, _lower(response.headers.items()), response.read())
        except (OSError, http.client.HTTPException) as error:
            raise SluisError(f"the connection to {self.url} broke: {error}") from None
        finally:
            response.close()

    # -- tokens --

    def _cache_path(self) -> Path:
        client = self.settings.get("client_id") or ""
        return cache_dir() / f"token-{_digest(self.url, client)}.json"

    def _credentials(self) -> dict[str, str]:
        client_id = self.settings.get("client_id")
        if not client_id:
            raise UsageError("no client id: pass --client-id, set SLUIS_CLIENT_ID, or put "
                             f"client_id in [{self.settings.profile}] of {self.settings.path}")
        secret = self.settings.get("client_secret")
        key_file = self.settings.get("private_key_file")
        if secret and key_file:
            raise UsageError("configure a client secret or a private key file, not both")
        form = {"grant_type": "client_credentials", "client_id": client_id}
        if secret:
            form["client_secret"] = secret
        elif key_file:
            audience = self.assertion_audience()
            form["client_assertion_type"] = (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            form["client_assertion"] = client_assertion(Path(key_file), client_id, audience)
        else:
            raise UsageError("no credentials: set SLUIS_CLIENT_SECRET (or client_secret in the "
                             "config file), or private_key_file")
        return form

    def assertion_audience(self) -> str:
        """The `aud` of a client assertion: token_audience, else this broker's token URL."""
        return self.settings.get("token_audience") or self.url + "/oauth/token"

    def login(self) -> dict[str, Any]:
        """Ask for a new access token and cache it (owner-only) until it expires."""
        credentials = self._credentials()
        form = urllib.parse.urlencode(credentials).encode("ascii")
        try:
            answer = self.exchange("POST", "/oauth/token", body=form, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
            })
        except Problem as problem:
            if problem.title == "invalid_client":
                problem.detail = self._refusal_text(problem.detail, credentials)
            raise
        data = answer.json()
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise SluisError("the broker's token answer holds no access token")
        expires_in = data.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int) else 300
        cached = {"url": self.url, "client_id": self.settings.get("client_id"),
                  "access_token": token, "expires_at": int(time.time()) + lifetime,
                  "scope": data.get("scope", "")}
        write_private(self._cache_path(), json.dumps(cached).encode("utf-8"))
        return cached

    def _refusal_text(self, told: str | None, credentials: Mapping[str, str]) -> str:
        """What to say of a refused sign-in. For a key, the broker's own words (they name
        the audience it expects) and the audience this assertion named, which differ when
        the broker's issuer is not the URL sluis talks to."""
        if "client_assertion" not in credentials:
            return "Client authentication failed: check the client id and secret (or key)."
        return (f"{told or 'Client authentication failed.'} This assertion had aud "
                f"{self.assertion_audience()}; if the broker expects another, set "
                "token_audience (SLUIS_TOKEN_AUDIENCE) to it; else check the client id and "
                "key.")

    def logout(self) -> bool:
        try:
            self._cache_path().unlink()
        except FileNotFoundError:
            return False
        return True

    def token(self) -> str:
        cached = read_private_json(self._cache_path())
        if (cached and cached.get("url") == self.url
                and cached.get("client_id") == self.settings.get("client_id")
                and isinstance(cached.get("expires_at"), int)
                and cached["expires_at"] - TOKEN_MARGIN_SECONDS > time.time()
                and isinstance(cached.get("access_token"), str)):
            return str(cached["access_token"])
        return str(self.login()["access_token"])

    # -- API calls --

    def _headers(self, extra: Mapping[str, str] | None, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        acting = self.settings.get("acting_user")
        if acting:
            headers["X-Acting-User"] = acting
        headers.update(extra or {})
        return headers

    def call(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
        payload: Any = None, headers: Mapping[str, str] | None = None, auth: bool = True,
    ) -> Answer:
        """One API call; a 401 with a cached token renews the token once and retries."""
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                path += "?" + urllib.parse.urlencode(pairs)
        body = None
        extra = dict(headers or {})
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            extra["Content-Type"] = "application/json"
        token = self.token() if auth else None
        try:
            return self.exchange(method, path, body=body, headers=self._headers(extra, token))
        except Problem as problem:
            if not (auth and problem.status == 401):
                raise
        # The cached token may have been revoked or signed by a retired key: renew once.
        fresh = str(self.login()["access_token"])
        return self.exchange(method, path, body=body, headers=self._headers(extra, fresh))

    def download(self, path: str, accept: str) -> http.client.HTTPResponse:
        """An open streaming response (for large answers such as the export)."""
        try:
            return self.open("GET", path, headers=self._headers({"Accept": accept}, self.token()))
        except Problem as problem:
            if problem.status != 401:
                raise
        fresh = str(self.login()["access_token"])
        return self.open("GET", path, headers=self._headers({"Accept": accept}, fresh))

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query).json()

    def post(self, path: str, payload: Any, headers: Mapping[str, str] | None = None) -> Any:
        return self.call("POST", path, payload=payload, headers=headers).json()


def client_assertion(key_file: Path, client_id: str, audience: str) -> str:
    """An RFC 7523 client assertion signed ES256 with the client's P-256 key.

    The standard library cannot sign ECDSA; this is the one place that needs the optional
    `cryptography` package.
    """
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, utils
    except ImportError:
        raise UsageError("private_key_jwt needs the Python package `cryptography` "
                         "(pip install cryptography); or use a client secret") from None
    if _readable_by_others(key_file):
        warn(f"the private key {key_file} is readable by others: chmod 600 it")
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot load the private key {key_file}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UsageError(f"{key_file} is not an EC P-256 private key")
    now = int(time.time())
    header = {"alg": "ES256", "typ": "JWT"}
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
              "exp": now + ASSERTION_SECONDS, "jti": secrets.token_urlsafe(18)}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    r, s = utils.decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def new_key(path: Path) -> dict[str, str]:
    """Create an EC P-256 private key file (owner-only); return its public JWK."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        raise UsageError("creating a key needs the Python package `cryptography` "
                         "(pip install cryptography)") from None
    if path.exists():
        raise UsageError(f"{path} exists; choose another file")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(path, pem)
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big"))}


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: only to show who the broker says we are."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return data if isinstance(data, dict) else {}


# --- Remembered checkpoints -----------------------------------------------------------


class CheckpointMemory:
    """The last checkpoint this client saw from one broker, and the keys that signed it.

    Kept in the user's data directory, owner-only. It only ever moves forward to a
    checkpoint proven consistent with it; a conflict is recorded beside it as evidence.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = data_dir() / "checkpoints" / f"{_digest(url)}.json"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state = read_private_json(self.path)
        if state is None:
            raise CheckFailed(f"the remembered checkpoint {self.path} is unreadable or "
                              "readable by others; inspect it, or move it away to start over")
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        write_private(self.path, json.dumps(state, indent=2, sort_keys=True).encode("utf-8"))

    def remembered(self) -> tuple[Checkpoint, str] | None:
        """(checkpoint, when it was seen) or None before the first one."""
        state = self.load()
        if not state or "size" not in state:
            return None
        try:
            checkpoint = Checkpoint(str(state["origin"]), int(state["size"]),
                                    hash_b64(state["root_hash"], "remembered root"))
        except (KeyError, TypeError, ValueError, CheckFailed):
            raise CheckFailed(f"the remembered checkpoint {self.path} is malformed") from None
        return checkpoint, str(state.get("seen_at", "an earlier day"))

    def keys(self) -> list[str]:
        state = self.load() or {}
        keys = state.get("checkpoint_keys", [])
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    def update(self, **changes: Any) -> None:
        state = dict(self.load() or {})
        state.update(changes, url=self.url)
        self.save(state)

    def remember(self, checkpoint: Checkpoint) -> None:
        self.update(origin=checkpoint.origin, size=checkpoint.size,
                    root_hash=b64encode(checkpoint.root), seen_at=_now_text())

    def record_conflict(self, checkpoint: Checkpoint, reason: str) -> None:
        state = dict(self.load() or {})
        conflicts = list(state.get("conflicts", []))
        conflicts.append({"size": checkpoint.size, "root_hash": b64encode(checkpoint.root),
                          "origin": checkpoint.origin, "seen_at": _now_text(),
                          "reason": reason})
        self.update(conflicts=conflicts[-20:])


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 - Python 3.9


def alarm(url: str, seen: Checkpoint, seen_at: str, shown: Checkpoint, reason: str,
          memory: CheckpointMemory, shown_by: str = "the broker now") -> None:
    """Warn loudly: the broker (or an export of its log, `shown_by`) shows a log that
    contradicts a checkpoint already seen."""
    lines = [
        "=" * 72,
        f"ALARM: the audit log of {url} {reason}.",
        f"This client saw a signed checkpoint of {seen.size} entries (root "
        f"{b64encode(seen.root)}) on {seen_at};",
        f"{shown_by} shows {shown.size} entries (root {b64encode(shown.root)}).",
        "The log was rolled back, truncated or rewritten, or this is another log.",
        f"The remembered checkpoint stays as evidence in {memory.path};",
        "report this to the privacy officer and the broker's operator.",
        "=" * 72,
    ]
    for line in lines:
        say(f"sluis: {line}", err=True)


# --- Output ---------------------------------------------------------------------------

# What a terminal takes as an instruction rather than text: the C0 controls (ESC starts
# the sequences that clear the screen or set the window title, CR overwrites a line), DEL
# and the C1 controls (U+009B is a CSI of its own); and the line and paragraph separators
# and bidirectional overrides, which make text read other than it is.
_BEYOND_C0 = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_UNSAFE_BEYOND_C0 = re.compile(f"[{_BEYOND_C0}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def visible(value: Any) -> str:
    """A value as one line of plain text: every control character in it (a newline too)
    written out (`\\n`, `\\x1b`, `\\u009b`), so that what the broker sends can neither
    steer the terminal nor start a line of its own."""
    return _UNSAFE.sub(_escape, str(value))


def say(text: str = "", *, err: bool = False, end: str = "\n") -> None:
    """Print to stdout (or stderr): the one way this client writes anything. Each line of
    `text` goes through `visible`, so that no control character reaches the terminal,
    whatever was composed into the text; only its own line breaks remain."""
    stream = sys.stderr if err else sys.stdout
    stream.write("\n".join(visible(line) for line in text.split("\n")) + end)


def json_text(value: Any) -> str:
    """`value` as indented JSON. json.dumps escapes the C0 controls in strings (its only raw
    newlines are its own indentation); what else `visible` escapes (DEL, C1, separators,
    overrides) is written as a JSON `\\u` escape too, so the output is the broker's exact
    values and holds no raw control character."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _UNSAFE_BEYOND_C0.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def cell(value: Any) -> str:
    """One table cell: short, single-line text."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(cell(v) for v in value) or "-"
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    text = visible(" ".join(text.split()))
    return text if len(text) <= 60 else text[:57] + "..."


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]  # noqa: B905 - Python 3.9
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]  # noqa: B905
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]  # noqa: B905
    return "\n".join(lines)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested objects as (dotted.path, value) pairs, for key-value listings."""
    if isinstance(value, dict) and value:
        pairs: list[tuple[str, Any]] = []
        for key, item in value.items():
            pairs += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return [(prefix, value)]


def render_pairs(pairs: Sequence[tuple[str, Any]], indent: str = "") -> str:
    keys = [visible(k) for k, _ in pairs]
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"{indent}{k.ljust(width)}  {_field_text(v)}"
                     for k, (_, v) in zip(keys, pairs))  # noqa: B905 - Python 3.9


def _field_text(value: Any) -> str:
    """A released field: bucket objects read as ranges, others as plain text."""
    if isinstance(value, dict) and set(value) <= {"gte", "lt"} and value:
        low, high = visible(value.get("gte")), visible(value.get("lt"))
        if value.get("gte") is not None and value.get("lt") is not None:
            return f"{low} <= x < {high}"
        return f">= {low}" if value.get("gte") is not None else f"< {high}"
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, (dict, list)):
        return visible(json.dumps(value, ensure_ascii=False))
    return cell(value)


class Output:
    """Where answers go: tables for people, JSON with --json."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def json(self, value: Any) -> None:
        say(json_text(value))

    def text(self, text: str = "") -> None:
        say(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
        say(render_table(headers, rows) if rows else empty)


class Progress:
    """A progress bar on stderr (only when asked, or when stderr is a terminal)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled

    def show(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // self.total if self.total else width
        sys.stderr.write("\r")  # back to the start of the bar's own line
        say(f"sluis: [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} signals",
            err=True, end="")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            say(err=True)
            sys.stderr.flush()


# --- Session --------------------------------------------------------------------------


class Session:
    """One command's context: parsed flags, settings, the broker and the output."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Output(bool(getattr(args, "json", False)))
        self._settings: Settings | None = None
        self._broker: Broker | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.args)
        return self._settings

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = Broker(self.settings, float(self.args.timeout))
        return self._broker

    def pages(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        """One page, or with --all every page, of a paginated list."""
        items: list[Any] = []
        query = dict(query, limit=self.args.limit, cursor=getattr(self.args, "cursor", None))
        while True:
            page = self.broker.get(path, **query)
            items.extend(page.get("items", []))
            cursor = page.get("next_cursor")
            if not (getattr(self.args, "all", False) and cursor):
                return {"items": items, "next_cursor": cursor}
            query["cursor"] = cursor


# --- Commands: login and settings -----------------------------------------------------


def cmd_login(s: Session) -> int:
    cached = s.broker.login()
    claims = token_claims(cached["access_token"])
    expires = datetime.fromtimestamp(cached["expires_at"]).astimezone()
    info = {"url": s.broker.url, "client_id": claims.get("sub", cached["client_id"]),
            "org": claims.get("org"), "roles": claims.get("roles", cached.get("scope")),
            "expires_at": expires.isoformat(timespec="seconds")}
    if s.out.as_json:
        s.out.json(info)
        return EXIT_OK
    roles = info["roles"]
    roles_text = ", ".join(map(visible, roles)) if isinstance(roles, list) else visible(roles)
    s.out.text(f"logged in to {info['url']} as {visible(info['client_id'])} "
               f"({visible(info['org'])}; roles: {roles_text})")
    s.out.text(f"token valid until {expires:%Y-%m-%d %H:%M:%S}, cached for you only")
    return EXIT_OK


def cmd_logout(s: Session) -> int:
    forgot = s.broker.logout()
    s.out.text("forgot the cached token" if forgot else "no cached token")
    return EXIT_OK


def cmd_config(s: Session) -> int:
    settings = s.settings
    rows = []
    for name in ENVIRONMENT:
        value = settings.get(name)
        shown = "(set)" if value and name in SECRET_SETTINGS else value
        rows.append([name, shown, settings.origins.get(name, "-")])
    if s.out.as_json:
        s.out.json({"config_file": str(settings.path), "profile": settings.profile,
                    "settings": {r[0]: r[1] for r in rows if r[1]},
                    "config_file_missing": settings.missing,
                    "cache_dir": str(cache_dir()), "data_dir": str(data_dir())})
        return EXIT_OK
    s.out.text(f"config file: {settings.path} (profile {settings.profile})")
    if settings.missing:
        s.out.text(f"  nothing from it: {settings.missing}")
    s.out.text(f"token cache: {cache_dir()}")
    s.out.text(f"checkpoints: {data_dir() / 'checkpoints'}")
    s.out.table(["setting", "value", "from"], rows, "")
    return EXIT_OK


def cmd_key_new(s: Session) -> int:
    jwk = new_key(Path(s.args.path).expanduser())
    s.out.json(jwk)
    say(f"sluis: wrote the private key to {s.args.path} (readable by you only); give the "
        "public JWK above to the broker's administrator", err=True)
    return EXIT_OK


# --- Commands: reference data ---------------------------------------------------------


def _reference(s: Session, path: str, headers: list[str], keys: list[str], empty: str) -> int:
    data = s.broker.get(path)
    if s.out.as_json:
        s.out.json(data)
    else:
        s.out.table(headers, [[item.get(k) for k in keys] for item in data["items"]], empty)
    return EXIT_OK


def cmd_organisations(s: Session) -> int:
    return _reference(s, "/v1/organisations", ["id", "name", "groups"],
                      ["id", "name", "groups"], "no organisations")


def _caller_org(s: Session) -> str:
    """The caller's organisation, as its access token names it."""
    org = token_claims(s.broker.token()).get("org")
    if not isinstance(org, str):
        raise SluisError("the access token names no organisation")
    return org


def askable_purposes(org: str, groups: Iterable[str], rules: Iterable[Mapping[str, Any]]
                     ) -> set[str]:
    """The purposes some rule names `org` (or one of its groups) a recipient for: the ones
    it may ask for; the broker refuses any other (403, logged against the acting person)."""
    names = {org, *groups}
    return {str(purpose) for rule in rules if names & set(rule.get("recipients") or ())
            for purpose in rule.get("purposes") or ()}


def cmd_purposes(s: Session) -> int:
    purposes = s.broker.get("/v1/purposes")["items"]
    org = _caller_org(s)
    groups = next((o.get("groups") or [] for o in s.broker.get("/v1/organisations")["items"]
                   if o.get("id") == org), [])
    mine = askable_purposes(org, groups, s.broker.get("/v1/policy")["rules"])
    if s.out.as_json:
        s.out.json({"org": org, "items": [{**p, "may_ask": p["id"] in mine} for p in purposes]})
        return EXIT_OK
    headers, keys = ["id", "case ref", "title"], ["id", "requires_case_reference", "title"]
    asked = [[p.get(k) for k in keys] for p in purposes if p["id"] in mine]
    others = [[p.get(k) for k in keys] for p in purposes if p["id"] not in mine]
    s.out.table(headers, asked, f"no rule of the live pack lets {visible(org)} ask for any "
                                "purpose")
    if asked:
        s.out.text(f"(the purposes {visible(org)} may ask for: a rule of the live pack grants "
                   "them)")
    if others:
        s.out.text()
        s.out.text(f"not for {visible(org)} (no rule grants them; asking is refused and "
                   "logged against you):")
        s.out.table(headers, others, "")
    return EXIT_OK


def cmd_legal_bases(s: Session) -> int:
    return _reference(s, "/v1/legal-bases", ["id", "criminal", "title"],
                      ["id", "criminal_data", "title"], "no legal bases")


def cmd_categories(s: Session) -> int:
    data = s.broker.get("/v1/categories")
    wanted = s.args.category
    if wanted:
        found = [c for c in data["items"] if c["id"] == wanted]
        if not found:
            raise SluisError(f"no category {wanted!r}; `sluis categories` lists them")
        return _show_category(s, found[0])
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    rows = [[c["id"], c["subject_types"], c["contributors"], c["retention_days"], c["title"]]
            for c in data["items"]]
    s.out.table(["id", "subjects", "contributors", "days", "title"], rows, "no categories")
    return EXIT_OK


def _show_category(s: Session, category: dict[str, Any]) -> int:
    if s.out.as_json:
        s.out.json(category)
        return EXIT_OK
    s.out.text(f"{visible(category['id'])}: {visible(category['title'])}")
    s.out.text(render_pairs([
        ("subject types", category["subject_types"]), ("legal bases", category["legal_bases"]),
        ("contributors", category["contributors"]),
        ("retention", f"{category['retention_days']} days"),
    ], "  "))
    rows = [[name, spec.get("type"), spec.get("required", True),
             spec.get("values") or _range_text(spec), spec.get("title")]
            for name, spec in category["attributes"].items()]
    s.out.text()
    s.out.table(["attribute", "type", "required", "values", "title"], rows, "no attributes")
    return EXIT_OK


def _range_text(spec: Mapping[str, Any]) -> str | None:
    low, high = spec.get("min"), spec.get("max")
    if low is None and high is None:
        return None
    return f"{'' if low is None else low}..{'' if high is None else high}"


def cmd_policy(s: Session) -> int:
    data = s.broker.get("/v1/policy")
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    s.out.text(f"pack {visible(data['pack'])} version {visible(data['version'])}, "
               f"{visible(data['hash'])}")
    s.out.text(f"loaded {visible(data['loaded_at'])}")
    s.out.text()
    rows = [[r.get("id"), r.get("access"), r.get("recipients"), r.get("purposes"),
             r.get("categories"), r.get("sources", "(contributors)")] for r in data["rules"]]
    s.out.table(["rule", "access", "recipients", "purposes", "categories", "sources"], rows,
                "no rules concern your organisation")
    return EXIT_OK


def cmd_explain(s: Session) -> int:
    a = s.args
    body = {"recipient": a.recipient, "purpose": a.purpose, "category": a.category,
            "source": a.source}
    bases = [a.legal_basis] if a.legal_basis else _legal_bases_of(s, a.category)
    if len(bases) <= 1:
        # One legal basis (or a category the broker does not know: it says so).
        data = s.broker.post("/v1/policy/explain", {**body, "legal_basis": a.legal_basis}
                             if a.legal_basis else body)
        if s.out.as_json:
            s.out.json(data)
        else:
            _print_explained(s, data, "")
        return EXIT_OK
    # A rule may cover only some of the category's legal bases: one answer per basis.
    answers = [{"legal_basis": basis,
                **s.broker.post("/v1/policy/explain", {**body, "legal_basis": basis})}
               for basis in bases]
    if s.out.as_json:
        s.out.json({"items": answers})
        return EXIT_OK
    for number, answer in enumerate(answers):
        if number:
            s.out.text()
        s.out.text(f"legal basis {visible(answer['legal_basis'])}:")
        _print_explained(s, answer, "  ")
    return EXIT_OK


def _legal_bases_of(s: Session, category: str) -> list[str]:
    """The legal bases a signal of `category` may be held under ([] if unknown)."""
    for item in s.broker.get("/v1/categories")["items"]:
        if item.get("id") == category:
            return [str(basis) for basis in item.get("legal_bases") or ()]
    return []


def _print_explained(s: Session, data: Mapping[str, Any], indent: str) -> None:
    if data.get("access") == "none":
        s.out.text(f"{indent}access: none (no rule grants this; nothing would be disclosed)")
        return
    s.out.text(f"{indent}access: {visible(data['access'])} by rule {visible(data.get('rule'))}")
    fields = data.get("fields") or {}
    table = render_table(["field", "transform"], sorted(fields.items())) if fields else ""
    s.out.text("\n".join(indent + line for line in table.splitlines()) or f"{indent}no fields")


# --- Commands: signals ----------------------------------------------------------------

SUBJECT_IDENTIFIERS = (("bsn", "person"), ("kvk", "company"), ("plate", "vehicle"),
                       ("bag_id", "address"))


def coerce_attribute(spec: Mapping[str, Any] | None, text: str) -> Any:
    """A textual value (from a flag or a CSV cell) as the type its category declares."""
    kind = (spec or {}).get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return int(text) if text.strip().lstrip("-").isdigit() else float(text)
    except ValueError:
        return text
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "ja", "1"):
            return True
        if lowered in ("false", "no", "nee", "0"):
            return False
        return text
    if kind is None:
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, (bool, int, float)) else text
    return text


def _attribute_specs(s: Session, category: str) -> dict[str, Any]:
    for item in s.broker.get("/v1/categories")["items"]:
        if item["id"] == category:
            return dict(item.get("attributes") or {})
    return {}


def _signal_from_flags(s: Session) -> dict[str, Any]:
    a = s.args
    if not (a.category and a.legal_basis):
        raise UsageError("--category and --legal-basis are required (or give --file)")
    subject: dict[str, Any] = {}
    kind = a.subject_type
    for name, implied in SUBJECT_IDENTIFIERS:
        value = getattr(a, name)
        if value:
            subject[name] = value
            kind = kind or implied
    if not kind:
        raise UsageError("name the subject: --bsn, --kvk, --plate or --bag-id (or --subject-type)")
    subject = {"type": kind, **subject}
    for name in ("name", "birthdate"):
        if getattr(a, name):
            subject[name] = getattr(a, name)
    location = {k: getattr(a, k) for k in ("postcode", "house_number", "house_letter",
                                           "addition", "street", "city") if getattr(a, k)}
    body: dict[str, Any] = {
        "category": a.category, "legal_basis": a.legal_basis, "subject": subject,
        "observed_at": a.observed_at or datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if location:
        body["location"] = location
    if a.description:
        body["description"] = a.description
    body["attributes"] = _attributes_from_flags(s, a.category, a.attr or [])
    return body


def _attributes_from_flags(s: Session, category: str, pairs: list[str]) -> dict[str, Any]:
    specs = _attribute_specs(s, category) if pairs else {}
    attributes: dict[str, Any] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError(f"--attr wants NAME=VALUE, not {pair!r}")
        attributes[name] = coerce_attribute(specs.get(name), value)
    return attributes


def _read_input(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def _print_signal(s: Session, signal: dict[str, Any], heading: str) -> None:
    if s.out.as_json:
        s.out.json(signal)
        return
    s.out.text(f"{heading} {visible(signal['id'])}")
    pairs = [(k, v) for k, v in flatten(signal) if k != "id"]
    s.out.text(render_pairs(pairs, "  "))


def cmd_signals_submit(s: Session) -> int:
    a = s.args
    flagged = [n for n in ("category", "legal_basis", "bsn", "kvk", "plate", "bag_id",
                           "postcode", "attr", "description") if getattr(a, n)]
    if a.file:
        if flagged:
            raise UsageError("give the signal either as --file or as flags, not both")
        try:
            body = json.loads(_read_input(a.file))
        except ValueError as exc:
            raise UsageError(f"{a.file} is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise UsageError(f"{a.file} must hold one JSON object (use `signals import` for many)")
    else:
        body = _signal_from_flags(s)
    key = a.idempotency_key or f"sluis-{secrets.token_hex(16)}"
    signal = s.broker.post("/v1/signals", body, headers={"Idempotency-Key": key})
    _print_signal(s, signal, "stored signal")
    return EXIT_OK


@dataclass
class Record:
    """One signal read from an input file, with where it came from (for error messages)."""

    where: str
    body: dict[str, Any]


def _import_format(path: str, explicit: str | None) -> str:
    if explicit:
        return str(explicit)
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".json": "json"}.get(suffix, "jsonl")


def _records_jsonl(text: str) -> list[Record]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"line {number} is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise UsageError(f"line {number} is not a JSON object")
        records.append(Record(f"line {number}", body))
    return records


def _records_json(text: str) -> list[Record]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the input is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("signals"), list):
        data = data["signals"]
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise UsageError('the JSON input must be a list of signals or {"signals": [...]}')
    return [Record(f"item {i}", d) for i, d in enumerate(data, 1)]


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _records_csv(s: Session, text: str) -> list[Record]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "category" not in reader.fieldnames:
        raise UsageError("the CSV needs a header row with at least a `category` column; "
                         "nested fields are dotted: subject.bsn, subject.bag_id, "
                         "location.postcode, attributes.kwh_per_month")
    specs = {c["id"]: c.get("attributes") or {} for c in s.broker.get("/v1/categories")["items"]}
    records = []
    for row in reader:
        body: dict[str, Any] = {"attributes": {}}
        category_specs = specs.get(row.get("category") or "", {})
        for column, raw in row.items():
            if column is None or raw is None or raw == "":
                continue
            value: Any = raw
            if column == "location.house_number":
                value = coerce_attribute({"type": "integer"}, raw)
            elif column.startswith("attributes."):
                value = coerce_attribute(category_specs.get(column[len("attributes."):]), raw)
            _set_path(body, column, value)
        records.append(Record(f"line {reader.line_num}", body))
    return records


def read_records(s: Session, path: str, fmt: str) -> list[Record]:
    text = _read_input(path)
    if fmt == "csv":
        return _records_csv(s, text)
    if fmt == "json":
        return _records_json(text)
    return _records_jsonl(text)


def _batch_key(batch: Sequence[Record]) -> str:
    """The Idempotency-Key of a batch, from its content: re-running an import is safe."""
    canonical = json.dumps([r.body for r in batch], sort_keys=True, separators=(",", ":"))
    return "sluis-batch-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


def _retry_after(problem: Problem, attempt: int) -> float | None:
    """How long to wait before retrying a batch (None: do not retry)."""
    if problem.status in (429, 502, 503, 504) and attempt < 4:
        return min(2.0 ** attempt, 20.0)
    return None


@dataclass
class StoredBatch:
    """A batch's answer: its signals, and how many of them this import stored (None when
    the answer cannot tell); the rest the broker had stored before under the same
    Idempotency-Key, and it answered as it did then."""

    signals: list[dict[str, Any]]
    new: int | None


def _server_time(answer: Answer) -> datetime | None:
    """The broker's clock when it answered (its Date header, whole seconds), if it says."""
    try:
        moment = email.utils.parsedate_to_datetime(answer.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None


def _received(signal: Mapping[str, Any]) -> datetime | None:
    text = signal.get("received_at")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def count_new(signals: Sequence[Mapping[str, Any]], answered: datetime | None,
              elapsed: float) -> int | None:
    """How many signals were received by this request rather than before it: the broker
    replays the first answer to an Idempotency-Key, with its first `received_at`. The
    request reached the broker at the earliest `elapsed` seconds before the Date of its
    answer (which the broker rounds down), so a signal received before that was already
    there; one stored less than a second before it is counted as new."""
    if answered is None:
        return None
    sent = answered - timedelta(seconds=elapsed)
    times = [_received(signal) for signal in signals]
    if any(moment is None for moment in times):
        return None
    return sum(1 for moment in times if moment is not None and moment >= sent)


def _post_batch(s: Session, batch: Sequence[Record]) -> StoredBatch:
    headers = {"Idempotency-Key": _batch_key(batch)}
    attempt = 0
    started = time.monotonic()  # a retry that finds the first attempt stored is new too
    while True:
        attempt += 1
        try:
            answer = s.broker.call("POST", "/v1/signals/batch",
                                   payload={"signals": [r.body for r in batch]},
                                   headers=headers)
            signals = list(answer.json()["signals"])
            if answer.headers.get("idempotent-replayed") != "true":
                return StoredBatch(signals, len(signals))  # stored by this request
            if attempt == 1:
                return StoredBatch(signals, 0)  # all sent before, by an earlier import
            # A retry's replay: stored by the attempt that broke, or by an earlier import.
            return StoredBatch(signals, count_new(signals, _server_time(answer),
                                                  time.monotonic() - started))
        except Problem as problem:
            wait = _retry_after(problem, attempt)
            if wait is None:
                raise
        except SluisError:
            # The connection broke: the same key makes a retry safe (stored once at most).
            if attempt >= 4:
                raise
            wait = float(attempt)
        time.sleep(wait)


def _stored_text(count: int, new: int | None) -> str:
    """`count` signals the broker holds for this import, told apart as new or already there."""
    noun = "signal" if count == 1 else "signals"
    if new is None:
        return (f"{count} {noun} stored or already there (the broker's answers do not say "
                "which)")
    if new == count:
        return f"{count} new {noun}"
    return f"{new} new {noun}, {count - new} already there"


def _explain_batch_failure(
    problem: Problem, batch: Sequence[Record], number: int, total: int, stored: int,
    new: int | None,
) -> None:
    say(f"sluis: {problem.line()}", err=True)
    for error in problem.errors[:30]:
        loc = [p for p in error.loc if p != "body"]
        if len(loc) >= 2 and loc[0] == "signals" and isinstance(loc[1], int) \
                and 0 <= loc[1] < len(batch):
            where = batch[loc[1]].where
            loc = loc[2:]
        else:
            where = "batch"
        path = ".".join(visible(p) for p in loc) or "(signal)"
        say(f"sluis:   {where}: {path}: {visible(error.msg)}", err=True)
    if len(problem.errors) > 30:
        say(f"sluis:   ... and {len(problem.errors) - 30} more", err=True)
    earlier = (f"{stored} signals of earlier batches were stored" if new == stored
               else f"of earlier batches the broker holds {_stored_text(stored, new)}")
    say(f"sluis: batch {number} of {total} was refused and nothing of it was stored; "
        f"{earlier}", err=True)


def cmd_signals_import(s: Session) -> int:
    a = s.args
    if not 1 <= a.batch_size <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}")
    records = read_records(s, a.path, _import_format(a.path, a.format))
    if not records:
        raise UsageError(f"{a.path} holds no signals")
    batches = [records[i : i + a.batch_size] for i in range(0, len(records), a.batch_size)]
    progress = Progress(len(records), a.progress if a.progress is not None
                        else sys.stderr.isatty())
    ids: list[str] = []
    new: int | None = 0
    progress.show(0)
    for number, batch in enumerate(batches, 1):
        try:
            stored = _post_batch(s, batch)
        except Problem as problem:
            progress.finish()
            _explain_batch_failure(problem, batch, number, len(batches), len(ids), new)
            return EXIT_FAILED
        ids.extend(str(signal["id"]) for signal in stored.signals)
        new = None if new is None or stored.new is None else new + stored.new
        progress.show(len(ids))
    progress.finish()
    if s.out.as_json:
        s.out.json({"stored": new, "already_there": None if new is None else len(ids) - new,
                    "signals": len(ids), "batches": len(batches), "ids": ids})
    else:
        s.out.text(f"sent {len(ids)} signals in {len(batches)} "
                   f"batch{'es' if len(batches) != 1 else ''}: {_stored_text(len(ids), new)}")
    return EXIT_OK


def _subject_text(subject: Mapping[str, Any]) -> str:
    for name, _ in SUBJECT_IDENTIFIERS:
        if subject.get(name):
            return f"{subject.get('type')} {subject[name]}"
    return str(subject.get("type", "-"))


def cmd_signals_list(s: Session) -> int:
    a = s.args
    data = s.pages("/v1/signals", {"category": a.category, "since": a.since, "until": a.until})
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    rows = [[i["id"], i["category"], _subject_text(i.get("subject") or {}), i["observed_at"],
             i["received_at"]] for i in data["items"]]
    s.out.table(["id", "category", "subject", "observed", "received"], rows, "no signals")
    if data["next_cursor"]:
        s.out.text(f"more: --cursor {visible(data['next_cursor'])} (or --all)")
    return EXIT_OK


def cmd_signals_show(s: Session) -> int:
    signal = s.broker.get(f"/v1/signals/{_path_segment(s.args.id)}")
    _print_signal(s, signal, "signal")
    return EXIT_OK


def cmd_signals_retract(s: Session) -> int:
    signal_id = _path_segment(s.args.id)
    if not s.args.yes and sys.stdin.isatty():
        reply = input(f"retract {signal_id}? Its content becomes unreadable for good [y/N] ")
        if reply.strip().lower() not in ("y", "yes", "j", "ja"):
            s.out.text("not retracted")
            return EXIT_FAILED
    s.broker.call("DELETE", f"/v1/signals/{signal_id}")
    if s.out.as_json:
        s.out.json({"retracted": signal_id})
    else:
        s.out.text(f"retracted {signal_id}: its content can no longer be read")
    return EXIT_OK


def _path_segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# --- Commands: disclosures, hits, area summaries, re-identification -------------------


def _subject_from_flags(a: argparse.Namespace) -> dict[str, str] | None:
    given = {name: getattr(a, name) for name, _ in SUBJECT_IDENTIFIERS if getattr(a, name)}
    return given or None


def _purpose_body(a: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"purpose": a.purpose}
    if a.case:
        body["case_reference"] = a.case
    return body


def _house_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise UsageError(f"house number must be a number, not {text!r}") from None
    return number


def _disclosure_query(a: argparse.Namespace) -> dict[str, Any]:
    subject = _subject_from_flags(a)
    if subject:
        return {"subject": subject}
    if a.address:
        address: dict[str, Any] = {"postcode": a.address[0],
                                   "house_number": _house_number(a.address[1])}
        if a.house_letter:
            address["house_letter"] = a.house_letter
        if a.addition:
            address["addition"] = a.addition
        return {"address": address}
    if a.area:
        return {"area": {"postcode": a.area}}
    return {"signals": list(a.signal)}


def cmd_disclose(s: Session) -> int:
    a = s.args
    if (a.house_letter or a.addition) and not a.address:
        raise UsageError("--house-letter and --addition go with --address")
    query = _disclosure_query(a)
    if a.category:
        query["categories"] = list(a.category)
    body = {**_purpose_body(a), "query": query}
    if a.page:
        body["page"] = a.page
    data = s.broker.post("/v1/disclosures", body)
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    released = data.get("signals") or []
    s.out.text(f"disclosure {visible(data.get('disclosure_id'))} for "
               f"{visible(data.get('purpose'))} (audit entry {visible(data.get('audit_seq'))}, "
               f"policy {visible(data.get('policy_hash'))})")
    s.out.text(f"{len(released)} signal{'s' if len(released) != 1 else ''} released")
    for signal in released:
        s.out.text()
        s.out.text(f"{visible(signal.get('ref'))}  {visible(signal.get('category'))} from "
                   f"{visible(signal.get('source'))}, {visible(signal.get('legal_basis'))}, "
                   f"rule {visible(signal.get('rule'))}")
        fields = sorted((signal.get("fields") or {}).items())
        if fields:
            s.out.text(render_pairs(fields, "  "))
    if data.get("next_page"):
        s.out.text()
        s.out.text(f"more: the same command with --page {visible(data['next_page'])}")
    if data.get("audit_seq") is not None:
        s.out.text()
        s.out.text(_receipt_hint(s, data["audit_seq"], released))
    return EXIT_OK


def _receipt_hint(s: Session, seq: Any, released: Sequence[Mapping[str, Any]]) -> str:
    """How to keep the disclosure's evidence. Its audit entry names every released signal:
    one of another organisation's is shown to the requester redacted, without the bytes a
    receipt is checked against, so only the privacy officer can check that receipt (a token
    that names no organisation gets the plain suggestion; `audit receipt` then explains)."""
    org = token_claims(s.broker.token()).get("org")
    if org is None or all(signal.get("source") == org for signal in released):
        return (f"keep a receipt: sluis audit receipt {visible(seq)} --save receipt-{visible(seq)}"
                ".txt")
    return (f"audit entry {visible(seq)} names other organisations' signals, so it is shown to "
            "you redacted and you cannot check its receipt yourself; the privacy officer can "
            f"(sluis audit receipt {visible(seq)} --save FILE)")


def cmd_hit(s: Session) -> int:
    subject = _subject_from_flags(s.args)
    if not subject:
        raise UsageError("name the subject: --bsn, --kvk, --plate or --bag-id")
    data = s.broker.post("/v1/hits", {**_purpose_body(s.args), "subject": subject})
    if s.out.as_json:
        s.out.json(data)
    elif data.get("hit"):
        sources = ", ".join(map(visible, data.get("sources") or [])) or "-"
        s.out.text(f"hit: yes (sources: {sources})")
    else:
        s.out.text("hit: no")
    return EXIT_OK


def cmd_area(s: Session) -> int:
    data = s.broker.post("/v1/area-summaries",
                         {**_purpose_body(s.args), "area": {"postcode": s.args.postcode}})
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    area = data.get("area")
    s.out.text(f"area {visible(area.get('postcode') if isinstance(area, dict) else area)}")
    rows = [[c.get("category"), "(suppressed)" if c.get("suppressed") else c.get("count")]
            for c in data.get("categories") or []]
    s.out.table(["category", "count"], rows, "no categories")
    return EXIT_OK


def _print_reidentification(s: Session, data: dict[str, Any]) -> None:
    if s.out.as_json:
        s.out.json(data)
        return
    s.out.text(render_pairs(sorted(data.items())))


def cmd_signals_hold(s: Session) -> int:
    a = s.args
    path = f"/v1/signals/{_path_segment(a.id)}/hold"
    if a.lift:
        s.broker.call("DELETE", path)
        if s.out.as_json:
            s.out.json({"lifted": a.id})
        else:
            s.out.text(f"hold on {a.id} lifted: the ordinary rules apply again")
        return EXIT_OK
    hold = s.broker.post(path, {"case_reference": a.case}) if a.case else s.broker.get(path)
    if s.out.as_json:
        s.out.json(hold)
    else:
        s.out.text(f"{visible(hold.get('signal_id'))} is held for "
                   f"{visible(hold.get('case_reference'))} since {visible(hold.get('placed_at'))} "
                   f"(by {visible(hold.get('placed_by'))})")
    return EXIT_OK


def cmd_signals_holds(s: Session) -> int:
    data = s.pages("/v1/legal-holds", {"case_reference": s.args.case})
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    rows = [[i.get("signal_id"), i.get("category"), i.get("case_reference"),
             i.get("placed_at"), i.get("placed_by")] for i in data["items"]]
    s.out.table(["signal", "category", "case", "since", "placed by"], rows, "no legal holds")
    if data["next_cursor"]:
        s.out.text(f"more: --cursor {visible(data['next_cursor'])} (or --all)")
    return EXIT_OK


def cmd_reid_request(s: Session) -> int:
    a = s.args
    data = s.broker.post("/v1/reidentifications", {
        "disclosure_id": a.disclosure, "ref": a.ref, "field": a.field,
        "justification": a.justification,
    })
    _print_reidentification(s, data)
    if not s.out.as_json:
        s.out.text("a privacy officer (not you) decides; then: "
                   f"sluis reid fetch {visible(data.get('id'))}")
    return EXIT_OK


def cmd_reid_decide(s: Session) -> int:
    a = s.args
    data = s.broker.post(f"/v1/reidentifications/{_path_segment(a.id)}/decision",
                         {"approve": bool(a.approve), "reason": a.reason})
    _print_reidentification(s, data)
    return EXIT_OK


def cmd_reid_list(s: Session) -> int:
    data = s.pages("/v1/reidentifications", {"status": s.args.status})
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    rows = [[i.get("id"), i.get("status"), i.get("requested_at"), i.get("org"),
             i.get("purpose"), i.get("field"), i.get("justification")] for i in data["items"]]
    s.out.table(["id", "status", "requested", "org", "purpose", "field", "justification"],
                rows, "no re-identification requests")
    if data["next_cursor"]:
        s.out.text(f"more: --cursor {visible(data['next_cursor'])} (or --all)")
    return EXIT_OK


def cmd_reid_fetch(s: Session) -> int:
    data = s.broker.get(f"/v1/reidentifications/{_path_segment(s.args.id)}")
    _print_reidentification(s, data)
    if not s.out.as_json and data.get("status") == "approved":
        s.out.text("the value is shown once; the broker now marks it revealed")
    return EXIT_OK


# --- Commands: audit ------------------------------------------------------------------


def cmd_audit_entries(s: Session) -> int:
    a = s.args
    data = s.pages("/v1/audit/entries", {"action": a.action, "org": a.org,
                                         "purpose": a.purpose, "since": a.since,
                                         "until": a.until})
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    rows = [[e.get("seq"), e.get("time"), e.get("action"), e.get("outcome"),
             (e.get("actor") or {}).get("org"), e.get("purpose"), len(e.get("items") or [])]
            for e in data["items"]]
    s.out.table(["seq", "time", "action", "outcome", "org", "purpose", "items"], rows,
                "no entries")
    if data["next_cursor"]:
        s.out.text(f"more: --cursor {visible(data['next_cursor'])} (or --all)")
    return EXIT_OK


def _fetch_entry(s: Session, seq: int) -> tuple[dict[str, Any], bytes | None]:
    """An entry and its canonical bytes (None when the broker shows it to you `redacted`:
    parts withheld, and so no bytes); CheckFailed if the leaf hash does not match them."""
    data = s.broker.get(f"/v1/audit/entries/{seq}")
    if data.get("redacted"):
        return data, None
    entry_bytes = b64decode(data.get("entry_b64", ""), "entry_b64")
    if hash_b64(data.get("leaf_hash"), "leaf_hash") != leaf_hash(entry_bytes):
        raise CheckFailed(f"the leaf hash the broker gives for entry {seq} does not match the "
                          "entry's bytes")
    return data, entry_bytes


REDACTED_NOTE = ("redacted: the broker withholds the parts of this entry your rules do not "
                 "show you (and so its bytes and leaf hash); the privacy officer sees it whole")


def cmd_audit_entry(s: Session) -> int:
    data, entry_bytes = _fetch_entry(s, s.args.seq)
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    s.out.text(f"audit entry {visible(data['seq'])}")
    s.out.text(render_pairs(flatten(data.get("entry") or {}), "  "))
    if entry_bytes is None:
        s.out.text(f"  {REDACTED_NOTE}")
    else:
        s.out.text(f"  leaf hash  {visible(data['leaf_hash'])} (recomputed from the entry's "
                   "bytes: matches)")
    return EXIT_OK


class LogWatch:
    """Checks what a broker shows of its log against what this client saw before."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.memory = CheckpointMemory(s.broker.url)

    def keys(self) -> list[NoteKey]:
        """The checkpoint keys to trust: the pinned one, or the broker's (first use trusted,
        a change of key reported)."""
        pinned = self.s.settings.get("checkpoint_key")
        if pinned:
            return [parse_verifier_key(pinned)]
        served = parse_verifier_key(self.s.broker.call(
            "GET", "/v1/audit/checkpoint-key", auth=False).text())
        known = self.memory.keys()
        if known and served.text() not in known:
            warn(f"the broker's checkpoint key changed to {served.text()} (known: "
                 f"{', '.join(known)}); fine after an announced key rotation, otherwise "
                 "ask the broker's operator")
        if served.text() not in known:
            self.memory.update(checkpoint_keys=[*known, served.text()])
        trusted = [served]
        for text in known:
            try:
                trusted.append(parse_verifier_key(text))
            except CheckFailed:
                continue
        return trusted

    def compare(self, shown: Checkpoint, proof: Sequence[bytes] | None) -> tuple[bool, str]:
        """(consistent?, what happened) for a verified checkpoint the broker shows.

        `proof` is the consistency proof from the remembered size, if the caller has one;
        otherwise it is fetched. The memory moves forward only on a verified proof.
        """
        remembered = self.memory.remembered()
        if remembered is None:
            self.memory.remember(shown)
            return True, (f"first checkpoint seen from this broker ({shown.size} entries): "
                          "remembered, later ones must extend it")
        seen, seen_at = remembered
        reason = self._conflict(seen, shown, proof)
        if reason:
            self.memory.record_conflict(shown, reason)
            alarm(self.memory.url, seen, seen_at, shown, reason, self.memory)
            return False, reason
        if shown.size == seen.size:
            return True, f"the same checkpoint as seen on {seen_at}"
        self.memory.remember(shown)
        return True, f"consistent with the checkpoint of {seen.size} entries seen on {seen_at}"

    def _conflict(
        self, seen: Checkpoint, shown: Checkpoint, proof: Sequence[bytes] | None
    ) -> str | None:
        if shown.origin != seen.origin:
            return f"is another log ({shown.origin!r}, not {seen.origin!r})"
        if shown.size < seen.size:
            return "shows a smaller tree than a checkpoint already seen"
        if shown.size == seen.size:
            return None if shown.root == seen.root else "shows two roots for one size"
        if proof is None:
            answer = self.s.broker.get("/v1/audit/proofs/consistency", **{
                "from": seen.size, "to": shown.size})
            proof = [hash_b64(h, "consistency proof hash") for h in answer.get("hashes", [])]
        if not verify_consistency(seen.size, shown.size, seen.root, shown.root, proof):
            return "is not an extension of a checkpoint already seen"
        return None


def cmd_audit_checkpoint(s: Session) -> int:
    watch = LogWatch(s)
    keys = watch.keys()
    data = s.broker.get("/v1/audit/checkpoint")
    checkpoint = open_checkpoint(str(data.get("note", "")), keys)
    if data.get("size") != checkpoint.size or data.get("root_hash") != b64encode(checkpoint.root):
        raise CheckFailed("the checkpoint's JSON fields disagree with its signed note")
    consistent, what = watch.compare(checkpoint, None)
    if s.out.as_json:
        s.out.json({**data, "signature_ok": True, "consistent": consistent, "history": what})
    elif s.args.note:
        say(str(data["note"]), end="")  # verified above; its lines as they were signed
    else:
        s.out.text(f"{visible(checkpoint.origin)}: {checkpoint.size} entries, root "
                   f"{b64encode(checkpoint.root)}")
        s.out.text(f"signed {visible(data.get('time'))} by {visible(keys[0].name)}+"
                   f"{visible(data.get('key_id'))}: signature ok")
        s.out.text(what)
    return EXIT_OK if consistent else EXIT_FAILED


def _server_check(s: Session) -> tuple[bool, list[str]]:
    """The broker's own full verification (privacy officers only); (ok, lines)."""
    try:
        report = s.broker.get("/v1/audit/verify")
    except Problem as problem:
        if problem.status == 403:
            return True, ["the broker's full self-check needs the privacy_officer role: skipped"]
        raise
    lines = [f"the broker's full self-check: {'ok' if report.get('ok') else 'FAILED'} "
             f"({visible(report.get('size'))} entries, root {visible(report.get('root_hash'))})"]
    for problem_item in report.get("problems") or []:
        seq = problem_item.get("seq")
        lines.append(f"  {'seq ' + visible(seq) if seq is not None else 'log'}: "
                     f"{visible(problem_item.get('message'))}")
    return bool(report.get("ok")), lines


def cmd_audit_verify(s: Session) -> int:
    if s.args.file:
        return _verify_file(s, s.args.file)
    watch = LogWatch(s)
    keys = watch.keys()
    data = s.broker.get("/v1/audit/checkpoint")
    checkpoint = open_checkpoint(str(data.get("note", "")), keys)
    consistent, what = watch.compare(checkpoint, None)
    server_ok, lines = _server_check(s) if not s.args.no_server_check else (True, [])
    ok = consistent and server_ok
    if s.out.as_json:
        s.out.json({"ok": ok, "size": checkpoint.size, "root_hash": b64encode(checkpoint.root),
                    "signature_ok": True, "consistent": consistent, "history": what,
                    "server": lines})
    else:
        s.out.text(f"checkpoint: {checkpoint.size} entries, signature ok")
        s.out.text(f"history: {what}")
        for line in lines:
            s.out.text(line)
        s.out.text("verified" if ok else "VERIFICATION FAILED")
    return EXIT_OK if ok else EXIT_FAILED


def _offline_keys(s: Session) -> tuple[list[NoteKey], CheckpointMemory | None]:
    """Keys for offline checks: --key, the pinned key, or those remembered for the broker."""
    if s.args.key:
        return [parse_verifier_key(s.args.key)], _memory_if_configured(s)
    memory = _memory_if_configured(s)
    pinned = s.settings.get("checkpoint_key")
    if pinned:
        return [parse_verifier_key(pinned)], memory
    known = memory.keys() if memory else []
    if not known:
        raise UsageError("no checkpoint key to verify with: pass --key KEY (the broker's "
                         "GET /v1/audit/checkpoint-key), or run `sluis audit verify` online first")
    return [parse_verifier_key(k) for k in known], memory


def _memory_if_configured(s: Session) -> CheckpointMemory | None:
    url = s.settings.get("url")
    return CheckpointMemory(check_url(url)) if url else None


def _compare_offline(
    s: Session, memory: CheckpointMemory, report: ExportReport, path: str, downloaded: bool
) -> tuple[bool, str]:
    """Compare an export's checkpoint with the remembered one, proving consistency from the
    export's own leaves (no broker needed). A checkpoint just downloaded from the broker is
    remembered when none was; a file of unknown origin is not. An export older than the
    remembered checkpoint is no rollback by itself (the log has grown since it was made)."""
    checkpoint = report.checkpoint
    assert checkpoint is not None  # noqa: S101 - only called for a verified export
    remembered = memory.remembered()
    if remembered is None:
        if downloaded:
            memory.remember(checkpoint)
            return True, (f"first checkpoint seen from this broker ({checkpoint.size} "
                          "entries): remembered, later ones must extend it")
        return True, "no checkpoint remembered for this broker to compare with"
    seen, seen_at = remembered
    if seen.origin != checkpoint.origin:
        reason = f"is another log ({checkpoint.origin!r}, not {seen.origin!r})"
    elif checkpoint.size < seen.size:
        return _compare_older_export(s, memory, checkpoint, (seen, seen_at), path)
    elif merkle_root(report.leaves[: seen.size]) == seen.root:
        if checkpoint.size > seen.size:
            memory.remember(checkpoint)
        return True, f"consistent with the checkpoint of {seen.size} entries seen on {seen_at}"
    elif checkpoint.size == seen.size:
        reason = "shows two roots for one size"
    else:
        reason = "is not an extension of a checkpoint already seen"
    memory.record_conflict(checkpoint, reason)
    alarm(memory.url, seen, seen_at, checkpoint, reason, memory, shown_by=f"the export {path}")
    return False, reason


def _compare_older_export(
    s: Session, memory: CheckpointMemory, checkpoint: Checkpoint,
    remembered: tuple[Checkpoint, str], path: str,
) -> tuple[bool, str]:
    """An export that ends before the remembered checkpoint: the remembered tree must extend
    the export's, which only a consistency proof from the broker shows (the export lacks the
    later leaves). Without the broker, say so rather than guess."""
    seen, seen_at = remembered
    older = (f"older than the checkpoint of {seen.size} entries this client saw on {seen_at} "
             f"(the export ends at {checkpoint.size})")
    if not s.settings.get("client_id"):
        return True, f"{older}; not compared with it (no client to ask the broker for a proof)"
    try:
        answer = s.broker.get("/v1/audit/proofs/consistency",
                              **{"from": checkpoint.size, "to": seen.size})
        proof = [hash_b64(h, "consistency proof hash") for h in answer.get("hashes", [])]
    except CheckFailed:
        raise
    except SluisError as error:
        return True, (f"{older}; not compared with it (the broker's consistency proof could "
                      f"not be had: {visible(error)})")
    if verify_consistency(checkpoint.size, seen.size, checkpoint.root, seen.root, proof):
        return True, (f"{older}; the broker's consistency proof from it to that checkpoint "
                      "verifies")
    reason = "is not an extension of the tree in the export"
    memory.record_conflict(checkpoint, reason)
    alarm(memory.url, seen, seen_at, checkpoint, reason, memory, shown_by=f"the export {path}")
    return False, reason


def _verify_file(s: Session, path: str, downloaded: bool = False) -> int:
    keys, memory = _offline_keys(s)
    try:
        with open(path, encoding="utf-8") as handle:
            report = verify_export(handle, keys)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    consistent, history = True, None
    if report.ok and memory is not None:
        consistent, history = _compare_offline(s, memory, report, path, downloaded)
    ok = report.ok and consistent
    _print_export_report(s, path, report, ok, history)
    return EXIT_OK if ok else EXIT_FAILED


def _print_export_report(
    s: Session, path: str, report: ExportReport, ok: bool, history: str | None
) -> None:
    checkpoint = report.checkpoint
    if s.out.as_json:
        s.out.json({"ok": ok, "file": path, "entries": report.entries,
                    "checkpoint_size": checkpoint.size if checkpoint else None,
                    "root_hash": b64encode(checkpoint.root) if checkpoint else None,
                    "first_bad_seq": report.first_bad_seq, "history": history,
                    "problems": [{"seq": q, "message": m} for q, m in report.problems]})
        return
    s.out.text(f"{path}: {report.entries} entries")
    if checkpoint:
        s.out.text(f"checkpoint: {visible(checkpoint.origin)}, {checkpoint.size} entries, "
                   f"root {b64encode(checkpoint.root)}, signature ok")
    if history:
        s.out.text(f"history: {history}")
    for seq, message in report.problems:
        s.out.text(f"problem{' at seq ' + str(seq) if seq is not None else ''}: {message}")
    if report.first_bad_seq is not None:
        s.out.text(f"first bad entry: seq {report.first_bad_seq}")
    s.out.text("verified: every leaf hash, the root and the signature match" if ok
               else "VERIFICATION FAILED")


def cmd_audit_export(s: Session) -> int:
    target = Path(s.args.path).expanduser()
    response = s.broker.download("/v1/audit/export", "application/jsonl")
    try:
        with target.open("wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 16)
    except (OSError, http.client.HTTPException) as exc:
        raise SluisError(f"the export to {target} failed: {exc}") from None
    finally:
        response.close()
    if not s.out.as_json:
        s.out.text(f"exported the audit log to {target}")
    if s.args.no_verify:
        return EXIT_OK
    if not s.args.key and not s.settings.get("checkpoint_key"):
        LogWatch(s).keys()  # fetch (and remember) the broker's key for the offline check
    return _verify_file(s, str(target), downloaded=True)


def cmd_audit_receipt(s: Session) -> int:
    seq = s.args.seq
    data, entry_bytes = _fetch_entry(s, seq)
    watch = LogWatch(s)
    keys = watch.keys()
    text = s.broker.call("GET", f"/v1/audit/entries/{seq}/receipt",
                         headers={"Accept": "text/plain"}).text()
    if entry_bytes is None:
        return _redacted_receipt(s, seq, text)
    checkpoint = check_receipt(text, entry_bytes, keys, seq)
    consistent, what = watch.compare(checkpoint, None)
    if s.args.save:
        target = Path(s.args.save).expanduser()
        try:
            target.write_text(text, encoding="utf-8")
            target.with_name(target.name + ".entry").write_bytes(entry_bytes)
        except OSError as exc:
            raise SluisError(f"cannot save the receipt to {target}: {exc}") from None
    if s.out.as_json:
        s.out.json({"seq": seq, "receipt": text, "inclusion_ok": True,
                    "checkpoint_size": checkpoint.size, "consistent": consistent,
                    "history": what, "entry": data.get("entry")})
    else:
        s.out.text(f"entry {seq} is in the log: inclusion proof ok against the signed "
                   f"checkpoint of {checkpoint.size} entries")
        s.out.text(f"history: {what}")
        if s.args.save:
            s.out.text(f"saved the receipt to {s.args.save} and the entry to "
                       f"{s.args.save}.entry; check them later with "
                       f"`sluis audit check-receipt {s.args.save}`")
    return EXIT_OK if consistent else EXIT_FAILED


def _os_reason(error: Exception) -> str:
    """An OSError's reason without its errno and path (the message names the path)."""
    return str(getattr(error, "strerror", None) or error)


def _redacted_receipt(s: Session, seq: int, text: str) -> int:
    """A receipt of an entry shown to you redacted: kept if asked, but its inclusion proof
    cannot be checked without the entry's bytes, so the check is not passed (exit 1)."""
    if s.args.save:
        target = Path(s.args.save).expanduser()
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise SluisError(f"cannot save the receipt to {target}: {exc}") from None
    if s.out.as_json:
        s.out.json({"seq": seq, "receipt": text, "inclusion_ok": None, "redacted": True})
    else:
        s.out.text(f"entry {seq}: {REDACTED_NOTE}")
        s.out.text("its receipt cannot be checked here without the entry's bytes, so it was "
                   "not checked; the privacy officer can check it (sluis audit receipt "
                   f"{seq}, as the officer)")
        if s.args.save:
            s.out.text(f"saved the receipt only to {s.args.save}: without the entry, "
                       "`sluis audit check-receipt` cannot check it either")
    return EXIT_FAILED


def check_receipt(
    text: str, entry_bytes: bytes, keys: Sequence[NoteKey], seq: int | None = None
) -> Checkpoint:
    """Verify a receipt for these entry bytes; return its checkpoint, or CheckFailed."""
    receipt = parse_receipt(text)
    if seq is not None and receipt.index != seq:
        raise CheckFailed(f"the receipt is for entry {receipt.index}, not {seq}")
    checkpoint = open_checkpoint(receipt.checkpoint_note, keys)
    if not verify_inclusion(receipt.index, checkpoint.size, leaf_hash(entry_bytes),
                            receipt.hashes, checkpoint.root):
        raise CheckFailed(f"the inclusion proof of entry {receipt.index} does not verify "
                          "against the receipt's checkpoint")
    return checkpoint


def cmd_audit_check_receipt(s: Session) -> int:
    path = Path(s.args.path).expanduser()
    entry_path = Path(s.args.entry).expanduser() if s.args.entry else path.with_name(
        path.name + ".entry")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot read the receipt {path}: {_os_reason(exc)}") from None
    if not s.args.entry and not entry_path.exists():
        raise CheckFailed(f"no entry beside the receipt ({entry_path}): a receipt is checked "
                          "against its entry's bytes, which `sluis audit receipt SEQ --save` "
                          "keeps only for an entry shown to you whole; an entry shown to you "
                          "redacted is checked by the privacy officer, who sees it whole")
    try:
        entry_bytes = entry_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the entry {entry_path}: {_os_reason(exc)}") from None
    keys, _ = _offline_keys(s)
    checkpoint = check_receipt(text, entry_bytes, keys)
    index = parse_receipt(text).index
    if s.out.as_json:
        s.out.json({"ok": True, "seq": index, "checkpoint_size": checkpoint.size,
                    "origin": checkpoint.origin})
    else:
        s.out.text(f"receipt ok: entry {index} is in {visible(checkpoint.origin)} as signed at "
                   f"{checkpoint.size} entries")
    return EXIT_OK


def cmd_audit_report(s: Session) -> int:
    a = s.args
    if (a.house_letter or a.addition) and not a.address:
        raise UsageError("--house-letter and --addition go with --address")
    subject = _subject_from_flags(a)
    if subject:
        body: dict[str, Any] = {"subject": subject}
    elif a.address:
        body = {"address": _disclosure_query(a)["address"]}
    else:
        raise UsageError("name the subject: --bsn, --kvk, --plate, --bag-id or --address")
    data = _report_pages(s, body)
    if s.out.as_json:
        s.out.json(data)
        return EXIT_OK
    rows = []
    for item in data["items"]:
        released = item.get("items") or [{}]
        for part in released:
            rows.append([item.get("time"), item.get("action"), item.get("recipient"),
                         item.get("purpose"), part.get("legal_basis") or item.get("legal_basis"),
                         part.get("rule"), sorted((part.get("fields") or {}).keys())])
    withheld = int(data.get("withheld") or 0)
    # With entries withheld, "nothing was disclosed" would be untrue: only nothing shown.
    empty = ("no entry may be shown yet" if withheld
             else "nothing was disclosed about this subject")
    s.out.table(["time", "action", "recipient", "purpose", "legal basis", "rule", "fields"],
                rows, empty)
    if withheld:
        s.out.text(f"withheld: {withheld} {'entry' if withheld == 1 else 'entries'} still "
                   "confidential, left out (for you, not for the data subject)")
    if data["next_cursor"]:
        s.out.text(f"more: --cursor {visible(data['next_cursor'])} (or --all)")
    return EXIT_OK


def _report_pages(s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """One page of a subject report, or with --all every page: the acts together, and
    `withheld` summed over the pages (each page counts its own)."""
    query = {"limit": s.args.limit, "cursor": s.args.cursor}
    items: list[Any] = []
    withheld = 0
    while True:
        page = s.broker.call("POST", "/v1/audit/subject-report", query=query,
                             payload=body).json()
        items.extend(page.get("items") or [])
        withheld += int(page.get("withheld") or 0)
        cursor = page.get("next_cursor")
        if not (s.args.all and cursor):
            return {"subject_type": page.get("subject_type"), "items": items,
                    "withheld": withheld, "next_cursor": cursor}
        query["cursor"] = cursor


def cmd_audit_remembered(s: Session) -> int:
    memory = CheckpointMemory(s.settings.url)
    state = memory.load()
    if s.args.forget:
        if state is not None:
            memory.path.unlink()
        s.out.text(f"forgot the remembered checkpoint of {memory.url}")
        return EXIT_OK
    if s.out.as_json:
        s.out.json(state or {})
    elif not state:
        s.out.text(f"no checkpoint remembered for {memory.url}")
    else:
        s.out.text(f"{memory.path}")
        s.out.text(render_pairs([(k, v) for k, v in sorted(state.items()) if k != "conflicts"],
                                "  "))
        for conflict in state.get("conflicts") or []:
            s.out.text(f"  CONFLICT {conflict.get('seen_at')}: size {conflict.get('size')}: "
                       f"{conflict.get('reason')}")
    return EXIT_OK


# --- Command line ---------------------------------------------------------------------

DESCRIPTION = """\
sluis: the Sluis broker from a terminal.

Share signals, ask disclosures for a purpose, check hits, and let the privacy
officer verify the audit log, answer a data subject and decide re-identifications.
"""

EPILOG = """\
settings (flag, else environment, else config file):
  --url             SLUIS_URL             url
  --client-id       SLUIS_CLIENT_ID       client_id
  (none)            SLUIS_CLIENT_SECRET   client_secret
  --private-key-file SLUIS_PRIVATE_KEY_FILE private_key_file   (needs `cryptography`)
  --acting-user     SLUIS_ACTING_USER     acting_user   (system clients: your employee id)
  --ca-file         SLUIS_CA_FILE         ca_file
  --checkpoint-key  SLUIS_CHECKPOINT_KEY  checkpoint_key   (pin the log's verifier key)
  the config file is $XDG_CONFIG_HOME/sluis/config.ini (~/.config/sluis/config.ini),
  one [section] per profile; [default] unless --profile or SLUIS_PROFILE names another.

exit codes: 0 ok, 1 refused / not found / check failed / unreachable, 2 usage.

examples:
  sluis login
  sluis purposes
  sluis signals submit --category energie-afwijking --legal-basis elektriciteitswet-levering \\
      --bag-id 0599010000000012 --postcode 3072AB --house-number 12 \\
      --attr kwh_per_month=2400 --attr meter_seal_broken=true
  sluis disclose --purpose integrale-controle --case ZAAK-2026-0042 --address 3072AB 12
  sluis audit verify
"""


def _common_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    """Connection and output options, accepted before and after the command."""
    default = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group("connection and output")
    group.add_argument("--profile", default=default, help="config file section to use")
    group.add_argument("--config", default=default, metavar="FILE",
                       help="config file (default: $XDG_CONFIG_HOME/sluis/config.ini)")
    group.add_argument("--url", default=default, help="the broker, e.g. https://sluis.example")
    group.add_argument("--client-id", default=default, help="your client id")
    group.add_argument("--private-key-file", default=default, metavar="PEM",
                       help="EC P-256 key for private_key_jwt (instead of a client secret)")
    group.add_argument("--acting-user", default=default, metavar="ID",
                       help="your employee id, sent as X-Acting-User (system clients)")
    group.add_argument("--ca-file", default=default, metavar="PEM",
                       help="CA certificates to trust for the broker's TLS certificate")
    group.add_argument("--checkpoint-key", default=default, metavar="KEY",
                       help="pin the audit log's checkpoint verifier key")
    group.add_argument("--timeout", default=argparse.SUPPRESS if nested else 30.0, type=float,
                       metavar="SECONDS", help="network timeout (default 30)")
    group.add_argument("--json", action="store_true",
                       default=argparse.SUPPRESS if nested else False,
                       help="print the broker's JSON answer instead of tables")


class _Commands:
    """Builds the subcommand tree; every leaf takes the common options too."""

    def __init__(self, root: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self.root = root

    def add(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
        func: Any, summary: str, description: str = "", examples: str = "",
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name, help=summary, description=description or summary,
            epilog=("examples:\n" + examples) if examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common_options(parser, nested=True)
        parser.set_defaults(func=func)
        return parser

    def group(self, name: str, summary: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = self.root.add_parser(name, help=summary, description=summary)
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def _subject_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--bsn", help="a person's BSN")
    group.add_argument("--kvk", help="a company's KvK number")
    group.add_argument("--plate", help="a vehicle's licence plate")
    group.add_argument("--bag-id", help="an address's BAG id")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _purpose_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--purpose", required=True, help="why you ask (see `sluis purposes`)")
    parser.add_argument("--case", "--case-reference", dest="case", metavar="REF",
                        help="case reference (required by most purposes)")


def _paging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_limit, default=100, help="items per page (1-1000)")
    parser.add_argument("--cursor", help="continue from a previous page")
    parser.add_argument("--all", action="store_true", help="fetch every page")
    parser.add_argument("--since", metavar="TIME", help="RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
    parser.add_argument("--until", metavar="TIME", help="RFC 3339 time (exclusive)")


def _add_session_commands(c: _Commands) -> None:
    c.add(c.root, "login", cmd_login, "get a token and cache it until it expires",
          "Check the configured broker, client id and secret (or key): ask the broker for "
          "an access token and cache it, readable by you only, until it expires. Other "
          "commands log in by themselves when needed.", "  sluis login\n  sluis --profile "
          "officer login")
    c.add(c.root, "logout", cmd_logout, "forget the cached token")
    c.add(c.root, "config", cmd_config, "show the effective settings and where they come from")
    keys = c.group("key", "keys for private_key_jwt (needs `cryptography`)")
    new = c.add(keys, "new", cmd_key_new, "create an EC P-256 key; print its public JWK",
                examples="  sluis key new ~/.config/sluis/key.pem > key.jwk\n"
                         "  (the administrator runs: broker clients create ... --jwk key.jwk)")
    new.add_argument("path", help="where to write the private key (owner-only)")


def _add_reference_commands(c: _Commands) -> None:
    c.add(c.root, "organisations", cmd_organisations, "the partner organisations")
    c.add(c.root, "purposes", cmd_purposes,
          "the purposes your organisation may ask for, and the others apart")
    c.add(c.root, "legal-bases", cmd_legal_bases, "the legal bases signals are held under")
    cat = c.add(c.root, "categories", cmd_categories, "signal categories and their attributes",
                examples="  sluis categories\n  sluis categories energie-afwijking")
    cat.add_argument("category", nargs="?", help="show one category's attributes")
    c.add(c.root, "policy", cmd_policy, "the live policy pack and the rules that concern you")
    explain = c.add(c.root, "explain", cmd_explain,
                    "dry-run the policy: what would a recipient get?",
                    examples="  sluis explain --recipient gemeente --purpose integrale-controle "
                             "--category energie-afwijking --source netbeheerder")
    for name in ("recipient", "purpose", "category", "source"):
        explain.add_argument(f"--{name}", required=True)
    explain.add_argument("--legal-basis",
                         help="one legal basis (default: each of the category's, one by one)")


def _add_signal_commands(c: _Commands) -> None:
    signals = c.group("signals", "submit, list, show and retract your organisation's signals")
    submit = c.add(signals, "submit", cmd_signals_submit, "submit one signal",
                   "Submit one signal from flags, or from a JSON file (or - for stdin). "
                   "Attributes are typed after the category (`sluis categories CATEGORY`).",
                   "  sluis signals submit --category energie-afwijking --legal-basis "
                   "elektriciteitswet-levering \\\n      --bag-id 0599010000000012 --postcode "
                   "3072AB --house-number 12 \\\n      --attr kwh_per_month=2400 --attr "
                   "meter_seal_broken=true\n  sluis signals submit --file signal.json")
    submit.add_argument("--file", metavar="FILE", help="a JSON signal (- for stdin)")
    submit.add_argument("--category")
    submit.add_argument("--legal-basis")
    submit.add_argument("--subject-type", choices=["person", "company", "address", "vehicle"],
                        help="implied by the identifier when omitted")
    _subject_flags(submit, required=False)
    submit.add_argument("--name", help="the subject's name")
    submit.add_argument("--birthdate", metavar="YYYY-MM-DD")
    submit.add_argument("--postcode")
    submit.add_argument("--house-number", type=int)
    submit.add_argument("--house-letter")
    submit.add_argument("--addition")
    submit.add_argument("--street")
    submit.add_argument("--city")
    submit.add_argument("--observed-at", metavar="TIME", help="RFC 3339 (default: now)")
    submit.add_argument("--description")
    submit.add_argument("--attr", action="append", metavar="NAME=VALUE", help="an attribute")
    submit.add_argument("--idempotency-key", help="reuse to retry safely (default: random)")
    imp = c.add(signals, "import", cmd_signals_import, "submit many signals from a file",
                "Submit signals from JSON Lines (one signal a line), a JSON list, or CSV "
                "(dotted column names: category, legal_basis, subject.type, subject.bsn, "
                "subject.kvk, subject.plate, subject.bag_id, location.postcode, "
                "location.house_number, observed_at, description, attributes.NAME), in "
                "batches of up to 1000. Each batch is stored all or nothing, and carries an "
                "Idempotency-Key derived from its content: running the same file again "
                "stores nothing twice, and the summary says how many signals were new and "
                "how many the broker already had (its answer to a batch sent before says "
                "Idempotent-Replayed).",
                "  sluis signals import signals.jsonl\n  sluis signals import "
                "clients/examples/meter-readings.csv --progress\n"
                "  generate-signals | sluis signals import - --format jsonl")
    imp.add_argument("path", help="the file (- for stdin)")
    imp.add_argument("--format", choices=["jsonl", "json", "csv"],
                     help="default: from the file name (.csv, .json), else jsonl")
    imp.add_argument("--batch-size", type=int, default=MAX_BATCH, help="signals per request")
    imp.add_argument("--progress", action="store_true", default=None,
                     help="show a progress bar on stderr (default: when it is a terminal)")
    imp.add_argument("--no-progress", dest="progress", action="store_false")
    lst = c.add(signals, "list", cmd_signals_list, "your organisation's signals, newest first",
                examples="  sluis signals list --category energie-afwijking --limit 20")
    lst.add_argument("--category")
    _paging_flags(lst)
    show = c.add(signals, "show", cmd_signals_show, "one signal in full")
    show.add_argument("id")
    retract = c.add(signals, "retract", cmd_signals_retract,
                    "retract a signal: its content becomes unreadable for good")
    retract.add_argument("id")
    retract.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    hold = c.add(signals, "hold", cmd_signals_hold,
                 "privacy officer: keep a signal from erasure for a case, show or lift it",
                 "Place a legal hold on one of your organisation's signals (--case), show "
                 "the hold (no flag), or lift it (--lift). A held signal cannot be retracted "
                 "and the retention run passes it by.",
                 "  sluis signals hold sig_... --case RB-2026-17\n"
                 "  sluis signals hold sig_...\n  sluis signals hold sig_... --lift")
    hold.add_argument("id")
    which = hold.add_mutually_exclusive_group()
    which.add_argument("--case", help="the case number the hold is for (places the hold)")
    which.add_argument("--lift", action="store_true", help="lift the hold")
    holds = c.add(signals, "holds", cmd_signals_holds,
                  "privacy officer: your organisation's legal holds, newest first",
                  examples="  sluis signals holds\n  sluis signals holds --case RB-2026-17")
    holds.add_argument("--case", help="only the holds for this case number")
    holds.add_argument("--limit", type=_limit, default=100, help="items per page (1-1000)")
    holds.add_argument("--cursor", help="continue from a previous page")
    holds.add_argument("--all", action="store_true", help="fetch every page")


def _add_request_commands(c: _Commands) -> None:
    disclose = c.add(c.root, "disclose", cmd_disclose, "ask what the policy releases to you",
                     "Ask a disclosure for a purpose: about one subject, an address, an area "
                     "or given signals. You get exactly the fields a rule grants you, and the "
                     "request is recorded in the audit log.",
                     "  sluis disclose --purpose integrale-controle --case ZAAK-2026-0042 "
                     "--bsn 111222333\n  sluis disclose --purpose integrale-controle --case "
                     "ZAAK-1 --address 3072AB 12\n  sluis disclose --purpose ondermijningsbeeld "
                     "--area 3072")
    _purpose_flags(disclose)
    what = disclose.add_mutually_exclusive_group(required=True)
    what.add_argument("--bsn")
    what.add_argument("--kvk")
    what.add_argument("--plate")
    what.add_argument("--bag-id")
    what.add_argument("--address", nargs=2, metavar=("POSTCODE", "NUMBER"))
    what.add_argument("--area", metavar="POSTCODE", help="1234AB, or 1234 for a whole area")
    what.add_argument("--signal", nargs="+", metavar="ID", help="signals by id")
    disclose.add_argument("--house-letter", help="with --address")
    disclose.add_argument("--addition", help="with --address")
    disclose.add_argument("--category", action="append", help="only these categories")
    disclose.add_argument("--page", metavar="TOKEN",
                          help="the next page of the same request, as the last answer named it")
    hit = c.add(c.root, "hit", cmd_hit, "does anyone hold a signal about this subject?",
                examples="  sluis hit --purpose bibob-toets --case BIBOB-7 --kvk 90001237")
    _purpose_flags(hit)
    _subject_flags(hit, required=True)
    area = c.add(c.root, "area", cmd_area, "counts of signals per category in an area",
                 examples="  sluis area 3072 --purpose ondermijningsbeeld")
    area.add_argument("postcode", help="1234 or 1234AB")
    _purpose_flags(area)
    reid = c.group("reid", "re-identification: request, decide, fetch, list")
    request = c.add(reid, "request", cmd_reid_request,
                    "ask to see the value behind a pseudonym you received",
                    examples="  sluis reid request --disclosure dsc_x --ref sg_y --field "
                             "subject.bsn --justification 'Zaak ZAAK-1: sluiting'")
    request.add_argument("--disclosure", required=True, help="the disclosure id")
    request.add_argument("--ref", required=True, help="the signal's ref in that disclosure")
    request.add_argument("--field", required=True, help="e.g. subject.bsn")
    request.add_argument("--justification", required=True)
    decide = c.add(reid, "decide", cmd_reid_decide,
                   "privacy officer: approve or refuse a re-identification",
                   examples="  sluis reid decide rid_x --approve --reason 'Proportioneel'")
    decide.add_argument("id")
    choice = decide.add_mutually_exclusive_group(required=True)
    choice.add_argument("--approve", action="store_true", default=None)
    choice.add_argument("--refuse", dest="approve", action="store_false")
    decide.add_argument("--reason", required=True)
    fetch = c.add(reid, "fetch", cmd_reid_fetch, "the status, and once approved the value")
    fetch.add_argument("id")
    listed = c.add(reid, "list", cmd_reid_list,
                   "privacy officer: re-identification requests, newest first",
                   examples="  sluis reid list --status pending\n  sluis reid list --all --json")
    listed.add_argument("--status", choices=["pending", "approved", "refused", "revealed"],
                        help="only requests with this status (pending: awaiting a decision)")
    listed.add_argument("--limit", type=_limit, default=100, help="items per page (1-1000)")
    listed.add_argument("--cursor", help="continue from a previous page")
    listed.add_argument("--all", action="store_true", help="fetch every page")


def _add_audit_commands(c: _Commands) -> None:
    audit = c.group("audit", "the audit log: search, verify, receipts, subject reports")
    entries = c.add(audit, "entries", cmd_audit_entries, "search audit entries, newest first",
                    examples="  sluis audit entries --action disclosure --org gemeente --all")
    entries.add_argument("--action")
    entries.add_argument("--org")
    entries.add_argument("--purpose")
    _paging_flags(entries)
    entry = c.add(audit, "entry", cmd_audit_entry, "one entry; its leaf hash is recomputed")
    entry.add_argument("seq", type=int)
    cp = c.add(audit, "checkpoint", cmd_audit_checkpoint,
               "the latest signed checkpoint, checked against the one you saw last")
    cp.add_argument("--note", action="store_true", help="print the signed note only")
    verify = c.add(audit, "verify", cmd_audit_verify, "verify the log, or an export offline",
                   "Online: check the latest checkpoint's signature against the broker's "
                   "checkpoint key, and that it extends the checkpoint this client saw last "
                   "(a consistency proof, checked here); privacy officers also get the "
                   "broker's full self-check. With --file: verify an export offline (every "
                   "leaf hash, canonical bytes, the root and the checkpoint signature).",
                   "  sluis audit verify\n  sluis audit verify --file audit.jsonl --key "
                   "'sluis.example/audit+1a2b3c4d+AX...'")
    verify.add_argument("--file", help="an export (from `sluis audit export`) to verify offline")
    verify.add_argument("--key", help="the checkpoint verifier key (default: remembered)")
    verify.add_argument("--no-server-check", action="store_true",
                        help="skip the broker's own full verification")
    export = c.add(audit, "export", cmd_audit_export, "download the whole log and verify it",
                   examples="  sluis audit export audit-2026-11.jsonl")
    export.add_argument("path")
    export.add_argument("--key", help="the checkpoint verifier key (default: the broker's)")
    export.add_argument("--no-verify", action="store_true")
    receipt = c.add(audit, "receipt", cmd_audit_receipt,
                    "an entry's receipt, with its inclusion proof checked here",
                    examples="  sluis audit receipt 1042 --save receipt-1042.txt")
    receipt.add_argument("seq", type=int)
    receipt.add_argument("--save", metavar="FILE", help="keep the receipt (and FILE.entry)")
    check = c.add(audit, "check-receipt", cmd_audit_check_receipt, "check a saved receipt offline")
    check.add_argument("path")
    check.add_argument("--entry", help="the entry's bytes (default: PATH.entry)")
    check.add_argument("--key", help="the checkpoint verifier key (default: remembered)")
    report = c.add(audit, "report", cmd_audit_report,
                   "a data subject's access report: who received what about them",
                   examples="  sluis audit report --bsn 111222333\n"
                            "  sluis audit report --address 3072AB 14 --house-letter B")
    who = report.add_mutually_exclusive_group(required=True)
    for flag, text in (("--bsn", "a person's BSN"), ("--kvk", "a company's KvK number"),
                       ("--plate", "a vehicle's licence plate"),
                       ("--bag-id", "an address's BAG id")):
        who.add_argument(flag, help=text)
    who.add_argument("--address", nargs=2, metavar=("POSTCODE", "NUMBER"),
                     help="an address without BAG id")
    report.add_argument("--house-letter", help="with --address")
    report.add_argument("--addition", help="with --address")
    report.add_argument("--limit", type=_limit, default=100, help="entries per page (1-1000)")
    report.add_argument("--cursor", help="continue from a previous page")
    report.add_argument("--all", action="store_true", help="fetch every page")
    remembered = c.add(audit, "remembered", cmd_audit_remembered,
                       "the checkpoint this client remembers for the broker")
    remembered.add_argument("--forget", action="store_true",
                            help="forget it (only after the broker was knowingly reset)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluis", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sluis {__version__}")
    _common_options(parser, nested=False)
    root = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = _Commands(root)
    _add_session_commands(commands)
    _add_reference_commands(commands)
    _add_signal_commands(commands)
    _add_request_commands(commands)
    _add_audit_commands(commands)
    return parser


def _report(error: SluisError) -> int:
    say(f"sluis: {visible(error)}", err=True)
    if isinstance(error, Problem):
        for problem in error.errors[:20]:
            loc = ".".join(visible(p) for p in problem.loc if p != "body") or "(request)"
            say(f"sluis:   {loc}: {visible(problem.msg)}", err=True)
        if error.status == 400 and "X-Acting-User" in (error.detail or ""):
            say("sluis:   set your employee id: --acting-user, SLUIS_ACTING_USER or "
                "acting_user in the config file", err=True)
    return error.code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; never a traceback, always an exit code (0, 1 or 2)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(Session(args)))
    except SluisError as error:
        return _report(error)
    except KeyboardInterrupt:
        say("sluis: interrupted", err=True)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        say(f"sluis: the broker's answer is not what this client expects "
            f"({visible(repr(error))}); is the client older than the broker?", err=True)
        return EXIT_FAILED
    except OSError as error:
        say(f"sluis: {visible(error)}", err=True)
        return EXIT_FAILED
    except Exception as error:  # the promise: never a traceback
        say(f"sluis: unexpected error: {visible(repr(error))}", err=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
