"""The witness's rules (C2SP tlog-witness): parse an add-checkpoint request and judge it.

A request body is an old size line (``old <decimal>``), at most 63 consistency proof lines
(one base64 hash each), an empty line, then the signed checkpoint note. The witness
answers, in the spec's order: 400 for a body that does not parse, 404 for an origin it does
not witness, 403 for a checkpoint no trusted key of that origin signed, 400 for an old size
above the checkpoint's, 409 (with the latest cosigned size, as ``text/x.tlog.size``) when
the old size is not the size it last cosigned, 409 for another root at the size it last
cosigned, and 422 for a consistency proof that does not verify. Only then does it cosign.

Everything here is pure: the state the judgement needs (`Latest`) is passed in, so the
caller can read it, judge and write the new state in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from broker.core import merkle
from broker.core.checkpoint import (
    EM_DASH,
    Checkpoint,
    CheckpointInvalid,
    Verifier,
    b64decode_strict,
    open_checkpoint,
    parse_checkpoint,
)

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63
MAX_SIZE = 2**63 - 1  # the witness stores sizes as SQLite integers
MAX_BODY_BYTES = 64 * 1024  # a checkpoint with a hundred signature lines fits many times

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class Refusal(Exception):
    """The witness will not cosign: an HTTP status, a stable reason code and a sentence.

    `latest_size` is set on the 409 that tells the client the size last cosigned.
    """

    def __init__(self, status: int, reason: str, detail: str,
                 latest_size: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.latest_size = latest_size

    def body(self) -> str:
        """The answer's body: the size line for a stale old size, else the sentence."""
        if self.latest_size is not None:
            return f"{self.latest_size}\n"
        return f"{self.detail}\n"

    def content_type(self) -> str:
        if self.latest_size is not None:
            return SIZE_CONTENT_TYPE
        return "text/plain; charset=utf-8"


def malformed(detail: str) -> Refusal:
    return Refusal(400, "malformed", detail)


@dataclass(frozen=True, slots=True)
class Submission:
    """A parsed add-checkpoint request; its checkpoint is not yet verified."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    origin: str
    body: str
    """The checkpoint's note text (what the log signed and the witness cosigns)."""
    request: bytes
    """The request body as received, kept as evidence if the witness refuses it."""


@dataclass(frozen=True, slots=True)
class Latest:
    """What the witness last cosigned for an origin (size 0 and the empty root if nothing)."""

    size: int = 0
    root: bytes = merkle.EMPTY_ROOT


def _size(text: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_SIZE:
        raise malformed("the old size is not a decimal without leading zeros")
    return int(text)


def _head(head: str) -> tuple[int, tuple[bytes, ...]]:
    """The old size and the consistency proof, from the lines before the empty one."""
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise malformed("the request does not start with an old size line")
    old_size = _size(lines[0].removeprefix("old "))
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise malformed(f"more than {MAX_PROOF_LINES} consistency proof lines")
    try:
        proof = tuple(b64decode_strict(line, "proof hash") for line in lines[1:])
    except CheckpointInvalid as exc:
        raise malformed(str(exc)) from None
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise malformed("a proof hash is not 32 bytes")
    return old_size, proof


def _checkpoint_text(note: str) -> tuple[str, Checkpoint]:
    """The note's text and the checkpoint it states, its signatures not yet checked."""
    split = note.rfind("\n\n")
    if split < 0:
        raise malformed("the checkpoint is not a signed note")
    text = note[: split + 1]
    try:
        checkpoint = parse_checkpoint(text)
    except CheckpointInvalid as exc:
        raise malformed(f"the checkpoint does not parse: {exc}") from None
    if checkpoint.size > MAX_SIZE:
        raise malformed("the checkpoint's size is beyond what this witness records")
    return text, checkpoint


def parse_submission(body: bytes) -> Submission:
    """Parse an add-checkpoint body; a `Refusal` (400) if it does not follow the format."""
    if len(body) > MAX_BODY_BYTES:
        raise malformed("the request is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("the request is not UTF-8") from None
    head, separator, note = text.partition("\n\n")
    if not separator:
        raise malformed("the request has no empty line before the checkpoint")
    old_size, proof = _head(head)
    checkpoint_text, checkpoint = _checkpoint_text(note)
    return Submission(old_size, proof, note, checkpoint.origin, checkpoint_text, body)


def open_submission(submission: Submission,
                    logs: Mapping[str, Iterable[Verifier]]) -> Checkpoint:
    """The submitted checkpoint, verified against the keys trusted for its origin.

    404 if the origin is not one the witness follows; 403 if no trusted key signed it (or a
    trusted key's signature fails). Signatures by unknown keys are ignored.
    """
    verifiers = list(logs.get(submission.origin, ()))
    if not verifiers:
        raise Refusal(404, "unknown_origin", f"this witness does not follow {submission.origin}")
    try:
        return open_checkpoint(submission.note, verifiers, submission.origin)
    except CheckpointInvalid as exc:
        raise Refusal(403, "unsigned", f"no trusted signature: {exc}") from None


def trusted_note(submission: Submission, verifiers: Iterable[Verifier]) -> str:
    """The submitted note with only the signature lines of trusted keys (already verified).

    Anyone may append lines by unknown keys; the witness keeps and serves only these.
    """
    known = {(v.name, v.key_id) for v in verifiers}
    kept = []
    for line in submission.note[len(submission.body) + 1 : -1].split("\n"):
        name, _, signature = line.removeprefix(f"{EM_DASH} ").partition(" ")
        if (name, b64decode_strict(signature, "signature")[:4]) in known:
            kept.append(f"{line}\n")
    return submission.body + "\n" + "".join(kept)


def judge(submission: Submission, checkpoint: Checkpoint, latest: Latest) -> None:
    """Raise the `Refusal` the spec names, or return if the checkpoint may be cosigned.

    `latest` must be read in the same transaction that then records the checkpoint.
    """
    old, size = submission.old_size, checkpoint.size
    if old > size:
        raise Refusal(400, "old_size_too_large",
                      f"old size {old} is above the checkpoint's size {size}")
    if old != latest.size:
        raise Refusal(409, "old_size_stale",
                      f"the latest cosigned size is {latest.size}, not {old}",
                      latest_size=latest.size)
    if old == size and checkpoint.root != latest.root:
        raise Refusal(409, "root_conflict",
                      f"another root was cosigned for size {size}: a fork of the log")
    if not merkle.verify_consistency(old, size, latest.root, checkpoint.root,
                                     list(submission.proof)):
        raise Refusal(422, "bad_proof",
                      f"the consistency proof from size {old} to {size} does not verify")
