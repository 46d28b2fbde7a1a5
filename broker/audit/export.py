"""The audit log's export: JSON Lines of every entry and a final signed checkpoint, and its
offline verification.

An export is verifiable with only the checkpoint verifier key (`broker audit verify FILE`):
each line is exactly as `export_lines` writes it, so nothing in it escapes verification.
The format is described in docs/audit.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Engine

from broker.audit.reads import b64, checkpoint_view, note_signature
from broker.audit.signer import (
    CheckpointRefused,
    CheckpointSigner,
    StoredCheckpoint,
    latest_checkpoint,
)
from broker.audit.tables import entry_rows, tree_size
from broker.core.checkpoint import Verifier
from broker.core.verify import Problem, VerifyReport, verify_export


def _line(obj: dict[str, Any]) -> str:
    """One export line: compact JSON (ASCII) in a fixed key order, so every byte counts."""
    return json.dumps(obj, separators=(",", ":")) + "\n"


def export_entry_line(seq: int, data: bytes, leaf: bytes) -> str:
    """The export line of one entry."""
    return _line({"seq": seq, "entry_b64": b64(data), "leaf_hash": b64(leaf)})


def export_trailer(origin: str, checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """The export's last object: the checkpoint without its unsigned `time`, so nothing in
    an export is left that verification does not check."""
    view = checkpoint_view(origin, checkpoint)
    del view["time"]
    return view


def export_lines(engine: Engine, signer: CheckpointSigner) -> Iterator[str]:
    """The log as JSON Lines: one object per entry, then the latest checkpoint (signed now
    so that it covers the whole export, unless the signer refuses: then the last one).

    The checkpoint is settled before the first line, so a failure is an error answer,
    never a stream cut short.
    """
    try:
        checkpoint = signer.sign()
    except CheckpointRefused:
        with engine.connect() as conn:
            latest = latest_checkpoint(conn)
        if latest is None:
            raise
        checkpoint = latest
    with engine.connect() as conn:
        size = max(tree_size(conn), checkpoint.size)

    def lines() -> Iterator[str]:
        with engine.connect() as conn:
            for seq, data, leaf in entry_rows(conn, size):
                yield export_entry_line(seq, data, leaf)
        yield _line(export_trailer(signer.origin, checkpoint))

    return lines()


def _strict_lines(lines: Iterable[bytes], problems: list[Problem]) -> Iterator[str]:
    """Pass each export line on, noting any that is not exactly as `export_lines` writes
    it (whitespace, key order, base64 spelling, a derived checkpoint field changed)."""
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
            obj = json.loads(line)
            if "note" in obj:
                key_id, signature = note_signature(obj["note"])
                expected = {**obj, "key_id": key_id, "signature": signature}
            else:
                expected = {"seq": obj["seq"],
                            "entry_b64": b64(base64.b64decode(obj["entry_b64"], validate=True)),
                            "leaf_hash": b64(base64.b64decode(obj["leaf_hash"], validate=True))}
            exact = _line(expected) == line
        except (ValueError, TypeError, KeyError, binascii.Error, AttributeError):
            exact = False
            line = ""
        if not exact:
            problems.append(Problem(None, "export_not_exact",
                                    f"line {number} is not exactly as the broker exports it"))
        yield line


def verify_export_file(
    lines: Iterable[bytes], verifier: Verifier | Iterable[Verifier]
) -> VerifyReport:
    """Verify an export offline with only the checkpoint verifier key: the entries, the
    final signed checkpoint, and that every line is byte for byte as exported."""
    strict: list[Problem] = []
    report = verify_export(_strict_lines(lines, strict), verifier)
    if strict:
        report.problems.extend(strict)
        report.ok = False
    return report
