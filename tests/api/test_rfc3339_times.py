"""`since`/`until` take RFC 3339 date-times with offset only (docs/api.md conventions), through
one annotated type (`broker.schemas.Rfc3339DateTime`); the refusals are in
tests/security/test_bad_input.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from broker.schemas import Rfc3339DateTime
from tests.api.disclosure_kit import energy

Headers = Callable[..., dict[str, str]]
ADAPTER: TypeAdapter[datetime] = TypeAdapter(Rfc3339DateTime)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-20T09:00:00+01:00", datetime(2026, 11, 20, 8, tzinfo=UTC)),
    ("2026-11-20T08:00:00Z", datetime(2026, 11, 20, 8, tzinfo=UTC)),
    ("2026-11-20t08:00:00.250z", datetime(2026, 11, 20, 8, 0, 0, 250_000, tzinfo=UTC)),
    ("2026-11-20T03:30:00-04:30", datetime(2026, 11, 20, 8, tzinfo=UTC)),
])
def test_rfc3339_with_offset_is_taken(text: str, expected: datetime) -> None:
    parsed = ADAPTER.validate_python(text)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize("text", [
    "4557", "-5", "1732093200", "2026-11-20", "2026-11-20T09:00:00", "2026-11-20 09:00:00Z",
    "2026-11-20T09:00+01:00", "2026-11-20T09:00:00+0100", "20261120T090000Z",
    "2026-11-20T09:00:00 01:00", "2026-11-20T09:00:00+01:00\n", "", "yesterday",
    "\u0662\u0660\u0662\u0666-11-20T09:00:00Z",
    # Valid text whose offset carries it outside the years Python can hold in UTC.
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00",
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(text)


def test_a_plus_turned_space_gets_a_hint() -> None:
    with pytest.raises(ValidationError, match="%2B"):
        ADAPTER.validate_python("2026-11-20T09:00:00 01:00")


def test_both_lists_filter_by_rfc3339_times(api: TestClient, auth_headers: Headers) -> None:
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    made = api.post("/v1/signals", json=energy(), headers=netbeheerder)
    assert made.status_code == 201, made.text
    before = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=1)))
    after = datetime.now(UTC) + timedelta(hours=1)
    for path, headers in (("/v1/signals", netbeheerder),
                          ("/v1/audit/entries", auth_headers("riec", ["privacy_officer"]))):
        found = api.get(path, headers=headers, params={"since": before.isoformat()})
        assert found.status_code == 200, found.text
        assert found.json()["items"], path
        later = api.get(path, headers=headers,
                        params={"since": after.isoformat().replace("+00:00", "Z")})
        assert later.status_code == 200, later.text
        assert later.json()["items"] == [], path


@pytest.mark.parametrize(("where", "value"), [
    ("until", "9999-12-31T23:59:59-23:59"), ("since", "0001-01-01T00:00:00+01:00")])
def test_times_past_the_calendar_are_422_not_500(
    api: TestClient, auth_headers: Headers, where: str, value: str
) -> None:
    for path, headers in (("/v1/signals", auth_headers("netbeheerder", ["contributor"])),
                          ("/v1/audit/entries", auth_headers("riec", ["privacy_officer"]))):
        answer = api.get(path, headers=headers, params={where: value})
        assert answer.status_code == 422, answer.text
    signal = {**energy(), "observed_at": value}
    answer = api.post("/v1/signals", json=signal,
                      headers=auth_headers("netbeheerder", ["contributor"]))
    assert answer.status_code == 422, answer.text


def test_an_observation_time_as_a_bare_number_is_refused(
    api: TestClient, auth_headers: Headers
) -> None:
    answer = api.post("/v1/signals", json={**energy(), "observed_at": 1732093200},
                      headers=auth_headers("netbeheerder", ["contributor"]))
    assert answer.status_code == 422, answer.text
