"""The key ring in the database, wrapped under the key-encryption key every node holds.

Every version of every key is a `key_version` row: its material wrapped (AES-256-GCM,
bound to the key's name and version) under a key-encryption key (KEK). The KEKs live in
one owner-only file on each node (`BROKER_KEK_FILE`, by default `kek` in the key folder):
one base64 line per KEK, the newest first, which is the one in force. A second node needs
the database URL and a copy of that file, nothing else. A rotation inserts a version
wrapped under every KEK of the file and every node loads it within seconds (`marker`
changes, the key follower reloads). `rotate_kek` adds a KEK and wraps every version under
it too; `retire_kek` then destroys the older KEKs and, with them, every key version only
they could read (see docs/operations.md for the routine and what it means for backups).
Nothing here logs or prints key material.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Engine, delete, func, select

from broker.clock import utcnow
from broker.db import write_transaction
from broker.errors import StartupError
from broker.keys import (
    ASYMMETRIC,
    KEY_BYTES,
    ROTATABLE,
    SYMMETRIC,
    CheckpointKey,
    Fingerprint,
    KeyRing,
    SigningKey,
    SymmetricKey,
    folder_holds_keys,
    jwk_thumbprint,
    load_key_ring,
)
from broker.models import key_version as KEYS
from broker.settings import Settings

KEK_BYTES: Final = 32
_NONCE: Final = 12
_WRAP_CONTEXT: Final = b"sluis/key-version/v1\x00"
_KEK_ID_CONTEXT: Final = b"sluis/kek-id/v1\x00"

_log = logging.getLogger("broker.keys")

Marker = tuple[int, int]
"""What changes when the ring in the database changes: (rows, highest version)."""


@dataclass(frozen=True, slots=True)
class Kek:
    """One key-encryption key: its id (a hash, safe to store and print) and its bytes."""

    id: str
    material: bytes

    @classmethod
    def of(cls, material: bytes) -> Kek:
        digest = hashlib.sha256(_KEK_ID_CONTEXT + material).hexdigest()
        return cls(digest[:16], material)


def symmetric_key(name: str, version: int, material: bytes) -> SymmetricKey:
    """A symmetric key version from its raw bytes; StartupError when too short."""
    if len(material) < KEY_BYTES:
        raise StartupError(f"key {name} v{version} holds {len(material)} bytes; at least "
                           f"{KEY_BYTES} are required")
    return SymmetricKey(name, version, material)


def private_key_from_der(name: str, version: int, der: bytes) -> SigningKey | CheckpointKey:
    """A signing or checkpoint key version from its PKCS #8 DER bytes."""
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as exc:
        raise StartupError(f"key {name} v{version} is not a private key") from exc
    if name == "signing":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise StartupError(f"signing key v{version} is not an EC P-256 key")
        return SigningKey(version, jwk_thumbprint(key.public_key()), key)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise StartupError(f"checkpoint key v{version} is not an Ed25519 key")
    return CheckpointKey(version, key)


def new_key_material(name: str) -> bytes:
    """Fresh material for a key of `name`: raw bytes, or PKCS #8 DER for the private keys."""
    if name in SYMMETRIC:
        return secrets.token_bytes(KEY_BYTES)
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if name == "signing"
        else ed25519.Ed25519PrivateKey.generate())
    return private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def ring_material(ring: KeyRing) -> dict[tuple[str, int], bytes]:
    """Every version of a ring as (name, version) -> material, as `new_key_material` makes it."""
    found: dict[tuple[str, int], bytes] = {}
    for name, versions in ring.symmetric.items():
        for version, key in versions.items():
            found[(name, version)] = key.material
    private: list[tuple[str, int, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey]] = [
        ("signing", v, k.private_key) for v, k in ring.signing.items()]
    private += [("checkpoint", v, k.private_key) for v, k in ring.checkpoint.items()]
    for name, version, secret in private:
        found[(name, version)] = secret.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
    return found


