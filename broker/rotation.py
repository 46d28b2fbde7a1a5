"""Key rotation as an accountable act: a new key version, the ring reloaded, an audit entry."""

from __future__ import annotations

from broker.actors import Actor
from broker.keys import ROTATABLE, load_key_ring, rotate_key
from broker.runtime import Runtime


def rotate(runtime: Runtime, name: str, *, actor: Actor, request_id: str | None) -> int:
    """Add a version of key `name`, make it active in this process, and audit it."""
    if name not in ROTATABLE:
        raise ValueError(name)
    version = rotate_key(runtime.settings.key_dir, name)
    runtime.keys = load_key_ring(runtime.settings.key_dir)
    runtime.audit.use_keys(runtime.keys)
    draft = {
        "action": "key_rotated",
        "outcome": "granted",
        "reason": None,
        "actor": actor.as_entry(),
        "request_id": request_id,
        "objects": {"key": name, "version": version},
    }
    runtime.audit.record(draft)
    return version
