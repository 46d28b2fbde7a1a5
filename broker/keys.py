"""The key ring: every secret the broker holds, loaded at start and again after a rotation.

Keys live as files in one directory (`BROKER_KEY_DIR`), one file per key
version, readable by the owner only: `<name>.v<N>.key` (32 random bytes,
base64) for symmetric keys, PEM for the token-signing (ES256) and
checkpoint-signing (Ed25519) keys. Rotation adds a version; old versions
stay so that what they protected can still be read or verified. Nothing in
this module logs or prints key material.

A ring remembers the `fingerprint` of the files it was loaded from (names,
sizes, modification times: one `stat` each, no reads), so a process can tell
that another one rotated a key (`reload_if_changed`) and load the new ring.
A new key file appears whole (written under a temporary name, then linked
into place), so a ring is never loaded from half a key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from broker.errors import StartupError

SYMMETRIC: Final = ("master", "pseudonym", "blind_index", "audit_tag")
ASYMMETRIC: Final = ("signing", "checkpoint")
ROTATABLE: Final = ("pseudonym", "signing", "checkpoint", "master")
KEY_BYTES: Final = 32
# Token verification accepts the active signing key and the one before it, so
# tokens issued just before a rotation keep working until they expire.
SIGNING_VERSIONS_ACCEPTED: Final = 2
_KEY_FILE: Final = re.compile(
    r"^(?:" + "|".join(SYMMETRIC) + r")\.v[0-9]+\.key$|^(?:" + "|".join(ASYMMETRIC)
    + r")\.v[0-9]+\.pem$"
)
_PARTIAL_PREFIX: Final = ".partial-"

Fingerprint = tuple[tuple[str, int, int], ...]
"""(file name, size, modification time in ns) of every key file, sorted by name."""


@dataclass(frozen=True, slots=True)
class SymmetricKey:
    """One version of a symmetric key."""

    name: str
    version: int
    material: bytes = field(repr=False)

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One version of the ES256 token-signing key, with its JWK `kid`."""

    version: int
    kid: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True, slots=True)
class CheckpointKey:
    """One version of the Ed25519 checkpoint-signing key."""

    version: int
    private_key: ed25519.Ed25519PrivateKey = field(repr=False)

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


@dataclass(frozen=True)
class KeyRing:
    """All key versions by name; the highest version of each is the active one.

    Immutable: a rotation builds a new ring, which callers swap in whole (so a request
    that took a ring finishes on it, and caches keyed on the ring start afresh)."""

    symmetric: Mapping[str, Mapping[int, SymmetricKey]]
    signing: Mapping[int, SigningKey]
    checkpoint: Mapping[int, CheckpointKey]
    fingerprint: Fingerprint = field(default=(), compare=False, repr=False)
    marker: tuple[int, int] = field(default=(0, 0), compare=False, repr=False)
    """For a ring from the database: its (rows, highest version) when it was loaded."""
    unreadable: tuple[str, ...] = field(default=(), compare=False)
    """Versions in the database this node could not unwrap (`name.vN`): not ready."""

    def active(self, name: str) -> SymmetricKey:
        """The active (newest) version of a symmetric key."""
        versions = self.symmetric[name]
        return versions[max(versions)]

    def version(self, name: str, version: int) -> SymmetricKey:
        """A given version of a symmetric key; KeyError when it does not exist."""
        return self.symmetric[name][version]

    @property
    def active_signing(self) -> SigningKey:
        return self.signing[max(self.signing)]

    @property
    def active_checkpoint(self) -> CheckpointKey:
        return self.checkpoint[max(self.checkpoint)]

    def verification_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """Public token keys accepted now, by `kid` (active and previous version)."""
        newest = sorted(self.signing, reverse=True)[:SIGNING_VERSIONS_ACCEPTED]
        return {self.signing[v].kid: self.signing[v].public_key for v in newest}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set of the accepted token keys (RFC 7517)."""
        return {"keys": [public_jwk(kid, key) for kid, key in self.verification_keys().items()]}

    def describe(self) -> dict[str, list[int]]:
        """Key names and versions only, for status output; never material."""
        names: dict[str, list[int]] = {n: sorted(v) for n, v in self.symmetric.items()}
        names["signing"] = sorted(self.signing)
        names["checkpoint"] = sorted(self.checkpoint)
        return names


def _b64url_uint(value: int, length: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def public_jwk(kid: str, key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """An EC P-256 public key as a JWK with `kid`, `use` and `alg`."""
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url_uint(numbers.x, 32),
        "y": _b64url_uint(numbers.y, 32),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    }


def jwk_thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of an EC public key, base64url."""
    numbers = key.public_numbers()
    x, y = _b64url_uint(numbers.x, 32), _b64url_uint(numbers.y, 32)
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'.encode()
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _key_path(directory: Path, name: str, version: int) -> Path:
    suffix = "pem" if name in ASYMMETRIC else "key"
    return directory / f"{name}.v{version}.{suffix}"


def _versions(directory: Path, name: str) -> list[int]:
    found: list[int] = []
    for path in directory.glob(f"{name}.v*.*"):
        middle = path.name[len(name) + 2 :].split(".", 1)[0]
        if middle.isdigit():
            found.append(int(middle))
    return sorted(found)


