"""Row 50 of docs/security.md through real HTTP (uvicorn on loopback), on SQLite and
PostgreSQL, with the demo pack as an operator serves it: PC4 minus its shown PC6s, and
the counts after one added and retracted signal, no longer give a suppressed PC6's count
(the attacks of `tests/differencing.py`, as in tests/api/test_area_summary_differencing.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.differencing import WORLDS, add_and_retract, nested_worlds, subtract_nested
from tests.e2e.served import Served, database_for, served_broker


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with served_broker(tmp_path, database_for(request, tmp_path)) as broker:
        yield broker


def test_nested_areas_and_one_added_signal_do_not_give_a_suppressed_count(
    served: Served,
) -> None:
    netbeheerder = served.client("netbeheerder", "contributor", "analist-1")
    riec = served.client("riec", "requester", "analist-1")
    with httpx.Client(base_url=served.url, timeout=30) as http:
        worlds = nested_worlds(http, netbeheerder)
        for outcome in (subtract_nested(http, riec, worlds),
                        add_and_retract(http, riec, netbeheerder, worlds)):
            assert outcome.made >= WORLDS // 2, outcome
            assert outcome.wrong * 3 >= outcome.made, outcome
