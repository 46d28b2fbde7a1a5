"""The officer pages' pure parts: session and form tokens, the SVG chart, the catalogues."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.entry import Action, Outcome
from broker.keys import create_key_ring, load_key_ring, rotate_key
from broker.officer import chart, session
from broker.officer.i18n import EN, NL, Translator

NOW = 1_800_000_000
CLIENT = "cl_" + "a" * 24


@pytest.fixture(scope="module")
def ring_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    create_key_ring(directory)
    return directory


def test_a_session_reads_back_until_it_lapses(ring_dir: Path) -> None:
    keys = load_key_ring(ring_dir)
    begun, cookie = session.begin(keys, CLIENT, now=NOW)
    assert session.read(keys, cookie, now=NOW + 60) == begun
    assert session.read(keys, cookie, now=NOW + session.IDLE_SECONDS) is None
    renewed = session.renew(keys, begun, now=NOW + 600)
    assert session.read(keys, renewed, now=NOW + 600 + session.IDLE_SECONDS - 1) is not None


def test_renewal_never_passes_the_absolute_limit(ring_dir: Path) -> None:
    keys = load_key_ring(ring_dir)
    begun, _ = session.begin(keys, CLIENT, now=NOW)
    late = NOW + session.ABSOLUTE_SECONDS - 10
    cookie = session.renew(keys, begun, now=late)
    read = session.read(keys, cookie, now=late)
    assert read is not None and read.expires_at == NOW + session.ABSOLUTE_SECONDS
    assert session.read(keys, cookie, now=NOW + session.ABSOLUTE_SECONDS) is None


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), char=st.sampled_from("abcXYZ019_-."))
def test_any_changed_character_spoils_a_session(ring_dir: Path, position: int,
                                                char: str) -> None:
    keys = load_key_ring(ring_dir)
    _, cookie = session.begin(keys, CLIENT, now=NOW)
    at = position % len(cookie)
    changed = cookie[:at] + char + cookie[at + 1:]
    if changed != cookie:
        assert session.read(keys, changed, now=NOW + 1) is None


def test_form_tokens_are_bound_to_their_session(ring_dir: Path) -> None:
    keys = load_key_ring(ring_dir)
    first, _ = session.begin(keys, CLIENT, now=NOW)
    second, _ = session.begin(keys, CLIENT, now=NOW)
    token = session.csrf_token(keys, first)
    assert session.csrf_ok(keys, first, token)
    assert not session.csrf_ok(keys, second, token)
    assert not session.csrf_ok(keys, first, "")
    nonce, pre = session.pre_session(keys, now=NOW)
    assert session.read_pre_session(keys, pre, now=NOW + 60) == nonce
    assert session.read_pre_session(keys, pre, now=NOW + session.PRE_SESSION_SECONDS) is None
    assert session.sign_in_token_ok(keys, nonce, session.sign_in_token(keys, nonce))
    assert not session.sign_in_token_ok(keys, "other", session.sign_in_token(keys, nonce))
    assert session.read(keys, pre, now=NOW) is None  # a pre-session is not a session


def test_a_session_outlives_a_master_key_rotation_under_its_own_key_version(
    tmp_path: Path
) -> None:
    create_key_ring(tmp_path)
    keys = load_key_ring(tmp_path)
    _, cookie = session.begin(keys, CLIENT, now=NOW)
    rotate_key(tmp_path, "master")
    rotated = load_key_ring(tmp_path)
    # Old versions stay in the ring, so the session still reads; its key is its own.
    assert session.read(rotated, cookie, now=NOW) is not None
    assert session.session_key(rotated, 1) != session.session_key(rotated, 2)


def test_the_chart_has_one_bar_per_nonzero_count_and_escapes_its_labels() -> None:
    days = [date(2026, 11, 16) + timedelta(days=n) for n in range(7)]
    series = [chart.Series("disclosure", "<b>Verstrekkingen</b>", [0, 1, 2, 0, 0, 0, 5]),
              chart.Series("refusal", "Weigeringen", [0, 0, 1, 0, 0, 0, 0])]
    svg = str(chart.bar_chart(days, series, title="T & t", description="d"))
    assert svg.count('<rect class="bar ') == 4
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "T &amp; t" in svg
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert 'style="' not in svg  # a style attribute would be blocked by the pages' CSP
    with pytest.raises(ValueError, match="one count per day"):
        chart.bar_chart(days, [chart.Series("x", "x", [1])], title="", description="")


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (5, 5), (6, 10),
                                                (11, 20), (101, 200), (499, 500)])
def test_nice_ceiling(value: int, ceiling: int) -> None:
    assert chart.nice_ceiling(value) == ceiling


def test_both_catalogues_have_the_same_labels_and_placeholders() -> None:
    assert set(NL) == set(EN)
    for key in NL:
        assert set(re.findall(r"{(\w+)}", NL[key])) == set(re.findall(r"{(\w+)}", EN[key])), key


@pytest.mark.parametrize(("spec", "words"), [
    ("reveal", "zoals vastgelegd"),
    ({"generalise": "month"}, "afgerond op maand"),
    ({"generalise": {"bucket": 500}}, "in klassen van 500"),
    ({"mask": {"keep_last": 4}}, "gemaskeerd, laatste 4 tekens zichtbaar"),
    ("something-new", "something-new"),
])
def test_transforms_in_words(spec: object, words: str) -> None:
    assert Translator("nl").transform(spec) == words


@pytest.mark.parametrize("catalogue", [NL, EN], ids=["nl", "en"])
def test_every_audit_action_and_outcome_has_a_label(catalogue: dict[str, str]) -> None:
    missing = [f"action.{a}" for a in get_args(Action) if f"action.{a}" not in catalogue]
    missing += [f"outcome.{o}" for o in get_args(Outcome) if f"outcome.{o}" not in catalogue]
    assert not missing
