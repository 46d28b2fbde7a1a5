"""The witness's private key: one owner-only file in its owner-only state folder.

The file holds the cosigner key string of `broker.core.cosignature`; `broker witness init`
writes it once and never overwrites it, `broker witness serve` refuses it if another local
user could read it (as ssh refuses a readable identity file).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.core.checkpoint import CheckpointInvalid, is_valid_key_name, public_key_bytes
from broker.core.cosignature import (
    Cosigner,
    cosigner_private_key,
    parse_cosigner_private_key,
)
from broker.errors import StartupError

KEY_FILE = "witness.key"
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def key_path(folder: Path) -> Path:
    return folder / KEY_FILE


def create_key(folder: Path, name: str) -> Cosigner:
    """Make `folder` (mode 700) and a new witness key in it; refuse if one is there."""
    if not is_valid_key_name(name):
        raise StartupError(f"witness name {name!r} must be non-empty, without spaces or '+'")
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if not folder.is_dir():
        raise StartupError(f"{folder} is not a folder")
    check_folder(folder)
    private_key = Ed25519PrivateKey.generate()
    text = cosigner_private_key(name, private_key) + "\n"
    try:
        fd = os.open(key_path(folder), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        raise StartupError(f"{key_path(folder)} exists: a witness keeps its key") from None
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    return Cosigner.from_public_key(name, public_key_bytes(private_key))


def check_folder(folder: Path) -> None:
    """Refuse a state folder that other local users may enter (rather than change its mode)."""
    if stat.S_IMODE(folder.stat().st_mode) & ~FOLDER_MODE:
        raise StartupError(f"{folder} is open to others: chmod 700 it")


def load_key(folder: Path) -> tuple[str, Ed25519PrivateKey]:
    """The witness's name and private key; refused if missing, malformed or not owner-only."""
    path = key_path(folder)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise StartupError(f"no witness key at {path}: run `broker witness init`") from None
    if stat.S_IMODE(mode) & 0o077:
        raise StartupError(f"{path} is readable by others: chmod 600 it")
    try:
        return parse_cosigner_private_key(path.read_text(encoding="ascii").strip())
    except (CheckpointInvalid, UnicodeDecodeError) as exc:
        raise StartupError(f"{path} does not hold a witness key: {exc}") from None
