"""The thin client's own cryptography and file formats, checked against published vectors and
against the broker's implementations, and the promise that `clients/sluis.py` stands alone:
standard library only, Python 3.9 syntax, and it really runs on a 3.9 interpreter if present."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import merkle
from broker.core.checkpoint import signed_checkpoint, verifier_key
from clients import sluis
from tests.e2e.conftest import SCRIPT, ServedBroker, SluisRunner, client_env

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "unit" / "vectors"


# RFC 8032 section 7.1, TEST 1 to TEST 3: (public key, message, signature), hex.
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
     "39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f"
     "3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67"
     "f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


# --- Ed25519 ---


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_ed25519_rfc8032_vectors(public: str, message: str, signature: str) -> None:
    key, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert sluis.ed25519_verify(key, msg, sig)
    assert not sluis.ed25519_verify(key, msg + b"\x00", sig)
    assert not sluis.ed25519_verify(key, msg, sig[:63] + bytes([sig[63] ^ 1]))
    assert not sluis.ed25519_verify(key, msg, sig[:-1])
    # S + L verifies the same group equation but is not canonical: refused (malleability).
    s = int.from_bytes(sig[32:], "little") + GROUP_ORDER
    assert not sluis.ed25519_verify(key, msg, sig[:32] + s.to_bytes(32, "little"))


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=200),
       flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_ed25519_agrees_with_the_cryptography_package(seed: bytes, message: bytes,
                                                       flip: int) -> None:
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = private.sign(message)
    assert sluis.ed25519_verify(public, message, signature)
    bad = bytearray(signature)
    bad[flip // 8] ^= 1 << (flip % 8)
    assert not sluis.ed25519_verify(public, message, bytes(bad))


def test_ed25519_refuses_malformed_keys() -> None:
    public, message, signature = (bytes.fromhex(x) for x in RFC8032[0])
    non_canonical_y = (2**255 - 19 + 1).to_bytes(32, "little")  # y >= p
    assert not sluis.ed25519_verify(non_canonical_y, message, signature)
    assert not sluis.ed25519_verify(public[:31], message, signature)


# --- Signed notes and checkpoints ---


def _vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def test_signed_note_vectors() -> None:
    notes = _vectors("signed_note.json")
    go = notes["go_note"]
    peter = sluis.parse_verifier_key(go["verifier_key"])
    assert peter.text() == go["verifier_key"]
    note = go["text"] + "\n" + go["peter_sig"]
    assert sluis.open_note(note, [peter]) == go["text"]
    both = go["text"] + "\n" + go["peter_sig"] + go["enoch_sig"]
    assert sluis.open_note(both, [sluis.parse_verifier_key(go["enoch_verifier_key"])]) == go["text"]
    with pytest.raises(sluis.CheckFailed, match="not signed by a trusted key"):
        sluis.open_note(note, [sluis.parse_verifier_key(go["enoch_verifier_key"])])
    with pytest.raises(sluis.CheckFailed, match="does not verify"):
        sluis.open_note(note.replace("problem", "trouble"), [peter])
    for bad in go["bad_verifier_keys"]:
        with pytest.raises(sluis.CheckFailed):
            sluis.parse_verifier_key(bad)
    example = notes["c2sp_signed_note"]
    key = sluis.parse_verifier_key(example["verifier_key"])
    assert sluis.open_note(example["note"], [key]) == example["text"]


def test_published_sumdb_checkpoints_verify() -> None:
    sumdb = _vectors("signed_note.json")["sumdb_checkpoints"]
    key = sluis.parse_verifier_key(sumdb["verifier_key"])  # its base64 holds a '+'
    for case in sumdb["notes"]:
        checkpoint = sluis.open_checkpoint(case["note"], [key])
        assert checkpoint.origin == sumdb["origin"] and checkpoint.size == case["size"]
        assert base64.b64encode(checkpoint.root).decode() == case["root_b64"]


def test_checkpoints_signed_by_the_broker_verify() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    root = hashlib.sha256(b"root").digest()
    note = signed_checkpoint("sluis.example/audit", 42, root, "sluis.example/audit", private)
    key = sluis.parse_verifier_key(verifier_key("sluis.example/audit", public))
    assert sluis.open_checkpoint(note, [key]) == sluis.Checkpoint("sluis.example/audit", 42, root)
    with pytest.raises(sluis.CheckFailed):
        sluis.open_checkpoint(note.replace("\n42\n", "\n43\n"), [key])


# --- Merkle proofs ---


def test_merkle_vectors() -> None:
    vectors = _vectors("merkle_rfc6962.json")
    leaves = [sluis.leaf_hash(bytes.fromhex(x)) for x in vectors["leaves_hex"]]
    assert sluis.merkle_root([]).hex() == vectors["empty_root"]
    for size, expected in enumerate(vectors["roots_by_size"], 1):
        assert sluis.merkle_root(leaves[:size]).hex() == expected
    roots = [bytes.fromhex(r) for r in vectors["roots_by_size"]]
    for case in vectors["inclusion"]:
        proof = [bytes.fromhex(h) for h in case["proof"]]
        index, size = case["index"], case["size"]
        assert sluis.verify_inclusion(index, size, leaves[index], proof, roots[size - 1])
        if proof:
            assert not sluis.verify_inclusion(index, size, leaves[index], proof[:-1],
                                              roots[size - 1])
    for case in vectors["consistency"]:
        proof = [bytes.fromhex(h) for h in case["proof"]]
        m, n = case["m"], case["n"]
        assert sluis.verify_consistency(m, n, roots[m - 1], roots[n - 1], proof)
        if proof:
            assert not sluis.verify_consistency(m, n, roots[m - 1], roots[n - 1], proof[1:])


def _tree(size: int) -> tuple[list[bytes], merkle.NodeSource]:
    leaves = [sluis.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    nodes: dict[tuple[int, int], bytes] = {(0, i): h for i, h in enumerate(leaves)}
    level, current = 0, leaves
    while len(current) > 1:
        level += 1
        current = [merkle.node_hash(current[i], current[i + 1])
                   for i in range(0, len(current) - 1, 2)]
        nodes.update({(level, i): h for i, h in enumerate(current)})
    return leaves, merkle.source_from_mapping(nodes)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=70))
def test_merkle_agrees_with_the_broker(data: st.DataObject, size: int) -> None:
    leaves, nodes = _tree(size)
    root = sluis.merkle_root(leaves)
    assert root == merkle.root(size, nodes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(index, size, nodes)
    assert sluis.verify_inclusion(index, size, leaves[index], proof, root)
    assert not sluis.verify_inclusion(index, size, leaves[(index + 1) % size], proof, root) \
        or size == 1
    first = data.draw(st.integers(min_value=0, max_value=size))
    first_root = sluis.merkle_root(leaves[:first])
    consistency = merkle.consistency_proof(first, size, nodes)
    assert sluis.verify_consistency(first, size, first_root, root, consistency)
    if 0 < first < size:
        wrong = sluis.merkle_root(leaves[1 : first + 1])
        assert not sluis.verify_consistency(first, size, wrong, root, consistency)
        if consistency:
            bent = [bytes(32), *consistency[1:]]
            assert not sluis.verify_consistency(first, size, first_root, root, bent)
    assert not sluis.verify_consistency(size, first, root, first_root, consistency) \
        or first == size


# --- Canonical JSON and exports ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_canonical_json_agrees_with_rfc8785(value: Any) -> None:
    canonical = rfc8785.dumps(value)
    assert sluis.is_canonical(canonical)
    loose = json.dumps(value, indent=1).encode()
    assert sluis.is_canonical(loose) == (loose == canonical)


def test_non_canonical_entries_are_refused() -> None:
    assert sluis.is_canonical(b'{"a":1,"b":[true,null]}')
    for bad in (b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1.5}', b'{"a":1,"a":1}',
                b'[9007199254740993]', b'{"a":"\\u0041"}', b'{"a":NaN}', b"\xff"):
        assert not sluis.is_canonical(bad)
    # Keys sort by UTF-16 code units: U+10000 (a surrogate pair) sorts before U+E000.
    assert sluis.is_canonical(rfc8785.dumps({"\ue000": 1, "\U00010000": 2}))
    assert not sluis.is_canonical(
        json.dumps({"\ue000": 1, "\U00010000": 2}, separators=(",", ":"),
                   ensure_ascii=False).encode())


ORIGIN = "test.example/audit"


def make_export(size: int, signed: int | None = None) -> tuple[list[str], str, Ed25519PrivateKey]:
    """An export as the broker writes it: entries, then a checkpoint of `signed` entries."""
    private = Ed25519PrivateKey.generate()
    entries = [rfc8785.dumps({"v": 1, "origin": ORIGIN, "seq": i, "action": "hit",
                              "items": [{"rule": f"r{i}"}]}) for i in range(size)]
    leaves = [sluis.leaf_hash(e) for e in entries]
    signed = size if signed is None else signed
    note = signed_checkpoint(ORIGIN, signed, sluis.merkle_root(leaves[:signed]), ORIGIN, private)
    lines = [json.dumps({"seq": i, "entry_b64": base64.b64encode(e).decode(),
                         "leaf_hash": base64.b64encode(h).decode()})
             for i, (e, h) in enumerate(zip(entries, leaves, strict=True))]
    lines.append(json.dumps({"origin": ORIGIN, "size": signed,
                             "root_hash": base64.b64encode(
                                 sluis.merkle_root(leaves[:signed])).decode(),
                             "note": note}))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return lines, verifier_key(ORIGIN, public), private


def _verify(lines: list[str], key: str) -> Any:
    return sluis.verify_export(lines, [sluis.parse_verifier_key(key)])


def test_an_intact_export_verifies() -> None:
    lines, key, _ = make_export(13)
    report = _verify(lines, key)
    assert report.ok and report.entries == 13 and report.checkpoint.size == 13
    grown, key2, _ = make_export(9, signed=6)  # entries beyond the checkpoint are fine
    assert _verify(grown, key2).ok


def _entry(line: str) -> dict[str, Any]:
    item: dict[str, Any] = json.loads(line)
    return item


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=2, max_value=20), data=st.data())
def test_every_tampering_of_an_export_is_caught(size: int, data: st.DataObject) -> None:
    lines, key, _ = make_export(size)
    at = data.draw(st.integers(min_value=0, max_value=size - 1))
    kind = data.draw(st.sampled_from(["edit", "edit-fixed", "drop", "swap", "truncate",
                                      "replay", "noncanonical", "other-origin"]))
    item = _entry(lines[at])
    entry = json.loads(base64.b64decode(item["entry_b64"]))
    tampered = list(lines)
    if kind in ("edit", "edit-fixed", "noncanonical", "other-origin"):
        if kind == "noncanonical":
            raw = json.dumps(entry).encode()  # spaces: not RFC 8785
        else:
            entry["action" if kind != "other-origin" else "origin"] = "forged"
            raw = rfc8785.dumps(entry)
        item["entry_b64"] = base64.b64encode(raw).decode()
        if kind != "edit":
            item["leaf_hash"] = base64.b64encode(sluis.leaf_hash(raw)).decode()
        tampered[at] = json.dumps(item)
    elif kind == "drop":
        del tampered[at]
    elif kind == "swap":
        other = (at + 1) % size
        tampered[at], tampered[other] = tampered[other], tampered[at]
    elif kind == "truncate":
        tampered = tampered[:at] + tampered[-1:]
    else:  # an old entry replayed at the end of the log
        tampered.insert(size, lines[at])
    report = _verify(tampered, key)
    assert not report.ok
    if kind in ("edit", "noncanonical", "drop", "other-origin"):
        assert report.first_bad_seq == at
    if kind == "swap":
        assert report.first_bad_seq == min(at, (at + 1) % size)


def test_an_export_signed_by_another_key_or_log_fails() -> None:
    lines, _, _ = make_export(5)
    _, stranger, _ = make_export(1)
    report = _verify(lines, stranger)
    assert not report.ok and "not signed by a trusted key" in report.problems[0][1]
    assert not _verify(lines[:-1], stranger).ok  # no checkpoint at all


def _export_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_offline_verification_from_the_command_line(run_sluis: SluisRunner,
                                                    tmp_path: Path) -> None:
    lines, key, _ = make_export(40)
    env = client_env(tmp_path / "home", "")
    del env["SLUIS_URL"]  # offline: no broker configured at all
    path = _export_file(tmp_path, lines)
    ok = run_sluis(env, "audit", "verify", "--file", str(path), "--key", key)
    assert ok.returncode == 0, ok.stderr
    assert "40 entries" in ok.stdout and "signature ok" in ok.stdout
    item = _entry(lines[17])
    item["leaf_hash"] = base64.b64encode(bytes(32)).decode()
    path = _export_file(tmp_path, [*lines[:17], json.dumps(item), *lines[18:]])
    bad = run_sluis(env, "audit", "verify", "--file", str(path), "--key", key, "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["first_bad_seq"] == 17
    nokey = run_sluis(env, "audit", "verify", "--file", str(path))
    assert nokey.returncode == 2 and "no checkpoint key to verify with" in nokey.stderr


# --- Standing alone ---


def test_the_script_parses_as_python_3_9() -> None:
    source = SCRIPT.read_text()
    ast.parse(source, feature_version=(3, 9))


def test_the_script_imports_only_the_standard_library_at_load() -> None:
    tree = ast.parse(SCRIPT.read_text())
    top: set[str] = set()
    lazy: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            target = top if node.col_offset == 0 else lazy
            target.update(name.split(".")[0] for name in names)
    assert top - {"__future__"} <= sys.stdlib_module_names
    # The one optional package, imported inside the functions that sign with a P-256 key.
    assert lazy - sys.stdlib_module_names == {"cryptography"}


def test_the_script_runs_without_site_packages(tmp_path: Path) -> None:
    """`python -I -S`: no site-packages, no user site, no PYTHONPATH."""
    copy = tmp_path / "sluis.py"
    shutil.copy(SCRIPT, copy)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sluis; "
        "extra = sorted(m.split('.')[0] for m in sys.modules "
        "if m.split('.')[0] not in sys.stdlib_module_names and m not in ('sluis', '__main__')); "
        "print(extra); print(sluis.main(['--version']))"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "[]"


def _python39() -> str | None:
    """A Python 3.9 interpreter, if this machine has one (on PATH, or installed by pyenv)."""
    candidates = [shutil.which("python3.9")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        versions = Path(root.stdout.strip()) / "versions"
        if versions.is_dir():
            candidates += [str(p / "bin" / "python3.9") for p in sorted(versions.glob("3.9*"))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True,
                                        check=False).returncode == 0:
            return candidate
    return None


def test_the_script_runs_on_python_3_9(run_sluis: SluisRunner, tmp_path: Path,
                                       sluis_broker: ServedBroker) -> None:
    python = _python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    env = client_env(tmp_path / "home", "")
    del env["SLUIS_URL"]
    assert run_sluis(env, "--help", python=python).returncode == 0
    lines, key, _ = make_export(9)
    path = _export_file(tmp_path, lines)
    result = run_sluis(env, "audit", "verify", "--file", str(path), "--key", key, python=python)
    assert result.returncode == 0, result.stderr
    online = client_env(tmp_path / "online", sluis_broker.url,
                        sluis_broker.client("Netbeheerder"))
    listed = run_sluis(online, "signals", "list", "--limit", "1", "--json", python=python)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["items"][0]["source"] == "netbeheerder"
    if "/v1/audit/checkpoint" in sluis_broker.paths():
        verified = run_sluis(online, "audit", "verify", python=python)
        assert verified.returncode == 0, verified.stderr
    self_test = subprocess.run(
        [python, "-B", "-I", "-S", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import sluis; "
         "k, m, s = (bytes.fromhex(x) for x in sys.argv[2:5]); "
         "print(sluis.ed25519_verify(k, m, s), sluis.ed25519_verify(k, m + b'x', s))",
         str(SCRIPT.parent), *RFC8032[1]],
        capture_output=True, text=True, check=False,
    )
    assert self_test.stdout.split() == ["True", "False"], self_test.stderr
