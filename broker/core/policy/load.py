"""Load a policy pack: read its YAML files, merge them, validate strictly, hash the result.

Every problem found is collected (not just the first), each naming the file it came from and
the entry in it, so a privacy officer can fix a pack in one pass. A pack with any problem is
refused as a whole with `PackInvalid`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from broker.core.policy.checks import Origins, check_references
from broker.core.policy.model import (
    IDENT_PATTERN,
    Category,
    GroupMembers,
    LegalBasis,
    Organisation,
    PackModel,
    PackTest,
    Purpose,
    Rule,
)
from broker.errors import FieldProblem, PackInvalid

__all__ = ["Pack", "canonical_json", "load_pack", "load_pack_from_text"]

PACK_WIDE = "(pack)"
_SCALARS = ("pack", "version", "description", "covenant_privacy_officer")
_IDENT_SCALARS = ("pack", "covenant_privacy_officer")
_MAP_SECTIONS: dict[str, Any] = {
    "organisations": TypeAdapter(Organisation),
    "groups": TypeAdapter(GroupMembers, config=ConfigDict(strict=True)),
    "legal_bases": TypeAdapter(LegalBasis),
    "purposes": TypeAdapter(Purpose),
    "categories": TypeAdapter(Category),
}
_LIST_SECTIONS: dict[str, type[BaseModel]] = {"rules": Rule, "tests": PackTest}
_REQUIRED = ("pack", "version", "organisations", "legal_bases", "purposes", "categories")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict | set):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} defined twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def _json_default(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def canonical_json(data: object) -> bytes:
    """Keys sorted, no insignificant white space, UTF-8, dates as ISO strings."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default, allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Pack:
    """A validated pack: the model, its canonical bytes and content hash, and look-ups."""

    model: PackModel
    canonical: bytes
    hash: str
    origins: Origins = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.model.pack

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def organisations(self) -> Mapping[str, Organisation]:
        return self.model.organisations

    @property
    def purposes(self) -> Mapping[str, Purpose]:
        return self.model.purposes

    @property
    def legal_bases(self) -> Mapping[str, LegalBasis]:
        return self.model.legal_bases

    @property
    def categories(self) -> Mapping[str, Category]:
        return self.model.categories

    @property
    def rules(self) -> list[Rule]:
        return self.model.rules

    def category(self, category_id: str) -> Category | None:
        return self.model.categories.get(category_id)

    def purpose(self, purpose_id: str) -> Purpose | None:
        return self.model.purposes.get(purpose_id)

    def legal_basis(self, basis_id: str) -> LegalBasis | None:
        return self.model.legal_bases.get(basis_id)

    def retention_days(self, category_id: str) -> int:
        """Days a signal of this category is kept; KeyError for an unknown category."""
        return self.model.categories[category_id].retention_days

    def expand(self, name: str) -> frozenset[str]:
        """The organisations an organisation or group name stands for."""
        return self.members.get(name, frozenset())

    def groups_of(self, organisation: str) -> list[str]:
        """The groups an organisation belongs to, sorted."""
        return sorted(g for g, orgs in self.model.groups.items() if organisation in orgs)

    @cached_property
    def members(self) -> Mapping[str, frozenset[str]]:
        expanded = {org: frozenset({org}) for org in self.model.organisations}
        expanded.update({g: frozenset(m) for g, m in self.model.groups.items()})
        return expanded


# --- reading and merging ------------------------------------------------------------------


def _parse(files: Mapping[str, str], problems: list[FieldProblem]) -> dict[str, object]:
    parsed: dict[str, object] = {}
    for name in sorted(files):
        try:
            if name.endswith(".json"):
                parsed[name] = json.loads(files[name])
            else:
                parsed[name] = yaml.load(files[name], Loader=_UniqueKeyLoader)  # noqa: S506
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown"
            problems.append(FieldProblem((name, "yaml"), f"YAML error at {where}: "
                                         f"{exc.problem or exc.context}"))
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            problems.append(FieldProblem((name, "yaml"), f"cannot be read: {type(exc).__name__}"))
    return parsed


@dataclass
class _Merged:
    data: dict[str, Any] = field(default_factory=dict)
    origins: Origins = field(default_factory=Origins)


def _merge(parsed: Mapping[str, object], problems: list[FieldProblem]) -> _Merged:
    merged = _Merged()
    for name, content in parsed.items():
        if content is None:
            continue
        if not isinstance(content, dict):
            problems.append(FieldProblem((name, "(top)"), "a pack file must be a mapping of "
                                         "sections"))
            continue
        for key, value in content.items():
            _merge_section(merged, name, key, value, problems)
    return merged


def _merge_section(merged: _Merged, name: str, key: object, value: object,
                   problems: list[FieldProblem]) -> None:
    data, origins = merged.data, merged.origins
    if key in _SCALARS:
        if key in data:
            problems.append(FieldProblem((name, str(key)), f"{key} is defined twice (also in "
                                         f"{origins.scalars[str(key)]})"))
            return
        data[str(key)] = value
        origins.scalars[str(key)] = name
    elif key in _MAP_SECTIONS:
        if not isinstance(value, dict):
            problems.append(FieldProblem((name, str(key)), "expected a mapping of ids"))
            return
        section: dict[str, Any] = data.setdefault(str(key), {})
        for entry_id, entry in value.items():
            entry_name = f"{key}.{entry_id}"
            if entry_id in section:
                other = origins.entries[(str(key), str(entry_id))]
                problems.append(FieldProblem((name, entry_name), f"defined twice (also in "
                                             f"{other})"))
                continue
            section[entry_id] = entry
            origins.entries[(str(key), str(entry_id))] = name
    elif key in _LIST_SECTIONS:
        if not isinstance(value, list):
            problems.append(FieldProblem((name, str(key)), "expected a list"))
            return
        items: list[Any] = data.setdefault(str(key), [])
        for index, item in enumerate(value):
            origins.items.setdefault(str(key), []).append((name, index))
            items.append(item)
    else:
        problems.append(FieldProblem((name, str(key)), "unknown section"))


