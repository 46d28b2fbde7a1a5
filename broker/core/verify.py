"""Streaming verification of an audit log or of its export, in O(log n) memory.

For every entry, in order: `seq` runs from 0 without gaps, duplicates or reordering; the
stored leaf hash is SHA-256(0x00 || bytes); the bytes are RFC 8785 canonical, carry every
entry field, and name this log's origin and their own `seq`. The tree grows in a
`CompactRange`; whenever its size reaches a checkpoint's, the root must be the one signed.
Every checkpoint must be signed by the log's key for this origin; two roots for one size
and a checkpoint beyond the last entry (a truncated tail) are problems too. Because every
checkpoint root is compared with the one tree recomputed from the entries, checkpoints
that all match are consistent with each other and with the log.

Problems carry stable codes and name the entry (`seq`) where one is known;
`first_bad_seq` is the first such entry in log order (for a truncated tail, the first
missing one). A checkpoint whose root differs names the range of entries since the last
checkpoint that matched: the bytes alone cannot tell which entry in it was rewritten
(with its leaf hash fixed up). Codes: seq_gap, seq_out_of_order, leaf_hash_mismatch,
entry_not_canonical, entry_malformed, entry_seq_mismatch, entry_origin_mismatch,
checkpoint_invalid, checkpoint_origin, checkpoint_fork, checkpoint_root_mismatch,
checkpoint_beyond_log, checkpoint_late, export_malformed, too_many_problems.

An export names its checkpoint only after its entries, so `verify_export` also keeps
the leaf hashes (32 bytes an entry) to find the root at the checkpoint's size.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from broker.core import merkle
from broker.core.checkpoint import Checkpoint, CheckpointInvalid, Verifier, open_checkpoint
from broker.core.entry import ENTRY_FIELDS, VERSION, Entry, EntryInvalid, parse_canonical

MAX_PROBLEMS = 1000
_sha256 = hashlib.sha256


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: the entry it concerns (if any), a stable code, and a sentence."""

    seq: int | None
    code: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "code": self.code, "message": self.message}


@dataclass(slots=True)
class VerifyReport:
    """The verdict: `ok` only without problems; `size` and `root` of the recomputed tree."""

    ok: bool
    size: int
    root: bytes
    problems: list[Problem] = field(default_factory=list)
    first_bad_seq: int | None = None
    checkpoints_verified: int = 0


