"""Streaming verification: a clean log passes, and every tampering names itself."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import merkle
from broker.core.checkpoint import Checkpoint, Verifier, signed_checkpoint
from broker.core.entry import Actor, Entry, Item, PolicyRef, encode_entry, format_time
from broker.core.verify import LogVerifier, VerifyReport, verify_export, verify_log

ORIGIN = "sluis.example/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
VERIFIER = Verifier.for_private_key(ORIGIN, KEY)
SIZE = 40
CHECKPOINT_SIZES = (5, 16, 33, 40)

Row = tuple[int, bytes, bytes]


def entry_bytes(seq: int, origin: str = ORIGIN, purpose: str = "integrale-controle") -> bytes:
    moment = datetime(2026, 11, 28, 10, tzinfo=UTC) + timedelta(seconds=seq)
    entry = Entry(
        origin=origin,
        id=f"aud_{seq:06d}",
        seq=seq,
        time=format_time(moment),
        action="disclosure" if seq % 3 else "hit",
        outcome="granted",
        actor=Actor(client="cl_1", org="gemeente", roles=["requester"], acting_user_tag="t"),
        purpose=purpose,
        case_reference=f"ZAAK-{seq}",
        policy=PolicyRef(pack="demo", hash="sha256:9f86"),
        request_id=f"req_{seq}",
        items=[
            Item(
                signal_id=f"sg_{seq}",
                rule="gemeente-energie",
                legal_basis="elektriciteitswet-levering",
                category="energie-afwijking",
                source="netbeheerder",
                fields={"location.postcode": "reveal"},
                subject_tags=["kq9X"],
            )
        ]
        if seq % 3
        else [],
    )
    return encode_entry(entry)


def row(seq: int, data: bytes) -> Row:
    return seq, data, merkle.leaf_hash(data)


ROWS = [row(seq, entry_bytes(seq)) for seq in range(SIZE)]


def root_of(rows: list[Row], size: int) -> bytes:
    return merkle.root_from_leaf_hashes([leaf for _, _, leaf in rows[:size]])


CHECKPOINTS = [
    signed_checkpoint(ORIGIN, n, root_of(ROWS, n), ORIGIN, KEY) for n in CHECKPOINT_SIZES
]


def verify(rows: list[Row], checkpoints: list[Checkpoint | str] | None = None) -> VerifyReport:
    cps: list[Checkpoint | str] = list(CHECKPOINTS) if checkpoints is None else checkpoints
    return verify_log(iter(rows), cps, VERIFIER, ORIGIN)


def codes(report: VerifyReport) -> list[str]:
    return [p.code for p in report.problems]


# --- A clean log ---


def test_a_clean_log_verifies() -> None:
    report = verify(ROWS)
    assert report.ok, report.problems
    assert (report.size, report.root) == (SIZE, root_of(ROWS, SIZE))
    assert (report.first_bad_seq, report.checkpoints_verified, report.problems) == (None, 4, [])


def test_an_empty_log_with_an_empty_checkpoint_verifies() -> None:
    empty = signed_checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT, ORIGIN, KEY)
    report = verify([], [empty])
    assert report.ok
    assert (report.size, report.root, report.checkpoints_verified) == (0, merkle.EMPTY_ROOT, 1)


def test_entries_past_the_last_checkpoint_are_still_checked() -> None:
    rows = ROWS + [row(SIZE, entry_bytes(SIZE, origin="other.example/audit"))]
    report = verify(rows)
    assert codes(report) == ["entry_origin_mismatch"]
    assert report.first_bad_seq == SIZE


# --- Tampering, one by one ---


def edited(seq: int) -> bytes:
    return entry_bytes(seq, purpose="bibob-toets")


def test_an_edit_without_fixing_the_leaf_hash_names_the_entry() -> None:
    rows = list(ROWS)
    rows[7] = (7, edited(7), ROWS[7][2])
    report = verify(rows)
    assert report.first_bad_seq == 7
    assert codes(report) == ["leaf_hash_mismatch"] + ["checkpoint_root_mismatch"] * 3


def test_an_edit_with_its_leaf_hash_fixed_is_caught_by_the_checkpoint() -> None:
    rows = list(ROWS)
    rows[20] = row(20, edited(20))
    report = verify(rows)
    assert not report.ok
    assert codes(report) == ["checkpoint_root_mismatch"] * 2
    assert "seq 16..32" in report.problems[0].message


def test_a_non_canonical_re_encoding_names_the_entry() -> None:
    rows = list(ROWS)
    spaced = json.dumps(json.loads(ROWS[3][1]), sort_keys=True).encode()
    rows[3] = row(3, spaced)
    report = verify(rows)
    assert report.first_bad_seq == 3
    assert codes(report)[0] == "entry_not_canonical"


def test_a_deleted_row_is_a_gap() -> None:
    report = verify(ROWS[:10] + ROWS[11:])
    assert report.first_bad_seq == 10
    assert report.problems[0].code == "seq_gap"
    assert "checkpoint_root_mismatch" in codes(report)


def test_reordered_rows() -> None:
    rows = list(ROWS)
    rows[12], rows[13] = rows[13], rows[12]
    report = verify(rows)
    assert report.first_bad_seq == 12
    assert codes(report)[:2] == ["seq_gap", "seq_out_of_order"]


def test_a_forged_row_inserted_in_the_middle() -> None:
    forged = row(8, edited(8))
    report = verify(ROWS[:9] + [forged] + ROWS[9:])
    assert report.first_bad_seq == 8
    assert codes(report)[0] == "seq_out_of_order"


def test_a_renumbered_row_disagrees_with_its_own_seq() -> None:
    rows = list(ROWS)
    rows[4] = row(4, ROWS[5][1])
    report = verify(rows)
    assert report.first_bad_seq == 4
    assert codes(report)[0] == "entry_seq_mismatch"


def test_a_truncated_tail_is_caught_by_a_later_checkpoint() -> None:
    report = verify(ROWS[:30])
    assert codes(report) == ["checkpoint_beyond_log", "checkpoint_beyond_log"]
    assert report.first_bad_seq == 30


def test_a_self_consistent_rewrite_is_caught_by_an_older_checkpoint() -> None:
    fork = [row(seq, edited(seq)) for seq in range(SIZE)]
    new_checkpoint = signed_checkpoint(ORIGIN, SIZE, root_of(fork, SIZE), "forger", KEY)
    report = verify(fork, [CHECKPOINTS[0], new_checkpoint])
    assert codes(report) == ["checkpoint_invalid", "checkpoint_root_mismatch"]


def test_two_roots_for_one_size() -> None:
    other = signed_checkpoint(ORIGIN, 16, merkle.EMPTY_ROOT, ORIGIN, KEY)
    report = verify(ROWS, [*CHECKPOINTS, other])
    assert codes(report) == ["checkpoint_fork"]


def test_checkpoints_of_another_origin_or_key() -> None:
    root = root_of(ROWS, 5)
    other_origin = signed_checkpoint("other.example/audit", 5, root, ORIGIN, KEY)
    other_key = signed_checkpoint(ORIGIN, 5, root, ORIGIN, Ed25519PrivateKey.generate())
    report = verify(ROWS, [other_origin, other_key])
    assert codes(report) == ["checkpoint_origin", "checkpoint_invalid"]


def test_verified_checkpoint_objects_are_accepted() -> None:
    cp = Checkpoint(ORIGIN, 16, root_of(ROWS, 16))
    report = verify(ROWS, [cp])
    assert report.ok
    assert report.checkpoints_verified == 1


def test_an_entry_with_extra_fields_or_another_version() -> None:
    value = json.loads(ROWS[2][1])
    value["note"] = "x"
    rows = list(ROWS)
    rows[2] = row(2, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())
    value.pop("note")
    value["v"] = True
    rows[6] = row(6, json.dumps(value | {"seq": 6}, sort_keys=True, separators=(",", ":")).encode())
    report = verify(rows, [])
    assert codes(report) == ["entry_malformed", "entry_malformed"]
    assert report.first_bad_seq == 2


def test_the_schema_check_is_optional_and_catches_a_bad_action() -> None:
    value = json.loads(ROWS[9][1]) | {"action": "leak"}
    rows = list(ROWS)
    rows[9] = row(9, json.dumps(value, sort_keys=True, separators=(",", ":")).encode())
    assert codes(verify(rows, [])) == []
    report = verify_log(rows, [], VERIFIER, ORIGIN, check_schema=True)
    assert codes(report) == ["entry_malformed"]


def test_problems_are_capped() -> None:
    rows = [(seq, data, merkle.EMPTY_ROOT) for seq, data, _ in ROWS]
    log = LogVerifier(VERIFIER, ORIGIN, max_problems=3)
    for r in rows:
        log.add_entry(*r)
    report = log.finish()
    assert codes(report) == ["leaf_hash_mismatch"] * 3 + ["too_many_problems"]
    assert report.first_bad_seq == 0


Tamper = Callable[[list[Row], int], list[Row]]


def _edit_unfixed(rows: list[Row], at: int) -> list[Row]:
    rows[at] = (at, edited(at), rows[at][2])
    return rows


def _delete(rows: list[Row], at: int) -> list[Row]:
    return rows[:at] + rows[at + 1 :]


def _respaced(rows: list[Row], at: int) -> list[Row]:
    rows[at] = row(at, json.dumps(json.loads(rows[at][1]), sort_keys=True, indent=0).encode())
    return rows


def _flip_byte(rows: list[Row], at: int) -> list[Row]:
    seq, data, _ = rows[at]
    i = len(data) // 2
    rows[at] = row(seq, data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
    return rows


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, SIZE - 1),
    st.sampled_from([_edit_unfixed, _delete, _respaced, _flip_byte]),
)
def test_any_tampering_is_caught_at_its_entry(at: int, tamper: Tamper) -> None:
    report = verify(tamper(list(ROWS), at))
    assert not report.ok
    if tamper is _flip_byte:
        # A flipped byte either breaks the JSON (named) or changes a value (root mismatch).
        assert report.first_bad_seq in (at, None)
        assert report.first_bad_seq == at or "checkpoint_root_mismatch" in codes(report)
    else:
        assert report.first_bad_seq == at


# --- Exports ---


def export_lines(rows: list[Row], size: int = SIZE, **extra: Any) -> list[str]:
    lines = [
        json.dumps(
            {
                "seq": seq,
                "entry_b64": base64.b64encode(data).decode(),
                "leaf_hash": base64.b64encode(leaf).decode(),
            }
        )
        for seq, data, leaf in rows
    ]
    root = root_of(ROWS, size)
    checkpoint = {
        "origin": ORIGIN,
        "size": size,
        "root_hash": base64.b64encode(root).decode(),
        "time": "2026-11-28T10:00:00.123Z",
        "note": signed_checkpoint(ORIGIN, size, root, ORIGIN, KEY),
    } | extra
    return [*lines, json.dumps(checkpoint)]


def test_an_export_verifies() -> None:
    report = verify_export(export_lines(ROWS), VERIFIER)
    assert report.ok, report.problems
    assert (report.size, report.root, report.checkpoints_verified) == (SIZE, root_of(ROWS, SIZE), 1)


def test_an_export_running_past_its_checkpoint_verifies() -> None:
    report = verify_export([*export_lines(ROWS, size=21), ""], VERIFIER, ORIGIN)
    assert report.ok, report.problems
    assert report.checkpoints_verified == 1


def test_an_export_with_a_rewritten_entry_fails() -> None:
    rows = list(ROWS)
    rows[30] = row(30, edited(30))
    report = verify_export(export_lines(rows), VERIFIER)
    assert codes(report) == ["checkpoint_root_mismatch"]


def test_an_export_entry_naming_another_origin() -> None:
    rows = list(ROWS)
    rows[11] = row(11, entry_bytes(11, origin="other.example/audit"))
    report = verify_export(export_lines(rows), VERIFIER)
    assert report.first_bad_seq == 11
    assert codes(report)[0] == "entry_origin_mismatch"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (export_lines(ROWS)[:-1], ["export_malformed"]),
        (export_lines(ROWS, size=41), ["checkpoint_beyond_log"]),
        (
            export_lines(ROWS, root_hash=base64.b64encode(bytes(32)).decode()),
            ["checkpoint_invalid"],
        ),
        (export_lines(ROWS, note="not a note\n"), ["checkpoint_invalid"]),
        ([*export_lines(ROWS), export_lines(ROWS)[0]], ["export_malformed", "seq_out_of_order"]),
        (["{not json", *export_lines(ROWS)], ["export_malformed"]),
        ([json.dumps({"seq": "0", "entry_b64": "", "leaf_hash": ""}), *export_lines(ROWS)], []),
    ],
    ids=["no checkpoint", "truncated", "fields", "bad note", "after", "garbage", "bad seq"],
)
def test_malformed_exports(lines: list[str], expected: list[str]) -> None:
    report = verify_export(lines, VERIFIER)
    assert not report.ok
    if expected:
        assert codes(report)[: len(expected)] == expected
    else:
        assert codes(report)[0] == "export_malformed"


def test_the_pure_core_imports_no_web_database_or_settings_code() -> None:
    probe = (
        "import sys\n"
        "import broker.core.checkpoint, broker.core.entry, broker.core.merkle\n"
        "import broker.core.verify\n"
        "banned = ('fastapi', 'starlette', 'sqlalchemy', 'sqlmodel', 'alembic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned\n"
        "      or m in ('broker.settings', 'broker.db', 'broker.models')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
