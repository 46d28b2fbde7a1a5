"""Cosignatures (C2SP tlog-cosignature v1, Ed25519) against a vector derived from the spec.

The expected bytes are built here from the spec's layout alone (key id, big-endian
timestamp, the "cosignature/v1" message) with the `cryptography` primitives, not with the
code under test; the frozen base64 pins the vector so that both cannot drift together.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from broker.core.checkpoint import (
    CheckpointInvalid,
    Verifier,
    open_checkpoint,
    signed_checkpoint,
)
from broker.core.cosignature import (
    Cosigner,
    cosign,
    cosigner_private_key,
    cosigner_vkey,
    parse_cosignature_line,
    parse_cosigner_private_key,
    parse_cosigner_vkey,
    signed_message,
    verify_cosignatures,
)

SEED = bytes(range(32))
NAME = "witness.example.com/w1"
TIME = 1679315147
SPEC_BODY = ("example.com/behind-the-sofa\n20852163\n"
             "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
SPEC_NOTE = (
    SPEC_BODY + "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
FROZEN_VKEY = "witness.example.com/w1+a0059f11+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
FROZEN_LINE = ("— witness.example.com/w1 oAWfEQAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUI"
               "oS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==\n")


def spec_key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x04" + public).digest()[:4]


def spec_line(body: str, timestamp: int) -> str:
    """The cosignature line, straight from the spec's text."""
    message = b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + body.encode()
    signature = KEY.sign(message)
    raw = spec_key_id(NAME, PUBLIC) + timestamp.to_bytes(8, "big") + signature
    return f"\u2014 {NAME} {base64.b64encode(raw).decode()}\n"


def test_cosign_gives_the_spec_derived_known_answer() -> None:
    expected = spec_line(SPEC_BODY, TIME)
    assert expected == FROZEN_LINE
    assert cosign(SPEC_BODY, NAME, KEY, TIME).line() == expected


def test_the_vkey_is_the_name_the_key_id_and_type_0x04() -> None:
    kid = spec_key_id(NAME, PUBLIC).hex()
    material = base64.b64encode(b"\x04" + PUBLIC).decode()
    expected = f"{NAME}+{kid}+{material}"
    assert expected == FROZEN_VKEY
    assert cosigner_vkey(NAME, PUBLIC) == expected
    parsed = parse_cosigner_vkey(expected)
    assert (parsed.name, parsed.key_id, parsed.public_key) == (NAME, bytes.fromhex(kid), PUBLIC)
    assert str(parsed) == expected


def test_the_signed_message_is_header_time_and_the_whole_body() -> None:
    body = SPEC_BODY + "extension line\n"
    assert signed_message(body, TIME) == (
        b"cosignature/v1\ntime 1679315147\n" + body.encode())
    assert signed_message(SPEC_BODY, 0).startswith(b"cosignature/v1\ntime 0\n")


def test_the_spec_example_line_frames_key_id_timestamp_and_signature() -> None:
    line = SPEC_NOTE.splitlines()[-1]
    cosignature = parse_cosignature_line(line)
    assert cosignature.name == "witness.example.com/w1"
    assert cosignature.key_id == bytes.fromhex("8d66cf3f")
    assert cosignature.timestamp == 1679315147
    assert len(cosignature.signature) == 64
    assert cosignature.line() == line + "\n"


def test_verify_cosignatures_finds_the_trusted_one_and_ignores_the_rest() -> None:
    log_key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    note = signed_checkpoint("example.com/log", 5, b"\x07" * 32, "example.com/log", log_key)
    body = note[: note.index("\n\n") + 1]
    other = Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
    cosigned = (note + cosign(body, NAME, KEY, TIME).line()
                + cosign(body, "other.example/w", other, TIME + 1).line())
    found = verify_cosignatures(cosigned, [parse_cosigner_vkey(FROZEN_VKEY)])
    assert [(c.name, c.timestamp) for c in found] == [(NAME, TIME)]
    # The log's note verifier still opens it: cosignature lines are unknown keys to it.
    log = Verifier.for_private_key("example.com/log", log_key)
    assert open_checkpoint(cosigned, log).size == 5