class LogVerifier:
    """The incremental verifier behind `verify_log` and `verify_export`.

    Feed checkpoints with `add_checkpoint` and entries, in log order, with `add_entry`;
    `finish` gives the report. A checkpoint added after the tree has passed its size can
    only be checked when `keep_leaves` is set (32 bytes per entry), as an export needs.
    """

    def __init__(
        self,
        verifier: Verifier | Iterable[Verifier],
        origin: str | None,
        *,
        check_schema: bool = False,
        keep_leaves: bool = False,
        max_problems: int = MAX_PROBLEMS,
    ) -> None:
        self.verifiers = [verifier] if isinstance(verifier, Verifier) else list(verifier)
        self.origin = origin
        self.check_schema = check_schema
        self.max_problems = max_problems
        self.tree = merkle.CompactRange()
        self.problems: list[Problem] = []
        self.first_bad_seq: int | None = None
        self.expected_seq = 0
        self.leaves: bytearray | None = bytearray() if keep_leaves else None
        self.pending: dict[int, bytes] = {}  # checkpoint size -> signed root, not yet reached
        self.signed: dict[int, bytes] = {}  # every accepted checkpoint, to spot forks
        self.last_good_size = 0
        self.verified = 0
        self._dropped = 0
        self._origins: dict[object, int] = {}  # with no origin yet: first seq naming each

    # --- findings ---

    def problem(self, seq: int | None, code: str, message: str) -> None:
        if seq is not None and (self.first_bad_seq is None or seq < self.first_bad_seq):
            self.first_bad_seq = seq
        if len(self.problems) < self.max_problems:
            self.problems.append(Problem(seq, code, message))
        else:
            self._dropped += 1

    # --- checkpoints ---

    def add_checkpoint(self, checkpoint: Checkpoint | str) -> None:
        """A signed note is verified here; a `Checkpoint` is taken as already verified."""
        if isinstance(checkpoint, str):
            try:
                checkpoint = open_checkpoint(checkpoint, self.verifiers)
            except CheckpointInvalid as exc:
                self.problem(None, "checkpoint_invalid", f"checkpoint rejected: {exc}")
                return
        if checkpoint.origin != self.origin:
            self.problem(None, "checkpoint_origin", "checkpoint of another log's origin")
            return
        size, root = checkpoint.size, checkpoint.root
        known = self.signed.get(size)
        if known is not None:
            if known != root:
                self.problem(None, "checkpoint_fork", f"two different roots for size {size}")
            return
        self.signed[size] = root
        if size > self.tree.size:
            self.pending[size] = root
        elif size == self.tree.size:
            self._compare(size, root, self.tree.root())
        elif self.leaves is not None:
            self._compare(size, root, _prefix_root(self.leaves, size))
        else:
            self.problem(None, "checkpoint_late", f"checkpoint of size {size} came too late")

    def _compare(self, size: int, signed: bytes, recomputed: bytes) -> None:
        self.verified += 1
        if signed == recomputed:
            self.last_good_size = max(self.last_good_size, size)
            return
        start = max((s for s in self.signed if s < size and s <= self.last_good_size), default=0)
        self.problem(
            None,
            "checkpoint_root_mismatch",
            f"the signed root of size {size} differs from the log's: "
            f"an entry in seq {start}..{size - 1} was changed, removed or inserted",
        )

    # --- entries ---

    def add_entry(self, seq: int, data: bytes, stored_leaf: bytes) -> None:
        """Check one entry and grow the tree with the hash of its bytes."""
        if seq == self.expected_seq:
            self.expected_seq = seq + 1
        else:
            self._seq_problem(seq)
        leaf = _sha256(b"\x00" + data).digest()
        if leaf != stored_leaf:
            self.problem(seq, "leaf_hash_mismatch", "stored leaf hash is not the entry's")
        try:
            value: Any = parse_canonical(data)
        except EntryInvalid:
            value = None
        # The whole happy path is one test (this runs a million times a pass); anything
        # else is diagnosed off it.
        if not (
            type(value) is dict
            and value.keys() == ENTRY_FIELDS
            and value["seq"] == seq
            and value["origin"] == self.origin
            and value["v"] == VERSION
            and type(value["v"]) is int
            and type(value["seq"]) is int
            and not self.check_schema
        ):
            self._diagnose(seq, value)
        self.tree.add(leaf)
        if self.leaves is not None:
            self.leaves += leaf
        size = self.tree.size
        if size in self.pending:
            self._compare(size, self.pending.pop(size), self.tree.root())

    def _seq_problem(self, seq: int) -> None:
        expected = self.expected_seq
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            self.problem(expected, "seq_gap", f"entries {missing} are missing")
            self.expected_seq = seq + 1
        else:
            self.problem(seq, "seq_out_of_order", f"seq {seq} after {expected - 1}")

    def _diagnose(self, seq: int, value: Any) -> None:
        """Name what is wrong with an entry that failed the fast check (if anything)."""
        if value is None:
            self.problem(seq, "entry_not_canonical", "entry bytes are not canonical JSON")
            return
        if type(value) is not dict or value.keys() != ENTRY_FIELDS:
            self.problem(seq, "entry_malformed", "entry lacks or adds fields")
            return
        if type(value["v"]) is not int or value["v"] != VERSION:
            self.problem(seq, "entry_malformed", f"unknown entry version {value['v']!r}")
        if type(value["seq"]) is not int or value["seq"] != seq:
            self.problem(seq, "entry_seq_mismatch", f"entry says seq {value['seq']!r}")
        if self.origin is None:
            if len(self._origins) < 8:
                self._origins.setdefault(value["origin"], seq)
        elif value["origin"] != self.origin:
            self.problem(seq, "entry_origin_mismatch", "entry names another log's origin")
        if self.check_schema:
            try:
                Entry.model_validate(value)
            except ValueError:
                self.problem(seq, "entry_malformed", "entry does not match the entry schema")

    def resolve_origin(self, origin: str) -> None:
        """Fix the origin after the fact (an export names it only in its final checkpoint)."""
        self.origin = origin
        for seen, seq in self._origins.items():
            if seen != origin:
                self.problem(seq, "entry_origin_mismatch", "entries from here name another origin")
        self._origins.clear()

    # --- verdict ---

    def finish(self) -> VerifyReport:
        self._origins.clear()  # no origin was ever given or signed: nothing to hold them to
        for size in sorted(self.pending):
            self.problem(
                self.tree.size,
                "checkpoint_beyond_log",
                f"a checkpoint signs {size} entries, the log has {self.tree.size}: "
                "its tail was truncated or rolled back",
            )
        self.pending.clear()
        problems = list(self.problems)
        if self._dropped:
            problems.append(
                Problem(None, "too_many_problems", f"{self._dropped} more problems not listed")
            )
        return VerifyReport(
            ok=not problems,
            size=self.tree.size,
            root=self.tree.root(),
            problems=problems,
            first_bad_seq=self.first_bad_seq,
            checkpoints_verified=self.verified,
        )


