"""The abuse limits: token buckets per (client, purpose) and the distinct-subject brake."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import RateLimited
from broker.services.ratelimit import HOUR, AbuseLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_a_minute_and_refills() -> None:
    clock = Clock()
    limits = AbuseLimits(60, 100, clock=clock)
    for _ in range(60):
        limits.admit("cl_a", "p")
    with pytest.raises(RateLimited) as refused:
        limits.admit("cl_a", "p")
    assert refused.value.headers == {"Retry-After": "1"}
    limits.admit("cl_a", "q")  # another purpose has its own bucket
    limits.admit("cl_b", "p")  # and another client
    clock.now += 1.0  # one request a second comes back
    limits.admit("cl_a", "p")
    with pytest.raises(RateLimited):
        limits.admit("cl_a", "p")


def test_retry_after_counts_the_seconds_to_the_next_token() -> None:
    clock = Clock()
    limits = AbuseLimits(6, 100, clock=clock)  # one token every ten seconds
    for _ in range(6):
        limits.admit("cl_a", "p")
    with pytest.raises(RateLimited) as refused:
        limits.admit("cl_a", "p")
    assert refused.value.headers["Retry-After"] == "10"


def test_distinct_subjects_alert_once_then_refuse() -> None:
    clock = Clock()
    limits = AbuseLimits(1000, 2, clock=clock)
    assert limits.ask_about("cl_a", b"s1") is False
    assert limits.ask_about("cl_a", b"s2") is False
    assert limits.ask_about("cl_a", b"s1") is False  # known subjects pass
    assert limits.ask_about("cl_a", b"s3") is True  # first over: the caller alerts
    with pytest.raises(RateLimited) as refused:
        limits.ask_about("cl_a", b"s4")
    assert int(refused.value.headers["Retry-After"]) == HOUR
    assert limits.ask_about("cl_b", b"s3") is False  # per client
    clock.now += HOUR + 1  # the window has passed: a new episode
    assert limits.ask_about("cl_a", b"s5") is False
    assert limits.distinct_subjects("cl_a") == 1


@given(st.lists(st.integers(min_value=0, max_value=30), max_size=200),
       st.integers(min_value=1, max_value=10))
@settings(max_examples=200, deadline=None)
def test_never_more_distinct_subjects_than_allowed(subjects: list[int], limit: int) -> None:
    limits = AbuseLimits(10_000, limit, clock=Clock())
    passed: set[int] = set()
    for subject in subjects:
        try:
            if not limits.ask_about("cl_a", str(subject).encode()):
                passed.add(subject)
        except RateLimited:
            pass
    assert len(passed) <= limit
    assert limits.distinct_subjects("cl_a") <= limit