def ring_from_material(material: Mapping[tuple[str, int], bytes],
                       fingerprint: Fingerprint = ()) -> KeyRing:
    """A ring from (name, version) -> material; StartupError when a key is missing."""
    symmetric: dict[str, dict[int, SymmetricKey]] = {name: {} for name in SYMMETRIC}
    signing: dict[int, SigningKey] = {}
    checkpoint: dict[int, CheckpointKey] = {}
    for (name, version), raw in sorted(material.items()):
        if name in SYMMETRIC:
            symmetric[name][version] = symmetric_key(name, version, raw)
        elif name == "signing":
            signing[version] = private_key_from_der(name, version, raw)  # type: ignore[assignment]
        elif name == "checkpoint":
            checkpoint[version] = private_key_from_der(name, version, raw)  # type: ignore[assignment]
    for name in SYMMETRIC:
        if not symmetric[name]:
            raise StartupError(f"key {name!r} is missing from the key ring; run `broker init`")
    for name, versions in (("signing", signing), ("checkpoint", checkpoint)):
        if not versions:
            raise StartupError(f"key {name!r} is missing from the key ring; run `broker init`")
    return KeyRing(symmetric=symmetric, signing=signing, checkpoint=checkpoint,
                   fingerprint=fingerprint)


def kek_path(settings: Settings) -> Path:
    """Where this node's KEK file is."""
    return settings.kek_file or Path(settings.key_dir) / "kek"


def read_keks(path: Path) -> tuple[Kek, ...]:
    """The KEKs of the file, the one in force first; StartupError when the file is
    missing, readable by others, malformed or holds a short key."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise StartupError(f"the key-encryption key file {path} is missing; run `broker "
                           "init`, or copy it from another node of this deployment") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupError(f"the key-encryption key file {path} is readable by others (mode "
                           f"{stat.S_IMODE(mode):o}); it must be its owner's only (chmod 600)")
    keks = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            material = base64.b64decode(line.strip(), validate=True)
        except (ValueError, binascii.Error):
            raise StartupError(f"line {number} of {path} is not base64") from None
        if len(material) < KEK_BYTES:
            raise StartupError(f"line {number} of {path} holds {len(material)} bytes; at "
                               f"least {KEK_BYTES} are required")
        keks.append(Kek.of(material))
    if not keks:
        raise StartupError(f"the key-encryption key file {path} is empty")
    return tuple(keks)


def write_keks(path: Path, keks: Sequence[Kek]) -> None:
    """Replace the file with `keks` (owner-only, written whole, then synced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"".join(base64.b64encode(k.material) + b"\n" for k in keks))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def ensure_kek_file(path: Path) -> bool:
    """Create the KEK file with one new KEK when absent (True); check it when present."""
    if path.exists():
        read_keks(path)
        return False
    write_keks(path, [Kek.of(secrets.token_bytes(KEK_BYTES))])
    return True


def _aad(name: str, version: int) -> bytes:
    return _WRAP_CONTEXT + f"{name}.v{version}".encode()


