"""Key rotation as an accountable act, and every broker process following it.

A rotation adds a key file, reloads the ring of the process that rotated and records a
`key_rotated` entry. Other processes (uvicorn workers, and every broker after
`broker keys rotate` on the command line) notice the changed key directory through a
`KeyFollower`, which compares the directory's key files with the live ring's fingerprint
once a second and swaps in the reloaded ring: request paths never touch the disk.
"""

from __future__ import annotations

import logging
from typing import Final

from broker.audit.drafts import draft
from broker.auth.actors import Actor
from broker.follower import Follower
from broker.keys import ROTATABLE, KeyRing, load_key_ring, reload_if_changed, rotate_key
from broker.runtime import Runtime

KEY_FOLLOW_SECONDS: Final = 1.0
_log = logging.getLogger("broker.keys")


def use_ring(runtime: Runtime, ring: KeyRing) -> None:
    """Make `ring` the live key ring: one assignment each for requests and the audit log."""
    runtime.keys = ring
    runtime.audit.use_keys(ring)


def rotate(runtime: Runtime, name: str, *, actor: Actor, request_id: str | None) -> int:
    """Add a version of key `name`, make it active in this process, and audit it."""
    if name not in ROTATABLE:
        raise ValueError(name)
    version = rotate_key(runtime.settings.key_dir, name)
    use_ring(runtime, load_key_ring(runtime.settings.key_dir))
    runtime.audit.record(draft("key_rotated", actor, request_id=request_id,
                               objects={"key": name, "version": version}))
    return version


def follow_keys(runtime: Runtime) -> bool:
    """Reload the key ring if the key directory changed since it was loaded; True if so.

    A directory that does not load (a key file damaged by hand) leaves the live ring in
    place and raises StartupError; the next check tries again."""
    ring = reload_if_changed(runtime.keys, runtime.settings.key_dir)
    if ring is None:
        return False
    use_ring(runtime, ring)
    _log.info("key ring reloaded", extra={"event": "keys_reloaded"})
    return True


class KeyFollower(Follower):
    """Keeps a broker process on the key directory's current ring (a rotation elsewhere
    reaches it within `interval` seconds)."""

    name = "key-follower"

    def __init__(self, runtime: Runtime, interval: float = KEY_FOLLOW_SECONDS) -> None:
        super().__init__(interval)
        self._runtime = runtime
        self._complained = False

    def step(self) -> None:
        follow_keys(self._runtime)
        self._complained = False

    def trouble(self, error: Exception) -> None:
        if not self._complained:  # once per trouble, not once a second
            _log.warning("the key directory does not load; the live key ring stays",
                         extra={"event": "keys_not_reloaded",
                                "error_type": type(error).__name__})
        self._complained = True