# --- structural validation ----------------------------------------------------------------


def _pydantic_problems(exc: ValidationError, file_name: str, entry: str,
                       entry_is_base: bool = True) -> Iterable[FieldProblem]:
    for error in exc.errors(include_url=False, include_input=False):
        msg = str(error["msg"]).removeprefix("Value error, ")
        sub = ".".join(str(part) for part in error["loc"])
        if sub and entry_is_base:
            yield FieldProblem((file_name, f"{entry}.{sub}"), msg)
        else:
            yield FieldProblem((file_name, entry), f"{sub}: {msg}" if sub else msg)


def _validate_scalars(merged: _Merged, valid: dict[str, Any],
                      problems: list[FieldProblem]) -> None:
    for key in _SCALARS:
        if key not in merged.data:
            continue
        where = (merged.origins.scalars[key], key)
        value = merged.data[key]
        if key in _IDENT_SCALARS:
            ok = isinstance(value, str) and _is_ident(value)
            message = "expected an identifier (lower-case words joined by hyphens)"
        else:
            ok = isinstance(value, str) and (key == "description" or bool(value))
            message = "expected text (quote numbers such as version: \"2026.1\")"
        if ok:
            valid[key] = value
        else:
            problems.append(FieldProblem(where, message))


def _validate_section(merged: _Merged, key: str, adapter: Any,
                      problems: list[FieldProblem]) -> dict[str, Any]:
    origins = merged.origins
    entries: dict[str, Any] = {}
    for entry_id, entry in merged.data.get(key, {}).items():
        where_file = origins.entries[(key, str(entry_id))]
        entry_name = f"{key}.{entry_id}"
        if not (isinstance(entry_id, str) and _is_ident(entry_id)):
            problems.append(FieldProblem((where_file, entry_name), "id must be lower-case "
                                         "words joined by hyphens"))
            origins.broken.setdefault(key, set()).add(str(entry_id))
            continue
        try:
            entries[entry_id] = adapter.validate_python(entry)
        except ValidationError as exc:
            origins.broken.setdefault(key, set()).add(entry_id)
            problems.extend(_pydantic_problems(exc, where_file, entry_name))
    return entries


def _validate_items(merged: _Merged, key: str, model: type[BaseModel],
                    problems: list[FieldProblem]) -> list[Any]:
    origins = merged.origins
    items: list[Any] = []
    for position, item in enumerate(merged.data.get(key, [])):
        file_name, _ = origins.items[key][position]
        label = origins.label(key, position, item)
        try:
            items.append(model.model_validate(item))
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, file_name, label, entry_is_base=False))
        else:
            origins.valid_items.setdefault(key, []).append(position)
    return items


def _validate_entries(merged: _Merged, problems: list[FieldProblem]) -> dict[str, Any]:
    """Validate each entry on its own so one bad entry does not hide the others' problems."""
    valid: dict[str, Any] = {}
    problems.extend(FieldProblem((PACK_WIDE, key), f"required section {key} is missing")
                    for key in _REQUIRED if key not in merged.data)
    _validate_scalars(merged, valid, problems)
    for key, adapter in _MAP_SECTIONS.items():
        valid[key] = _validate_section(merged, key, adapter, problems)
    for key, model in _LIST_SECTIONS.items():
        valid[key] = _validate_items(merged, key, model, problems)
    return valid


def _is_ident(value: str) -> bool:
    return re.fullmatch(IDENT_PATTERN, value) is not None


# --- entry points -------------------------------------------------------------------------


def load_pack_from_text(files: Mapping[str, str]) -> Pack:
    """Load a pack from {file name: text}; `*.json` files are read as JSON (a stored version)."""
    problems: list[FieldProblem] = []
    if not files:
        raise PackInvalid("The policy pack has no *.yaml files",
                          errors=[FieldProblem((PACK_WIDE, "files"), "no *.yaml files")])
    parsed = _parse(files, problems)
    merged = _merge(parsed, problems)
    valid = _validate_entries(merged, problems)
    # Cross-entry checks run on whatever validated, so one pass reports as much as possible.
    partial = PackModel.model_construct(**valid)
    problems.extend(check_references(partial, merged.origins))
    if problems:
        raise PackInvalid(f"The policy pack has {len(problems)} problem(s)", errors=problems)
    # Validate the assembled whole once more: cheap, and guards the construct above.
    model = PackModel.model_validate(valid)
    canonical = canonical_json(merged.data)
    digest = "sha256:" + hashlib.sha256(canonical).hexdigest()
    return Pack(model=model, canonical=canonical, hash=digest, origins=merged.origins)


def load_pack(directory: Path) -> Pack:
    """Load every `*.yaml` file directly inside `directory` as one pack."""
    if not directory.is_dir():
        raise PackInvalid("The policy pack folder does not exist",
                          errors=[FieldProblem((PACK_WIDE, "folder"), "not a folder")])
    files: dict[str, str] = {}
    unreadable: list[FieldProblem] = []
    for path in sorted(directory.glob("*.yaml")):
        if not path.is_file():
            continue
        try:
            files[path.name] = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            unreadable.append(FieldProblem((path.name, "file"), f"cannot be read as UTF-8 "
                                           f"text ({type(exc).__name__})"))
    if unreadable:
        raise PackInvalid(f"The policy pack has {len(unreadable)} unreadable file(s)",
                          errors=unreadable)
    return load_pack_from_text(files)
