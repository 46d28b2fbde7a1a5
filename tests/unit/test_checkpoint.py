"""Signed notes, checkpoints and receipts against the published C2SP and Go `note` vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import merkle
from broker.core.checkpoint import (
    EM_DASH,
    Checkpoint,
    CheckpointInvalid,
    ReceiptInvalid,
    Verifier,
    checkpoint_body,
    format_receipt,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_receipt,
    parse_signer_key,
    parse_verifier_key,
    public_key_bytes,
    sign_note,
    signed_checkpoint,
    signer_key,
    verifier_key,
    verify_receipt,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "signed_note.json").read_text(encoding="utf-8")
)
GO = VECTORS["go_note"]
PETER = parse_verifier_key(GO["verifier_key"])
ENOCH = parse_verifier_key(GO["enoch_verifier_key"])
PETER_NAME, PETER_KEY = parse_signer_key(GO["signer_key"])
TEXT: str = GO["text"]

ORIGIN = "sluis.example/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
LOG = Verifier.for_private_key(ORIGIN, LOG_KEY)


# --- Keys ---


def test_go_keys_round_trip() -> None:
    assert PETER_NAME == "PeterNeumann"
    assert PETER.key_id == bytes.fromhex("c74f20a3") == key_id(PETER_NAME, PETER.public_key)
    assert public_key_bytes(PETER_KEY) == PETER.public_key
    assert verifier_key(PETER_NAME, PETER.public_key) == GO["verifier_key"]
    assert str(PETER) == GO["verifier_key"]
    assert signer_key(PETER_NAME, PETER_KEY) == GO["signer_key"]
    assert ENOCH.key_id == bytes.fromhex("af0cfe78")


def test_every_mangled_verifier_key_is_rejected() -> None:
    # golang.org/x/mod TestNewVerifier: every proper substring and every one-byte change.
    good: str = GO["verifier_key"]
    bad = {good[i:j] for i in range(len(good) + 1) for j in range(i + 1, len(good) + 1)}
    bad |= {good[:i] + chr(ord(good[i]) + 1) + good[i + 1 :] for i in range(len(good))}
    bad |= set(GO["bad_verifier_keys"])
    bad.discard(good)
    accepted = []
    for text in bad:
        try:
            parse_verifier_key(text)
        except CheckpointInvalid:
            continue
        accepted.append(text)
    assert accepted == []


@pytest.mark.parametrize(
    "text",
    [
        "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEX+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
    ],
)
def test_mangled_signer_keys_are_rejected(text: str) -> None:
    with pytest.raises(CheckpointInvalid):
        parse_signer_key(text)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\tname", "nbsp\u00a0name"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(CheckpointInvalid, match="key name"):
        verifier_key(name, PETER.public_key)
    with pytest.raises(CheckpointInvalid, match="key name"):
        sign_note(TEXT, name, PETER_KEY)


# --- Notes ---


def test_go_note_is_signed_byte_for_byte() -> None:
    assert sign_note(TEXT, PETER_NAME, PETER_KEY) == TEXT + "\n" + GO["peter_sig"]


def test_go_notes_open() -> None:
    both = TEXT + "\n" + GO["peter_sig"] + GO["enoch_sig"]
    assert open_note(both, PETER) == TEXT
    assert open_note(both, [PETER, ENOCH]) == TEXT
    assert open_note(both.encode("utf-8"), [ENOCH]) == TEXT
    # Repeated signatures are tolerated, as in Go's Open.
    assert open_note(TEXT + "\n" + GO["peter_sig"] * 2 + GO["enoch_sig"], PETER) == TEXT


def test_c2sp_signed_note_example_opens() -> None:
    spec = VECTORS["c2sp_signed_note"]
    verifier = parse_verifier_key(spec["verifier_key"])
    assert open_note(spec["note"], verifier) == spec["text"]
    assert verifier_key(verifier.name, verifier.public_key) == spec["verifier_key"]


def test_a_note_no_trusted_key_signed_is_rejected() -> None:
    with pytest.raises(CheckpointInvalid, match="no signature by a trusted key"):
        open_note(TEXT + "\n" + GO["peter_sig"] + GO["enoch_sig"], [LOG])
    with pytest.raises(CheckpointInvalid, match="no signature by a trusted key"):
        open_note(TEXT + "\n" + GO["peter_sig"], [])


def test_a_bad_signature_by_a_known_key_rejects_the_note() -> None:
    sig: str = GO["peter_sig"]
    with pytest.raises(CheckpointInvalid, match="invalid signature for key PeterNeumann"):
        open_note(TEXT + "\n" + sig[:60] + "ABCD" + sig[60:], PETER)
    with pytest.raises(CheckpointInvalid, match="invalid signature"):
        open_note(TEXT.replace("problem", "puzzle", 1) + "\n" + sig, PETER)


def test_a_key_with_the_same_name_but_another_key_is_unknown() -> None:
    impostor = Verifier.for_private_key(PETER_NAME, LOG_KEY)
    with pytest.raises(CheckpointInvalid, match="no signature by a trusted key"):
        open_note(TEXT + "\n" + GO["peter_sig"], impostor)


@pytest.mark.parametrize(
    "suffix",
    [
        "",
        "\n",
        "\n" + GO["peter_sig"][:-1],
        "\n" + f"{EM_DASH} Bad Name " + GO["peter_sig"].split()[-1] + "\n",
        "\n" + GO["peter_sig"] + "Unexpected line.\n",
        "\n" + GO["peter_sig"].replace(EM_DASH, "-"),
        "\n" + f"{EM_DASH} PeterNeumann AAAA\n",
        "\n" + f"{EM_DASH} PeterNeumann not*base64\n",
        "\n" + f"{EM_DASH} PeterNeumann\n",
        "\n" + GO["peter_sig"] * 101,
    ],
)
def test_malformed_notes_are_rejected(suffix: str) -> None:
    with pytest.raises(CheckpointInvalid):
        open_note(TEXT + suffix, PETER)


@pytest.mark.parametrize("prefix", ["\x01", "\r", "\ud800"])
def test_control_characters_and_bad_unicode_are_rejected(prefix: str) -> None:
    with pytest.raises(CheckpointInvalid):
        open_note(prefix + TEXT + "\n" + GO["peter_sig"], PETER)
    with pytest.raises(CheckpointInvalid):
        open_note(b"\xff" + (TEXT + "\n" + GO["peter_sig"]).encode(), PETER)


def test_sign_note_requires_a_final_newline() -> None:
    with pytest.raises(CheckpointInvalid, match="newline"):
        sign_note("abc", PETER_NAME, PETER_KEY)


body_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], min_codepoint=0x20), max_size=40
)


@settings(max_examples=100, deadline=None)
@given(st.lists(body_text, min_size=1, max_size=5), st.data())
def test_signed_notes_round_trip_and_any_edit_breaks_them(
    lines: list[str], pick: st.DataObject
) -> None:
    body = "\n".join(lines) + "\n"
    note = sign_note(body, ORIGIN, LOG_KEY)
    assert open_note(note, LOG) == body
    at = pick.draw(st.integers(0, len(note) - 1))
    replacement = pick.draw(st.sampled_from(["x", "\n", "=", " ", EM_DASH]))
    edited = note[:at] + replacement + note[at + 1 :]
    if edited != note:
        with pytest.raises(CheckpointInvalid):
            open_note(edited, LOG)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_open_note_only_ever_raises_checkpoint_invalid(garbage: str) -> None:
    with pytest.raises(CheckpointInvalid):
        open_note(garbage, [PETER, LOG])


# --- Checkpoints ---


def test_checkpoint_body_matches_the_tlog_checkpoint_example() -> None:
    spec = VECTORS["c2sp_tlog_checkpoint"]
    parsed = parse_checkpoint(spec["body"])
    assert (parsed.origin, parsed.size, parsed.extensions) == (spec["origin"], spec["size"], ())
    assert checkpoint_body(parsed.origin, parsed.size, parsed.root) == spec["body"]
    assert parsed.body() == spec["body"]
    # Its key is not published: to us it is signed by nobody we trust.
    with pytest.raises(CheckpointInvalid, match="trusted"):
        open_checkpoint(spec["note"], LOG)


@pytest.mark.parametrize("case", VECTORS["sumdb_checkpoints"]["notes"], ids=lambda c: c["size"])
def test_published_sumdb_checkpoints_verify(case: dict[str, Any]) -> None:
    sumdb = VECTORS["sumdb_checkpoints"]
    verifier = parse_verifier_key(sumdb["verifier_key"])
    checkpoint = open_checkpoint(case["note"], verifier, sumdb["origin"])
    assert checkpoint == Checkpoint(
        sumdb["origin"], case["size"], base64.b64decode(case["root_b64"])
    )
    with pytest.raises(CheckpointInvalid, match="another log"):
        open_checkpoint(case["note"], verifier, "sum.golang.org")
    bigger = case["note"].replace(str(case["size"]), str(case["size"] + 1), 1)
    with pytest.raises(CheckpointInvalid, match="invalid signature"):
        open_checkpoint(bigger, verifier)


def test_our_checkpoint_signs_and_opens() -> None:
    root = merkle.leaf_hash(b"x")
    note = signed_checkpoint(ORIGIN, 42, root, ORIGIN, LOG_KEY)
    lines = note.split("\n")
    assert lines[:4] == [ORIGIN, "42", base64.b64encode(root).decode(), ""]
    assert lines[4].startswith(f"{EM_DASH} {ORIGIN} ")
    assert base64.b64decode(lines[4].split()[-1])[:4] == LOG.key_id
    assert open_checkpoint(note, LOG, ORIGIN) == Checkpoint(ORIGIN, 42, root)
    other_key = Verifier.for_private_key(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointInvalid):
        open_checkpoint(note, other_key, ORIGIN)
    with pytest.raises(CheckpointInvalid, match="another log"):
        open_checkpoint(note, LOG, "other.example/audit")


def test_checkpoint_with_extensions_round_trips() -> None:
    checkpoint = Checkpoint(ORIGIN, 7, merkle.EMPTY_ROOT, ("time 2026-11-28T10:00:00.123Z",))
    assert parse_checkpoint(checkpoint.body()) == checkpoint
    with pytest.raises(CheckpointInvalid):
        Checkpoint(ORIGIN, 7, merkle.EMPTY_ROOT, ("",)).body()


ROOT_B64 = base64.b64encode(merkle.EMPTY_ROOT).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n07\n{ROOT_B64}\n",
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n+1\n{ROOT_B64}\n",
        f"{ORIGIN}\n 1\n{ROOT_B64}\n",
        f"{ORIGIN}\n18446744073709551616\n{ROOT_B64}\n",
        f"{ORIGIN}\n1\n{ROOT_B64}",
        f"{ORIGIN}\n1\n",
        f"\n1\n{ROOT_B64}\n",
        f"{ORIGIN}\n1\n{ROOT_B64}\n\nextension after a blank line\n",
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(31)).decode()}\n",
        f"{ORIGIN}\n1\n{ROOT_B64[:-2]}V=\n",
        f"{ORIGIN}\n1\n{ROOT_B64.rstrip('=')}\n",
    ],
)
def test_malformed_checkpoints_are_rejected(body: str) -> None:
    with pytest.raises(CheckpointInvalid):
        parse_checkpoint(body)


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [("", 1, merkle.EMPTY_ROOT), ("a\nb", 1, merkle.EMPTY_ROOT), (ORIGIN, -1, merkle.EMPTY_ROOT)]
    + [(ORIGIN, 2**64, merkle.EMPTY_ROOT), (ORIGIN, 1, b"short")],
)
def test_checkpoint_body_refuses_impossible_values(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(CheckpointInvalid):
        checkpoint_body(origin, size, root)


# --- Receipts ---


def _tree(entries: list[bytes]) -> merkle.NodeSource:
    store: dict[merkle.Coord, bytes] = {}
    tree = merkle.CompactRange()
    for i, entry in enumerate(entries):
        store[(0, i)] = merkle.leaf_hash(entry)
        for level, index, node in tree.append(store[(0, i)]):
            store[(level, index)] = node
    return merkle.source_from_mapping(store)


ENTRIES = [f'{{"seq":{i}}}'.encode() for i in range(11)]
NODES = _tree(ENTRIES)


def _receipt(index: int, size: int = 11, extra: bytes | None = None) -> str:
    note = signed_checkpoint(ORIGIN, size, merkle.root(size, NODES), ORIGIN, LOG_KEY)
    return format_receipt(index, merkle.inclusion_proof(index, size, NODES), note, extra)


def test_tlog_proof_spec_example_parses() -> None:
    spec = VECTORS["c2sp_tlog_proof"]
    receipt = parse_receipt(spec["text"])
    assert receipt.index == spec["index"]
    assert len(receipt.hashes) == spec["hashes"]
    assert receipt.extra == base64.b64decode(spec["extra_b64"])
    assert receipt.checkpoint.startswith("example.com/fancylog\n109482\n")
    again = format_receipt(receipt.index, receipt.hashes, receipt.checkpoint, receipt.extra)
    assert again == spec["text"]


def test_receipt_layout() -> None:
    text = _receipt(3, extra=b"dsc_1")
    lines = text.split("\n")
    proof = merkle.inclusion_proof(3, 11, NODES)
    assert lines[:3] == ["c2sp.org/tlog-proof@v1", "extra ZHNjXzE=", "index 3"]
    assert lines[3 : 3 + len(proof)] == [base64.b64encode(h).decode() for h in proof]
    assert lines[3 + len(proof)] == ""
    assert lines[4 + len(proof)] == ORIGIN
    parsed = parse_receipt(text)
    assert (parsed.index, list(parsed.hashes), parsed.extra) == (3, proof, b"dsc_1")


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 11), (3, 11), (10, 11), (4, 5)])
def test_receipts_verify_for_their_entry_only(index: int, size: int) -> None:
    text = _receipt(index, size)
    assert verify_receipt(text, ENTRIES[index], LOG)
    assert verify_receipt(text, ENTRIES[index], [PETER, LOG], ORIGIN)
    assert not verify_receipt(text, ENTRIES[index] + b" ", LOG)
    assert not verify_receipt(text, ENTRIES[(index + 1) % size], LOG) or size == 1
    assert not verify_receipt(text, ENTRIES[index], PETER)
    assert not verify_receipt(text, ENTRIES[index], LOG, "other.example/audit")
    assert not verify_receipt(text.replace(f"index {index}", f"index {index + 1}"), b"", LOG)


def test_tampered_receipts_fail() -> None:
    text = _receipt(5)
    lines = text.split("\n")
    flipped = base64.b64encode(bytes([base64.b64decode(lines[2])[0] ^ 1]) + bytes(31)).decode()
    tampered = [
        "\n".join([*lines[:2], flipped, *lines[3:]]),
        "\n".join([*lines[:2], *lines[3:]]),
        "\n".join([*lines[:3], lines[2], *lines[3:]]),
        text.replace("index 5", "index 05"),
        text.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        text.replace(f"{ORIGIN}\n11\n", f"{ORIGIN}\n12\n"),
        text[: text.index("\n\n")],
        "",
    ]
    assert [t for t in tampered if verify_receipt(t, ENTRIES[5], LOG)] == []


@pytest.mark.parametrize(
    "text",
    [
        "c2sp.org/tlog-proof@v1\nindex 1\n",
        "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex x\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n",
        f"c2sp.org/tlog-proof@v1\nindex 0\n{base64.b64encode(bytes(64)).decode()}\n\ncp\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n" + f"{ROOT_B64}\n" * 65 + "\ncheckpoint\n",
        "wrong-header\nindex 0\n\ncheckpoint\n",
    ],
)
def test_malformed_receipts_are_rejected(text: str) -> None:
    with pytest.raises(ReceiptInvalid):
        parse_receipt(text)
    assert not verify_receipt(text, b"", LOG)


def test_format_receipt_refuses_bad_input() -> None:
    with pytest.raises(ReceiptInvalid):
        format_receipt(-1, [], "cp\n")
    with pytest.raises(ReceiptInvalid):
        format_receipt(0, [b"short"], "cp\n")