def _write_private(path: Path, data: bytes) -> None:
    """Create a file readable by the owner only, refusing to overwrite (FileExistsError).

    The data is written and synced under a temporary name and then hard-linked into place,
    so a process watching the directory sees the file whole or not at all."""
    partial = path.with_name(f"{_PARTIAL_PREFIX}{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(partial, path)  # unlike rename, never replaces an existing file
    finally:
        partial.unlink(missing_ok=True)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_key_bytes(name: str) -> bytes:
    if name == "signing":
        private = ec.generate_private_key(ec.SECP256R1())
    elif name == "checkpoint":
        private = ed25519.Ed25519PrivateKey.generate()  # type: ignore[assignment]
    else:
        return base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def create_key_ring(directory: Path) -> list[str]:
    """Create every key that is absent (version 1); return the names created."""
    _prepare_dir(directory)
    created = []
    for name in SYMMETRIC + ASYMMETRIC:
        if not _versions(directory, name):
            _write_private(_key_path(directory, name, 1), _new_key_bytes(name))
            created.append(name)
    return created


def rotate_key(directory: Path, name: str) -> int:
    """Add a new version of a rotatable key; return its version number."""
    if name not in ROTATABLE:
        raise ValueError(f"key {name!r} cannot be rotated; rotatable: {', '.join(ROTATABLE)}")
    material = _new_key_bytes(name)
    while True:
        versions = _versions(directory, name)
        if not versions:
            raise StartupError(f"key {name!r} is missing; run `broker init`")
        new = versions[-1] + 1
        try:
            _write_private(_key_path(directory, name, new), material)
        except FileExistsError:  # another process rotated the same key just now
            continue
        return new


def _read_private(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupError(
            f"key file {path.name} is readable by others (mode {stat.S_IMODE(mode):o}); "
            "it must be readable by its owner only (chmod 600)"
        )
    return path.read_bytes()


def _load_symmetric(directory: Path, name: str, version: int) -> SymmetricKey:
    path = _key_path(directory, name, version)
    raw = _read_private(path)
    try:
        material = base64.b64decode(raw.strip(), validate=True)
    except ValueError as exc:
        raise StartupError(f"key file {path.name} is not base64") from exc
    if len(material) < KEY_BYTES:
        raise StartupError(
            f"key file {path.name} holds {len(material)} bytes; at least {KEY_BYTES} are required"
        )
    return SymmetricKey(name, version, material)


def _load_pem(directory: Path, name: str, version: int) -> object:
    path = _key_path(directory, name, version)
    raw = _read_private(path)
    try:
        return serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise StartupError(f"key file {path.name} is not a PEM private key") from exc


def _load_signing(directory: Path, version: int) -> SigningKey:
    key = _load_pem(directory, "signing", version)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise StartupError(f"signing key v{version} is not an EC P-256 key")
    return SigningKey(version, jwk_thumbprint(key.public_key()), key)


def _load_checkpoint(directory: Path, version: int) -> CheckpointKey:
    key = _load_pem(directory, "checkpoint", version)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise StartupError(f"checkpoint key v{version} is not an Ed25519 key")
    return CheckpointKey(version, key)


def folder_holds_keys(directory: Path) -> bool:
    """Whether `directory` holds key files of a ring kept in a folder."""
    return directory.is_dir() and bool(key_files_fingerprint(directory))


def remove_key_files(directory: Path) -> int:
    """Delete a folder ring's key files (once imported); returns how many."""
    removed = 0
    for name, _, _ in key_files_fingerprint(directory):
        (directory / name).unlink()
        removed += 1
    if removed:
        _sync_dir(directory)
    return removed


def key_files_fingerprint(directory: Path) -> Fingerprint:
    """The names, sizes and modification times of the key files in `directory`.

    What changes when a key is added (or a file replaced by hand); one `stat` per key
    file and nothing read, so checking it once a second costs next to nothing. Other
    files of the directory (the checkpoint signer's state) are left out."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if _KEY_FILE.match(entry.name):
                info = entry.stat()
                found.append((entry.name, info.st_size, info.st_mtime_ns))
    return tuple(sorted(found))


def reload_if_changed(ring: KeyRing, directory: Path) -> KeyRing | None:
    """A new ring when the key files differ from those `ring` was loaded from, else None.

    Raises StartupError (as `load_key_ring`) when the changed directory does not load."""
    if key_files_fingerprint(directory) == ring.fingerprint:
        return None
    return load_key_ring(directory)


def load_key_ring(directory: Path) -> KeyRing:
    """Load and check every key; refuse (StartupError) a missing, short or exposed key."""
    if not directory.is_dir():
        raise StartupError(f"key directory {directory} does not exist; run `broker init`")
    # Taken before reading: a file added meanwhile makes the next check load again.
    fingerprint = key_files_fingerprint(directory)
    symmetric: dict[str, dict[int, SymmetricKey]] = {}
    for name in SYMMETRIC:
        versions = _versions(directory, name)
        if not versions:
            raise StartupError(f"key {name!r} is missing from the key ring; run `broker init`")
        symmetric[name] = {v: _load_symmetric(directory, name, v) for v in versions}
    signing_versions = _versions(directory, "signing")
    checkpoint_versions = _versions(directory, "checkpoint")
    if not signing_versions:
        raise StartupError("key 'signing' is missing from the key ring; run `broker init`")
    if not checkpoint_versions:
        raise StartupError("key 'checkpoint' is missing from the key ring; run `broker init`")
    return KeyRing(
        symmetric=symmetric,
        signing={v: _load_signing(directory, v) for v in signing_versions},
        checkpoint={v: _load_checkpoint(directory, v) for v in checkpoint_versions},
        fingerprint=fingerprint,
    )