def _prefix_root(leaves: bytearray, size: int) -> bytes:
    """The root of the first `size` leaves of a packed array of leaf hashes."""
    tree = merkle.CompactRange()
    view = memoryview(leaves)
    for offset in range(0, size * merkle.HASH_SIZE, merkle.HASH_SIZE):
        tree.add(bytes(view[offset : offset + merkle.HASH_SIZE]))
    return tree.root()


def verify_log(
    entries: Iterable[tuple[int, bytes, bytes]],
    checkpoints: Iterable[Checkpoint | str],
    verifier: Verifier | Iterable[Verifier],
    origin: str,
    *,
    check_schema: bool = False,
) -> VerifyReport:
    """Verify a whole log: `entries` as (seq, entry bytes, stored leaf hash) in seq order.

    `checkpoints` are signed notes (verified here) or `Checkpoint`s already verified.
    With `check_schema`, each entry is also validated against the `Entry` model (slow).
    """
    log = LogVerifier(verifier, origin, check_schema=check_schema)
    for checkpoint in checkpoints:
        log.add_checkpoint(checkpoint)
    for seq, data, stored_leaf in entries:
        log.add_entry(seq, data, stored_leaf)
    return log.finish()


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return binascii.a2b_base64(value, strict_mode=True)


def _export_objects(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except ValueError:
                yield number, None


def verify_export(
    lines: Iterable[str],
    verifier: Verifier | Iterable[Verifier],
    origin: str | None = None,
) -> VerifyReport:
    """Verify an export (docs/audit.md): lines of {seq, entry_b64, leaf_hash}, then the checkpoint.

    The final object is the latest checkpoint {origin, size, root_hash, note, ...}; its
    note is what counts, and its other fields must agree with it. The entries' origin is
    `origin` or else the verified checkpoint's. Hashes are standard base64. Since the
    checkpoint comes last, the leaf hashes are kept (32 bytes an entry) to recompute the
    root at its size if the export runs past it.
    """
    log = LogVerifier(verifier, origin, keep_leaves=True)
    notes: list[tuple[int, dict[str, Any]]] = []
    for number, obj in _export_objects(lines):
        if isinstance(obj, dict) and "note" in obj:
            notes.append((number, obj))
            continue
        try:
            seq, data, leaf = _export_entry(obj)
        except (ValueError, TypeError, KeyError, binascii.Error):
            log.problem(None, "export_malformed", f"line {number} is not an export entry")
            continue
        if notes:
            log.problem(seq, "export_malformed", f"entry after the checkpoint on line {number}")
        log.add_entry(seq, data, leaf)
    if not notes:
        log.problem(None, "export_malformed", "the export ends without a checkpoint")
    checkpoints = [c for c in (_export_checkpoint(log, n, o, verifier) for n, o in notes) if c]
    if origin is None and checkpoints:
        log.resolve_origin(checkpoints[-1].origin)
    for checkpoint in checkpoints:
        log.add_checkpoint(checkpoint)
    return log.finish()


def _export_entry(obj: Any) -> tuple[int, bytes, bytes]:
    seq = obj["seq"]
    if type(seq) is not int or set(obj) - {"seq", "entry_b64", "leaf_hash"}:
        raise ValueError("malformed entry line")
    return seq, _b64(obj["entry_b64"]), _b64(obj["leaf_hash"])


def _export_checkpoint(
    log: LogVerifier, number: int, obj: dict[str, Any], verifier: Verifier | Iterable[Verifier]
) -> Checkpoint | None:
    try:
        checkpoint = open_checkpoint(obj["note"], verifier)
    except (CheckpointInvalid, TypeError, AttributeError) as exc:
        log.problem(None, "checkpoint_invalid", f"checkpoint on line {number} rejected: {exc}")
        return None
    if not _fields_agree(obj, checkpoint):
        log.problem(
            None, "checkpoint_invalid", f"checkpoint on line {number} disagrees with its note"
        )
    return checkpoint


def _fields_agree(obj: dict[str, Any], checkpoint: Checkpoint) -> bool:
    try:
        root = _b64(obj.get("root_hash"))
    except (ValueError, binascii.Error):
        return False
    return (obj.get("origin"), obj.get("size"), root) == (
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root,
    )
