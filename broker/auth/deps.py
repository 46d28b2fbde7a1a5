"""FastAPI dependencies that turn a bearer token into a `Caller`, and role checks.

The token is read from the `Authorization: Bearer` header only; a token in
the query string or a cookie is never looked at (ASVS 14.2.1). Every request
re-reads its client by primary key, so a revoked client or an organisation
dropped from the live pack is refused on the next call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from broker.auth import clients, tokens
from broker.errors import BadRequest, Forbidden, Unauthorized
from broker.runtime import Runtime

ACTING_USER_HEADER: Final = "x-acting-user"
ACTING_USER_PATTERN: Final = r"^[A-Za-z0-9._@-]{1,64}$"
_ACTING_USER = re.compile(ACTING_USER_PATTERN)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated client of a request and the person acting through it."""

    client_id: str
    org: str
    roles: frozenset[str]
    kind: str  # "system" | "personal"
    acting_user: str | None
    token_id: str

    def has_any(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


def bearer_token(request: Request) -> str:
    """The bearer token of the `Authorization` header; 401 when absent or not exactly one."""
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        raise Unauthorized("A bearer token is required.")
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise Unauthorized("A bearer token is required.")
    return token.strip()


def _acting_user(request: Request, status: clients.ClientStatus) -> str | None:
    """The person acting: the header's for a system client; a personal client is the
    person (its own client id), and naming anyone else is 403, since its acts would be
    recorded as another person's."""
    values = request.headers.getlist(ACTING_USER_HEADER)
    if len(values) > 1:
        raise BadRequest("Send X-Acting-User once.")
    if values and not _ACTING_USER.match(values[0]):
        raise BadRequest("X-Acting-User must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -.")
    if status.kind == "personal":
        if values and values[0] != status.id:
            raise Forbidden("A personal client acts as itself: leave out X-Acting-User.")
        return status.id
    return values[0] if values else None


async def authenticated(request: Request) -> Caller:
    """Any valid access token of an active client of a live organisation (else 401).

    On the event loop: the signature check is CPU work of some 75 µs (and is not repeated
    for a token already verified), and the client's status is one primary-key read, local
    on SQLite (a thread-pool round trip would cost more) and in the thread pool on
    PostgreSQL, where it waits on the network. It takes the runtime from the request
    rather than from a dependency of its own: each level of dependencies costs FastAPI
    more than the work here, on every authenticated request.
    """
    runtime: Runtime = request.app.state.runtime
    claims = tokens.verify_access_token(bearer_token(request), runtime.keys, runtime.settings)
    if runtime.local_reads:
        status = clients.client_status(runtime.engine, claims.client_id)
    else:
        status = await run_in_threadpool(clients.client_status, runtime.engine, claims.client_id)
    if (
        status is None
        or status.revoked
        or status.org != claims.org
        or status.org not in runtime.policy.pack.organisations
    ):
        raise Unauthorized("The access token is not valid.")
    request.state.client_id = status.id
    return Caller(
        client_id=status.id,
        org=status.org,
        # A token never grants more than the client holds now, nor more than it was issued with.
        roles=status.roles & claims.roles,
        kind=status.kind,
        acting_user=_acting_user(request, status),
        token_id=claims.token_id,
    )


CallerDep = Annotated[Caller, Depends(authenticated)]


def _check_roles(roles: tuple[str, ...]) -> frozenset[str]:
    if not roles or not set(roles) <= clients.ROLES:
        raise ValueError(f"require() needs roles among {sorted(clients.ROLES)}")
    return frozenset(roles)


def _forbid_unless(caller: Caller, allowed: frozenset[str]) -> None:
    if caller.roles.isdisjoint(allowed):
        raise Forbidden("This client does not hold a role this operation needs.")


# The role checks below are `async def` on purpose (FastAPI would otherwise send each
# through the thread pool), and call `authenticated` themselves rather than depend on it:
# one level of dependencies instead of two.

def require(*roles: str) -> Callable[[Request], Coroutine[Any, Any, Caller]]:
    """A dependency: the caller, if it holds at least one of `roles` (else 403)."""
    allowed = _check_roles(roles)

    async def dependency(request: Request) -> Caller:
        caller = await authenticated(request)
        _forbid_unless(caller, allowed)
        return caller

    return dependency


def require_acting(*roles: str) -> Callable[[Request], Coroutine[Any, Any, Caller]]:
    """Like `require`, and a system client must name the acting person (else 400)."""
    allowed = _check_roles(roles)

    async def dependency(request: Request) -> Caller:
        caller = await authenticated(request)
        _forbid_unless(caller, allowed)
        if caller.acting_user is None:
            raise BadRequest("System clients must name the acting person in X-Acting-User.")
        return caller

    return dependency
