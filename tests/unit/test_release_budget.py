"""The volume budget (released signals per hour, per client and per person) and the
distinct-subject brake on the subjects an area or id query releases."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import RateLimited
from broker.services.budget import MINUTE, ReleaseBudget
from broker.services.ratelimit import HOUR, AbuseLimits


class Clock:
    def __init__(self) -> None:
        self.now = 60_000.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_grants_what_is_left_and_no_more() -> None:
    clock = Clock()
    budget = ReleaseBudget(250, clock=clock)
    assert budget.take(["client:a"], 100) == 100
    assert budget.take(["client:a"], 100) == 100
    assert budget.take(["client:a"], 100) == 50  # the rest of the hour's budget
    assert budget.take(["client:a"], 100) == 0
    assert budget.released("client:a") == 250
    assert budget.take(["client:b"], 100) == 100  # another client has its own


def test_a_request_gets_what_every_one_of_its_budgets_has_left() -> None:
    budget = ReleaseBudget(100, clock=Clock())
    assert budget.take(["client:a", "person:gemeente:p1"], 70) == 70
    # The same person through another client: the person's budget is the smaller.
    assert budget.take(["client:b", "person:gemeente:p1"], 70) == 30
    assert budget.released("client:b") == 30
    # Another person through the first client: the client's budget is.
    assert budget.take(["client:a", "person:gemeente:p2"], 70) == 30
    assert budget.released("person:gemeente:p2") == 30


def test_what_a_request_does_not_release_goes_back() -> None:
    budget = ReleaseBudget(100, clock=Clock())
    assert budget.take(["client:a", "person:x:p"], 100) == 100
    budget.give_back(["client:a", "person:x:p"], 40)
    assert budget.released("client:a") == budget.released("person:x:p") == 60
    assert budget.take(["client:a"], 100) == 40


def test_exhausted_alerts_once_per_episode_and_says_how_long_to_wait() -> None:
    clock = Clock()
    budget = ReleaseBudget(100, clock=clock)
    assert budget.exhausted(["client:a"]) is None
    budget.take(["client:a"], 60)
    clock.now += 10 * MINUTE
    budget.take(["client:a"], 40)
    assert budget.exhausted(["client:a"]) is True  # the first refusal: record an alert
    assert budget.exhausted(["client:a"]) is False  # later ones: no second alert
    refused = budget.over_budget(["client:a"])
    assert isinstance(refused, RateLimited)
    # Room again once the first minute's 60 signals leave the hour: 50 minutes from now.
    assert refused.headers == {"Retry-After": str(int(50 * MINUTE))}
    clock.now += 50 * MINUTE
    assert budget.exhausted(["client:a"]) is None
    assert budget.take(["client:a"], 100) == 60
    assert budget.exhausted(["client:a"]) is True  # a new episode, a new alert


def test_an_unknown_holder_counts_nothing() -> None:
    budget = ReleaseBudget(10, clock=Clock())
    assert budget.released("client:nobody") == 0
    budget.give_back(["client:nobody"], 5)
    assert budget.take(["client:nobody"], 20) == 10


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30 * 60), st.integers(0, 80), st.integers(0, 80),
                          st.sampled_from(["client:a", "client:b"])), max_size=60))
def test_no_hour_of_whole_minutes_releases_more_than_the_budget(
    steps: list[tuple[int, int, int, str]],
) -> None:
    """However requests come, take and give back, the signals kept in the minute of any
    request and the 59 before it never exceed the budget."""
    clock = Clock()
    budget = ReleaseBudget(150, clock=clock)
    kept: list[tuple[int, str, int]] = []  # (minute, key, signals kept)
    for wait, wanted, unused, key in steps:
        clock.now += wait
        minute = int(clock.now // MINUTE)
        granted = budget.take([key, "person:o:p"], wanted)
        assert 0 <= granted <= wanted
        back = min(unused, granted)
        budget.give_back([key, "person:o:p"], back)
        kept.append((minute, key, granted - back))
        in_hour = [n for m, _, n in kept if m > minute - 60]
        assert sum(in_hour) <= 150
        for holder in ("client:a", "client:b"):
            assert sum(n for m, k, n in kept if k == holder and m > minute - 60) <= 150


def test_racing_requests_never_take_more_than_the_budget() -> None:
    budget = ReleaseBudget(1000, clock=Clock())
    granted: list[int] = []

    def hammer() -> None:
        for _ in range(100):
            granted.append(budget.take(["client:a"], 7))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 1000
    assert budget.released("client:a") == 1000


def test_released_subjects_pass_as_far_as_they_fit() -> None:
    clock = Clock()
    limits = AbuseLimits(1000, 3, clock=clock)
    assert limits.ask_about("cl_a", b"s1") is False
    # s1 is known, None (no subject) always fits, s2 and s3 fill the brake, s4 does not.
    assert limits.ask_about_released("cl_a", [b"s1", None, b"s2", b"s2", b"s3", b"s4",
                                              b"s1"]) == 5
    assert limits.distinct_subjects("cl_a") == 3
    assert limits.ask_about_released("cl_a", [b"s3", b"s1"]) == 2  # known ones pass
    assert limits.ask_about_released("cl_a", [b"s4", b"s1"]) == 0  # first over: alert
    with pytest.raises(RateLimited) as refused:
        limits.ask_about_released("cl_a", [b"s5"])
    assert int(refused.value.headers["Retry-After"]) == HOUR
    assert limits.ask_about_released("cl_a", []) == 0
    assert limits.ask_about_released("cl_b", [b"s4", b"s5"]) == 2  # per client
    clock.now += HOUR + 1
    assert limits.ask_about_released("cl_a", [b"s4", b"s5", b"s6", b"s7"]) == 3
