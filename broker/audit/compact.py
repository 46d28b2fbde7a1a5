"""A disclosure entry's items without repeating their rules (docs/audit.md, "Compact items").

Each item of a disclosure lists the fields its signal released, path to transform. On a
page of many signals under a few rules that repeated the same fields item after item: half
the entry said again what the item's rule says. So where two or more items of one rule
released the same fields, the entry's `objects.rule_fields` names those fields once, under
the rule's id, and those items have `fields: {}`; an item that released other fields still
lists its own. A rule under which some item released no field at all is left as it is, so
an empty `fields` never has two meanings. An entry of one signal per rule is unchanged.

`released_fields` reads an item's fields either way; every reader of items goes through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

RULE_FIELDS: Final = "rule_fields"
"""The key in a disclosure entry's `objects` of the fields written once per rule."""


def _shapes(items: Sequence[dict[str, Any]]) -> tuple[dict[str, list[list[Any]]], set[str]]:
    """Per rule the distinct fields its items released, each with how many did; and the
    rules under which some item released none."""
    shapes: dict[str, list[list[Any]]] = {}
    empty: set[str] = set()
    for item in items:
        rule = item.get("rule")
        if not isinstance(rule, str):
            continue
        fields = item["fields"]
        if not fields:
            empty.add(rule)
        for shape in shapes.setdefault(rule, []):
            if shape[0] == fields:
                shape[1] += 1
                break
        else:
            shapes[rule].append([fields, 1])
    return shapes, empty


def compact(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Empty the `fields` of the items that released what most items of their rule did,
    in place; returns the `rule_fields` object naming those fields (empty: nothing to do)."""
    if len(items) < 2:
        return {}
    shapes, empty = _shapes(items)
    table: dict[str, dict[str, Any]] = {}
    for rule, found in shapes.items():
        fields, count = max(found, key=lambda shape: shape[1])  # the first of the most
        if rule not in empty and count >= 2:
            table[rule] = fields
    for item in items if table else ():
        shared = table.get(item.get("rule"))  # type: ignore[arg-type]
        if shared is not None and item["fields"] == shared:
            item["fields"] = {}
    return table


def released_fields(item: Mapping[str, Any], objects: Any) -> dict[str, Any]:
    """The fields an item's signal released (path to transform): its own, or, when it lists
    none, those its entry names once for its rule; `{}` when neither (a hit, any other act).
    Damaged values give `{}`, never an error."""
    own = item.get("fields")
    if isinstance(own, dict) and own:
        return own
    table = objects.get(RULE_FIELDS) if isinstance(objects, Mapping) else None
    rule = item.get("rule")
    if isinstance(table, Mapping) and isinstance(rule, str):
        shared = table.get(rule)
        if isinstance(shared, dict):
            return shared
    return {}
