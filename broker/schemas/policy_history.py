"""Answers of the policy history, a recorded pack, and the diff of two packs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PackLoadOut(BaseModel):
    hash: str
    pack: str
    version: str
    loaded_at: str
    loaded_by: str = Field(description="the client, or `system:...` for the broker itself "
                                       "and its command line")
    live: bool = Field(description="the newest load: the pack every broker process serves")


class PackHistoryPage(BaseModel):
    items: list[PackLoadOut]


class StoredPackOut(BaseModel):
    hash: str
    pack: str
    version: str
    first_loaded_at: str
    live: bool
    canonical: str = Field(description="the pack as canonical JSON: its SHA-256 is the hash")


class BeforeAfter(BaseModel):
    before: Any
    after: Any


class RuleChangeOut(BaseModel):
    id: str
    attributes: dict[str, BeforeAfter]


class RuleChangesOut(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[RuleChangeOut]


class SectionChangeOut(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[str]


class KeyChangeOut(BaseModel):
    what: str = Field(description="`field`, or a condition of the rule: `reveal_source`, "
                                  "`min_count`, `max_age_days`, `valid_from`, `valid_until`")
    path: str | None = None
    before: Any = Field(description="a field's transform as the pack writes it, or `dropped`")
    after: Any


class AccessChangeOut(BaseModel):
    recipient: str
    purpose: str
    category: str
    source: str
    legal_basis: str
    access: BeforeAfter = Field(description="`hit`, `aggregate`, `disclose` or `none`")
    rule: BeforeAfter
    changes: list[KeyChangeOut]


class PackDiffOut(BaseModel):
    before: str = Field(alias="from")
    to: str
    empty: bool = Field(description="nothing the broker decides by differs")
    rules: RuleChangesOut
    catalogue: dict[str, SectionChangeOut]
    settings: dict[str, BeforeAfter]
    access: list[AccessChangeOut]
