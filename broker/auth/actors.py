"""Who performs an act, as the audit log records it: never a person's name or id in clear.

The acting person appears only as a keyed tag (HMAC under the audit-tag key),
so the privacy officer can match acts of one person without the log holding
who that person is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Protocol

from broker.keys import KeyRing

_TAGS_KEPT: Final = 4096
"""Acting-user tags kept per process (each request of a known person reuses its tag)."""


@dataclass(frozen=True, slots=True)
class Actor:
    client: str | None
    org: str | None
    roles: tuple[str, ...]
    acting_user_tag: str | None
    label: str

    def as_entry(self) -> dict[str, object]:
        return {
            "client": self.client,
            "org": self.org,
            "roles": list(self.roles),
            "acting_user_tag": self.acting_user_tag,
        }


def person_tag(keys: KeyRing, org: str, acting_user: str) -> str:
    """The keyed tag of one person of one organisation.

    The organisation is part of the input: `emp-42` of the gemeente and `emp-42` of the
    police are different people, and their tags must not link their acts."""
    key = keys.active("audit_tag")
    return _tag(key.version, key.material, org, acting_user)


@lru_cache(maxsize=_TAGS_KEPT)
def _tag(version: int, material: bytes, org: str, acting_user: str) -> str:
    """`person_tag` under one version of the audit-tag key; kept by key version and
    material, so a rotated or reloaded key never meets a tag made under another."""
    message = b"acting-user\x1f" + org.encode() + b"\x1f" + acting_user.encode()
    digest = hmac.digest(material, message, hashlib.sha256)
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def client_actor(
    keys: KeyRing,
    *,
    client_id: str,
    org: str,
    roles: frozenset[str] | tuple[str, ...],
    acting_user: str | None,
) -> Actor:
    """The actor of a request made with a client's token."""
    return Actor(
        client=client_id,
        org=org,
        roles=tuple(sorted(roles)),
        acting_user_tag=person_tag(keys, org, acting_user) if acting_user else None,
        label=client_id,
    )


def system_actor(what: str) -> Actor:
    """The broker itself or its administrator's command line (`what` says which)."""
    return Actor(client=None, org=None, roles=(), acting_user_tag=None, label=f"system:{what}")


class Principal(Protocol):
    """What an authenticated caller tells about itself."""

    @property
    def client_id(self) -> str: ...
    @property
    def org(self) -> str: ...
    @property
    def roles(self) -> Set[str]: ...
    @property
    def acting_user(self) -> str | None: ...


def actor_of(keys: KeyRing, caller: Principal) -> Actor:
    """The actor of a request made by an authenticated caller."""
    return client_actor(
        keys,
        client_id=caller.client_id,
        org=caller.org,
        roles=tuple(caller.roles),
        acting_user=caller.acting_user,
    )
