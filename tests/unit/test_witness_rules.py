"""The witness's rules (C2SP tlog-witness): parsing a request and judging it, table-driven."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.core import merkle
from broker.core.witness import (
    MAX_PROOF_LINES,
    Latest,
    Refusal,
    judge,
    open_submission,
    parse_submission,
    trusted_note,
)
from tests.witness_kit import ORIGIN, TestLog, body

LOG = TestLog(40)
LOGS = {ORIGIN: [LOG.verifier]}


def refusal_of(request: bytes, latest: Latest) -> tuple[int, str, int | None] | None:
    """Parse, open and judge `request`; the refusal's (status, reason, size), or None."""
    try:
        submission = parse_submission(request)
        checkpoint = open_submission(submission, LOGS)
        judge(submission, checkpoint, latest)
    except Refusal as refusal:
        return refusal.status, refusal.reason, refusal.latest_size
    return None


def test_a_request_parses_into_old_size_proof_and_note() -> None:
    request = LOG.request(13, 40)
    submission = parse_submission(request)
    assert submission.old_size == 13
    assert list(submission.proof) == LOG.proof(13, 40)
    assert submission.note == LOG.checkpoint(40)
    assert submission.body == LOG.checkpoint(40).partition("\n\n")[0] + "\n"
    assert (submission.origin, submission.request) == (ORIGIN, request)


@pytest.mark.parametrize("request_body", [
    b"old 0\n" + LOG.checkpoint(5).encode(),  # no empty line
    b"old 00\n\n" + LOG.checkpoint(5).encode(),  # leading zero
    b"old -1\n\n" + LOG.checkpoint(5).encode(),
    b"old  1\n\n" + LOG.checkpoint(5).encode(),
    b"new 1\n\n" + LOG.checkpoint(5).encode(),
    b"old 1\nnot base64!\n\n" + LOG.checkpoint(5).encode(),
    b"old 1\nAAAA\n\n" + LOG.checkpoint(5).encode(),  # a 3-byte hash
    body(1, [b"\0" * 32] * (MAX_PROOF_LINES + 1), LOG.checkpoint(5)),
    b"old 0\n\n" + LOG.checkpoint(5).partition("\n\n")[0].encode(),  # no signature block
    b"old 0\n\nlog.example/audit\nfive\nroot\n\n",
    b"old 0\n\n\xff\xfe",
    b"old 0\n\n" + b"x" * 70_000,
    b"old 9223372036854775808\n\n" + LOG.checkpoint(5).encode(),  # beyond 2**63 - 1
])
def test_malformed_requests_are_400(request_body: bytes) -> None:
    assert refusal_of(request_body, Latest()) == (400, "malformed", None)


def test_an_unknown_origin_is_404_and_an_unsigned_checkpoint_403() -> None:
    other = TestLog(5, origin="other.example/log")
    assert refusal_of(other.request(0, 5), Latest()) == (404, "unknown_origin", None)
    intruder = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    forged = body(0, [], LOG.checkpoint(5, key=intruder))
    assert refusal_of(forged, Latest()) == (403, "unsigned", None)
    # A known key whose signature does not verify is no trusted signature either.
    note = LOG.checkpoint(5)
    tampered = note.replace("\n5\n", "\n6\n", 1)
    assert refusal_of(body(0, [], tampered), Latest()) == (403, "unsigned", None)


def test_signatures_by_unknown_keys_are_ignored() -> None:
    stranger = TestLog(40, seed=7, origin="stranger.example")
    extra = stranger.checkpoint(40).partition("\n\n")[2]
    note = LOG.checkpoint(40) + extra.replace("stranger.example", "someone.example")
    assert refusal_of(body(0, [], note), Latest()) is None
    # What the witness keeps and serves holds only the trusted log's line.
    assert trusted_note(parse_submission(body(0, [], note)), [LOG.verifier]) == LOG.checkpoint(40)


def test_any_trusted_key_of_the_origin_will_do() -> None:
    rotated = TestLog(40, seed=3)
    logs = {ORIGIN: [LOG.verifier, rotated.verifier]}
    submission = parse_submission(rotated.request(0, 40))
    assert open_submission(submission, logs).size == 40


HEAD = Latest(13, LOG.root(13))
CASES = [
    # (old, new, proof, latest, expected)
    (0, 40, [], Latest(), None),  # the first checkpoint of a log
    (0, 0, [], Latest(), None),  # the empty tree
    (13, 40, LOG.proof(13, 40), HEAD, None),
    (13, 13, [], HEAD, None),  # the same checkpoint again
    (16, 40, LOG.proof(16, 40), Latest(16, LOG.root(16)), None),  # a power of two
    (14, 13, [], HEAD, (400, "old_size_too_large", None)),
    (0, 40, [], HEAD, (409, "old_size_stale", 13)),
    (20, 40, LOG.proof(20, 40), HEAD, (409, "old_size_stale", 13)),
    (13, 40, LOG.proof(12, 40), HEAD, (422, "bad_proof", None)),
    (13, 40, LOG.proof(13, 40)[:-1], HEAD, (422, "bad_proof", None)),
    (13, 40, [*LOG.proof(13, 40), b"\0" * 32], HEAD, (422, "bad_proof", None)),
    (0, 40, [LOG.root(13)], Latest(), (422, "bad_proof", None)),  # old 0 takes no proof
    (13, 13, [LOG.root(13)], HEAD, (422, "bad_proof", None)),
    (13, 40, LOG.proof(13, 40), Latest(13, b"\x05" * 32), (422, "bad_proof", None)),
]


@pytest.mark.parametrize(("old", "new", "proof", "latest", "expected"), CASES)
def test_judgement_follows_the_spec(old: int, new: int, proof: list[bytes], latest: Latest,
                                    expected: tuple[int, str, int | None] | None) -> None:
    assert refusal_of(LOG.request(old, new, proof=proof), latest) == expected


def test_another_root_for_the_cosigned_size_is_a_409_fork() -> None:
    fork = TestLog(40, prefix="forged")
    fork_note = LOG.checkpoint(13, root=fork.root(13))
    request = body(13, [], fork_note)
    assert refusal_of(request, HEAD) == (409, "root_conflict", None)
    assert refusal_of(body(0, [], LOG.checkpoint(0, root=b"\x01" * 32)), Latest()) == (
        409, "root_conflict", None)


def test_a_stale_refusal_answers_with_the_size_line() -> None:
    refusal = Refusal(409, "old_size_stale", "stale", latest_size=13)
    assert (refusal.body(), refusal.content_type()) == ("13\n", "text/x.tlog.size")
    other = Refusal(422, "bad_proof", "the proof does not verify")
    assert (other.body(), other.content_type()) == (
        "the proof does not verify\n", "text/plain; charset=utf-8")


def test_the_empty_root_is_what_an_unseen_log_is_held_to() -> None:
    assert Latest() == Latest(0, merkle.EMPTY_ROOT)
