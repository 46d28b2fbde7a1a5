"""`covenant_privacy_officer`: the optional organisation whose privacy officer decides
re-identifications on every signal of the pack (docs/policy.md)."""

from __future__ import annotations

from typing import Any

import pytest

from broker.core.policy import load_pack_from_text
from broker.errors import PackInvalid
from tests.unit.packs import as_files, base_pack, load


def with_officer(value: Any) -> dict[str, Any]:
    data = base_pack()
    data["covenant_privacy_officer"] = value
    return data


def test_a_pack_names_no_covenant_officer_by_default() -> None:
    assert load(base_pack()).model.covenant_privacy_officer is None


def test_a_pack_may_name_one_of_its_organisations() -> None:
    pack = load(with_officer("riec"))
    assert pack.model.covenant_privacy_officer == "riec"
    assert pack.hash != load(base_pack()).hash


@pytest.mark.parametrize(("value", "message"), [
    ("nergens", "nergens is not an organisation of the pack"),
    ("convenant", "convenant is not an organisation of the pack"),  # a group
    ("Riec", "expected an identifier (lower-case words joined by hyphens)"),
    (["riec"], "expected an identifier (lower-case words joined by hyphens)"),
    ("", "expected an identifier (lower-case words joined by hyphens)"),
])
def test_anything_but_an_organisation_of_the_pack_is_refused(value: Any, message: str) -> None:
    with pytest.raises(PackInvalid) as caught:
        load_pack_from_text(as_files(with_officer(value)))
    found = [(p.loc[0], p.loc[1], p.msg) for p in caught.value.errors]
    assert found == [("pack.yaml", "covenant_privacy_officer", message)]
