"""Domain errors: each carries an HTTP status and a stable machine code.

Services raise these; one handler in `broker.api.problems` turns them into
RFC 9457 problem details. Messages never contain submitted values, tokens,
keys or personal data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One located validation problem: where (`loc`) and what (`msg`), never the value."""

    loc: tuple[str | int, ...]
    msg: str

    def as_dict(self) -> dict[str, object]:
        return {"loc": list(self.loc), "msg": self.msg}


class BrokerError(Exception):
    """Base of every error a service may raise towards a caller."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"
    # Locations may name submitted keys (a BSN used as a key): mask odd segments.
    loc_from_input: bool = True

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class BadRequest(BrokerError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class Unauthorized(BrokerError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidClient(BrokerError):
    """RFC 6749 section 5.2 `invalid_client` at the token endpoint."""

    status = 401
    code = "invalid_client"
    title = "Invalid client"


class Forbidden(BrokerError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(BrokerError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(BrokerError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(BrokerError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class ValidationFailed(BrokerError):
    status = 422
    code = "validation_failed"
    title = "Validation failed"


class PolicyRefused(BrokerError):
    """A request the policy does not allow at all (no rule names the caller)."""

    status = 403
    code = "policy_refused"
    title = "Not allowed by policy"


class PackInvalid(BrokerError):
    """A policy pack that does not load; `errors` name file and entry."""

    status = 422
    code = "policy_pack_invalid"
    title = "Policy pack invalid"
    loc_from_input = False


class HeaderTooLarge(BrokerError):
    status = 431
    code = "header_too_large"
    title = "Request header fields too large"


class RateLimited(BrokerError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class AuditUnavailable(BrokerError):
    """The audit log could not record the act: fail closed, release nothing."""

    status = 503
    code = "audit_unavailable"
    title = "Audit log unavailable"


class ServiceUnavailable(BrokerError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class StartupError(Exception):
    """The broker refuses to start (missing or weak key, database not at head, bad pack)."""
