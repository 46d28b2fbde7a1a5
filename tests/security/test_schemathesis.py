"""schemathesis against the app's own `/openapi.json`, authenticated (rows 21, 30-32, 34).

Every operation gets positive and negative cases, sent with a token of a client that
may call it (and `X-Acting-User`), through the checks `not_a_server_error`,
`negative_data_rejection` (negative cases) and `ignored_auth` (valid cases); then
schemathesis's state machine follows the links it infers between operations (create a
signal, then read or retract it). Every
answer also passes the suite's leak check. Bounded for CI: `BROKER_SCHEMATHESIS_EXAMPLES`
cases per operation and mode (default 10), derandomised so a failure replays.

The document is used as served: it declares the bearer scheme on protected operations
(which `ignored_auth` needs) and the optional `X-Acting-User` header where a system
client must name the acting person, so schemathesis also tries that header.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection

from tests.security.conftest import Exchange, first_role

Headers = Callable[..., dict[str, str]]
EXAMPLES = int(os.environ.get("BROKER_SCHEMATHESIS_EXAMPLES", "10"))
CHECKS = {
    GenerationMode.POSITIVE: [not_a_server_error, ignored_auth],
    GenerationMode.NEGATIVE: [not_a_server_error, negative_data_rejection],
}
STATEFUL_CHECKS = [not_a_server_error, ignored_auth]
SKIPPED = {("POST", "/v1/admin/keys/rotate")}
"""Rotating keys mid-run changes what every later case is checked against; rotation has
its own tests (row 14)."""


def settings(examples: int) -> hypothesis.settings:
    phases = [Phase.explicit, Phase.generate]
    if os.environ.get("BROKER_SCHEMATHESIS_SHRINK"):
        phases.append(Phase.shrink)
    return hypothesis.settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        phases=phases, suppress_health_check=list(HealthCheck), print_blob=True,
    )


def without_caller_headers(document: dict[str, Any]) -> dict[str, Any]:
    """The document without what the fixture's own headers always send: the bearer scheme
    and `X-Acting-User`. (Negative cases there would be a dropped or mangled header, which
    the fixture's header then puts back, so the request would not be negative at all.)"""
    document = copy.deepcopy(document)
    document.get("components", {}).pop("securitySchemes", None)
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
            parameters = [p for p in operation.get("parameters", [])
                          if p["name"] != "X-Acting-User"]
            if parameters:
                operation["parameters"] = parameters
            else:
                operation.pop("parameters", None)
    return document


def label(operation: Any) -> tuple[str, str]:
    return operation.method.upper(), operation.path


def load(api: TestClient, *, as_served: bool) -> Any:
    document = api.app.openapi()  # type: ignore[attr-defined]
    loaded = schemathesis.openapi.from_dict(
        copy.deepcopy(document) if as_served else without_caller_headers(document))
    loaded.app = api.app
    return loaded


@pytest.fixture
def schema(api: TestClient) -> Any:
    """As served: positive cases, `ignored_auth`, the state machine."""
    return load(api, as_served=True)


@pytest.fixture
def plain_schema(api: TestClient) -> Any:
    """Without the caller's headers: negative cases."""
    return load(api, as_served=False)


@pytest.fixture
def headers_for(auth_headers: Headers) -> Callable[[str, str], dict[str, str]]:
    made: dict[tuple[str, ...], dict[str, str]] = {}

    def headers(method: str, path: str) -> dict[str, str]:
        roles = first_role(method, path)
        if not roles:
            return {}
        if roles not in made:
            made[roles] = auth_headers("gemeente", list(roles))
        return made[roles]

    return headers


def run_operation(
    operation: Any, mode: GenerationMode, headers: dict[str, str], statuses: Counter[int]
) -> None:
    """Run the checks on `EXAMPLES` cases of one operation, counting the cases' statuses
    (not those of the probes `ignored_auth` sends without a token)."""

    @settings(EXAMPLES)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS[mode])
        statuses[response.status_code] += 1

    check()


def test_every_operation_passes_the_checks(
    schema: Any, plain_schema: Any, headers_for: Callable[[str, str], dict[str, str]],
    exchanges: list[Exchange],
) -> None:
    failures, operations = [], 0
    statuses = {mode: Counter[int]() for mode in GenerationMode}
    negatives = {label(r.ok()): r.ok() for r in plain_schema.get_all_operations()}
    for result in schema.get_all_operations():
        operation = result.ok()
        if label(operation) in SKIPPED:
            continue
        operations += 1
        headers = headers_for(*label(operation))
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE:
                operation = negatives[label(operation)]
            try:
                run_operation(operation, mode, headers, statuses[mode])
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to negate: no inputs
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:1500])
    positive, negative = statuses[GenerationMode.POSITIVE], statuses[GenerationMode.NEGATIVE]
    sent = positive.total() + negative.total()
    print(f"schemathesis: {sent} cases over {operations} operations ({len(exchanges)} "
          f"requests with the probes); positive {dict(sorted(positive.items()))}, "
          f"negative {dict(sorted(negative.items()))}")
    # Valid cases must get past authentication, or the run proves little.
    assert positive[401] + positive[403] == 0
    assert operations >= 25 and sent >= operations * 5
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(failures)


def test_stateful_link_following(
    schema: Any, headers_for: Callable[[str, str], dict[str, str]]
) -> None:
    """Chains of calls along the links schemathesis infers (ids from one answer used in the
    next call), with the same checks."""
    machine = schema.as_state_machine()
    steps = 0

    class Sluis(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers_for(case.method.upper(), case.path)}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            nonlocal steps
            steps += 1
            if (case.method.upper(), case.path) in SKIPPED:
                return
            case.validate_response(response, checks=STATEFUL_CHECKS, transport_kwargs=kwargs)

    hypothesis.stateful.run_state_machine_as_test(
        Sluis, settings=hypothesis.settings(settings(max(EXAMPLES, 10)),
                                            stateful_step_count=8))
    print(f"schemathesis stateful: {steps} steps")
    assert steps > 0