def _wrap(kek: Kek, name: str, version: int, material: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(kek.material).encrypt(nonce, material, _aad(name, version))


def _unwrap(kek: Kek, name: str, version: int, wrapped: bytes) -> bytes | None:
    try:
        return AESGCM(kek.material).decrypt(wrapped[:_NONCE], wrapped[_NONCE:],
                                            _aad(name, version))
    except (InvalidTag, ValueError):
        return None


def _insert(conn: Connection, keks: Sequence[Kek], name: str, version: int,
            material: bytes) -> None:
    now = utcnow()
    conn.execute(KEYS.insert(), [
        {"name": name, "version": version, "kek_id": kek.id,
         "wrapped": _wrap(kek, name, version, material), "created_at": now}
        for kek in keks])


def marker(conn: Connection) -> Marker:
    """(rows, highest version) of the ring in the database: a rotation, a KEK rotation or
    retirement changes it."""
    rows, highest = conn.execute(
        select(func.count(), func.coalesce(func.max(KEYS.c.version), 0)).select_from(KEYS)
    ).one()
    return int(rows), int(highest)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A ring as this node reads it, the versions it could not unwrap, and the marker."""

    ring: KeyRing
    unreadable: tuple[str, ...]
    marker: Marker


def load(engine: Engine, keks: Sequence[Kek]) -> Loaded:
    """The ring of the database, each version unwrapped with one of `keks`. A version
    none of them unwraps is named in `unreadable` (and logged): never silently absent."""
    by_id = {kek.id: kek for kek in keks}
    with engine.connect() as conn:
        rows = conn.execute(select(KEYS.c.name, KEYS.c.version, KEYS.c.kek_id,
                                   KEYS.c.wrapped)).all()
        mark = marker(conn)
    material: dict[tuple[str, int], bytes] = {}
    seen: set[tuple[str, int]] = set()
    for name, version, kek_id, wrapped in rows:
        seen.add((name, version))
        kek = by_id.get(kek_id)
        if kek is not None and (name, version) not in material:
            plain = _unwrap(kek, name, version, bytes(wrapped))
            if plain is not None:
                material[(name, version)] = plain
    unreadable = tuple(sorted(f"{n}.v{v}" for n, v in seen - set(material)))
    if unreadable:
        _log.error("key versions this node cannot unwrap: is its key-encryption key file "
                   "current?", extra={"event": "keys_unreadable", "keys": list(unreadable)})
    ring = dataclasses.replace(ring_from_material(material), marker=mark, unreadable=unreadable)
    return Loaded(ring, unreadable, mark)


def is_empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return marker(conn)[0] == 0


def store_new_ring(engine: Engine, keks: Sequence[Kek], folder: Path) -> list[str]:
    """On a database without a ring: import the folder's ring when it holds one (a ring
    kept in a folder before), else create version 1 of every key. Returns the names
    created (none when imported)."""
    imported = load_key_ring(folder) if folder_holds_keys(folder) else None
    material = (ring_material(imported) if imported is not None else
                {(name, 1): new_key_material(name) for name in SYMMETRIC + ASYMMETRIC})
    with write_transaction(engine) as conn:
        if marker(conn)[0]:
            return []  # another process stored one meanwhile
        for (name, version), raw in sorted(material.items()):
            _insert(conn, keks, name, version, raw)
    return [] if imported is not None else list(SYMMETRIC + ASYMMETRIC)


def open_ring(engine: Engine, settings: Settings) -> Loaded:
    """This node's view of the database's ring; a database without one imports the key
    directory's folder ring (creating the KEK file when absent). StartupError when there
    is no ring to open, when the KEK file is missing or exposed, or when no version of
    some key can be unwrapped."""
    path = kek_path(settings)
    if is_empty(engine):
        folder = Path(settings.key_dir)
        if not folder_holds_keys(folder):
            raise StartupError(f"the database holds no key ring, and the key directory "
                               f"{folder} holds none to import; run `broker init`")
        ensure_kek_file(path)
        store_new_ring(engine, read_keks(path), folder)
    return load(engine, read_keks(path))


def add_version(engine: Engine, keks: Sequence[Kek], name: str) -> int:
    """A new version of key `name`, wrapped under every KEK of this node; its number."""
    if name not in ROTATABLE:
        raise ValueError(f"key {name!r} cannot be rotated; rotatable: {', '.join(ROTATABLE)}")
    material = new_key_material(name)
    with write_transaction(engine) as conn:
        newest = conn.execute(select(func.max(KEYS.c.version)).where(KEYS.c.name == name)
                              ).scalar()
        if newest is None:
            raise StartupError(f"key {name!r} is missing; run `broker init`")
        version = int(newest) + 1
        _insert(conn, keks, name, version, material)
    return version


def rotate_kek(engine: Engine, path: Path) -> str:
    """Add a KEK: every version is wrapped under it as well, and it comes first in the file
    (in force). Returns its id. Copy the file to every node, then `retire_kek`."""
    keks = read_keks(path)
    loaded = load(engine, keks)
    if loaded.unreadable:
        raise StartupError("some key versions cannot be unwrapped here; rotate the "
                           "key-encryption key on a node that reads them all")
    new = Kek.of(secrets.token_bytes(KEK_BYTES))
    with write_transaction(engine) as conn:
        for (name, version), raw in sorted(ring_material(loaded.ring).items()):
            _insert(conn, [new], name, version, raw)
    write_keks(path, [new, *keks])
    return new.id


def retire(conn: Connection, keep: Kek, master_versions: Sequence[int]) -> int:
    """In the caller's transaction: delete every wrap under another KEK than `keep`, and
    every master key version of `master_versions`; returns the rows deleted. ValueError,
    with nothing deleted, when a version has no wrap under `keep` (a node with an older
    KEK file added it): it would be lost."""
    under_keep = select(KEYS.c.name, KEYS.c.version).where(KEYS.c.kek_id == keep.id)
    every = select(KEYS.c.name, KEYS.c.version).distinct()
    missing = conn.execute(every.except_(under_keep)).all()
    if missing:
        names = ", ".join(sorted(f"{n}.v{v}" for n, v in missing))
        raise ValueError(f"key versions not wrapped under the key-encryption key in force: "
                         f"{names}; run `broker keys rotate-kek` again on a node with the "
                         "current file")
    gone = conn.execute(delete(KEYS).where(KEYS.c.kek_id != keep.id)).rowcount
    if master_versions:
        gone += conn.execute(delete(KEYS).where(KEYS.c.name == "master",
                                                KEYS.c.version.in_(master_versions))).rowcount
    return int(gone)