def test_a_cosignature_by_a_trusted_key_that_fails_rejects_the_note() -> None:
    line = cosign(SPEC_BODY, NAME, KEY, TIME).line()
    tampered = SPEC_BODY.replace("20852163", "20852164") + "\n" + line
    with pytest.raises(CheckpointInvalid, match="invalid cosignature"):
        verify_cosignatures(tampered, [parse_cosigner_vkey(FROZEN_VKEY)])


def test_a_cosignature_for_another_time_does_not_verify() -> None:
    cosigner = parse_cosigner_vkey(FROZEN_VKEY)
    good = cosign(SPEC_BODY, NAME, KEY, TIME)
    moved = type(good)(good.name, good.key_id, TIME + 1, good.signature)
    assert cosigner.verify(SPEC_BODY, good)
    assert not cosigner.verify(SPEC_BODY, moved)


def test_a_note_key_of_type_0x01_is_not_a_cosigner_key() -> None:
    note_key_id = hashlib.sha256(NAME.encode() + b"\n\x01" + PUBLIC).digest()[:4].hex()
    material = base64.b64encode(b"\x01" + PUBLIC).decode()
    note_vkey = f"{NAME}+{note_key_id}+{material}"
    with pytest.raises(CheckpointInvalid, match="0x04"):
        parse_cosigner_vkey(note_vkey)
    assert Cosigner.from_public_key(NAME, PUBLIC).key_id != bytes.fromhex(note_key_id)


@pytest.mark.parametrize("vkey", [
    FROZEN_VKEY.replace("a0059f11", "a0059f12"),  # key id of another key
    FROZEN_VKEY.replace("a0059f11", "A0059F11"),  # upper-case hex
    "witness.example.com/w1+a0059f11",  # no key
    FROZEN_VKEY + "=",  # not canonical base64
    FROZEN_VKEY.replace("witness.example.com/w1", "wit ness"),
])
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(CheckpointInvalid):
        parse_cosigner_vkey(vkey)


def test_the_private_key_string_round_trips_and_is_checked() -> None:
    text = cosigner_private_key(NAME, KEY)
    assert text.startswith(f"PRIVATE+KEY+{NAME}+a0059f11+BA")
    name, key = parse_cosigner_private_key(text)
    assert name == NAME
    assert cosign(SPEC_BODY, name, key, TIME).line() == FROZEN_LINE
    with pytest.raises(CheckpointInvalid):
        parse_cosigner_private_key(text.replace("+a0059f11+", "+00000000+"))
    with pytest.raises(CheckpointInvalid):
        parse_cosigner_private_key(text.removeprefix("PRIVATE+"))


@pytest.mark.parametrize("line", [
    "— witness.example.com/w1 " + base64.b64encode(b"\0" * 75).decode(),  # 75 bytes
    "— witness.example.com/w1 " + base64.b64encode(b"\0" * 68).decode(),  # a note signature
    "- witness.example.com/w1 " + base64.b64encode(b"\0" * 76).decode(),  # not an em dash
    "— witness.example.com/w1 "
    + base64.b64encode(b"\0" * 4 + struct.pack(">Q", 2**63) + b"\0" * 64).decode(),
])
def test_malformed_cosignature_lines_are_refused(line: str) -> None:
    with pytest.raises(CheckpointInvalid):
        parse_cosignature_line(line)


def test_cosign_refuses_what_is_not_a_checkpoint_body() -> None:
    with pytest.raises(CheckpointInvalid):
        cosign(SPEC_BODY.rstrip("\n"), NAME, KEY, TIME)
    with pytest.raises(CheckpointInvalid):
        cosign(SPEC_BODY + "\n", NAME, KEY, TIME)
    with pytest.raises(CheckpointInvalid):
        cosign(SPEC_BODY, NAME, KEY, -1)
