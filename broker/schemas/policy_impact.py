"""The request and the answer of a draft pack's impact on the journaled requests."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

from broker.schemas import Strict

MAX_FILE_BYTES = 256 * 1024
"""The largest file of a draft pack the API takes (the body has its own limit too)."""
PackFileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,100}\.(yaml|yml)$")]


class ImpactIn(Strict):
    """The draft: a recorded pack's hash, or the pack's files as text. Exactly one."""

    draft: str | None = Field(default=None, max_length=71,
                              description="a recorded pack's hash, or a prefix of six or more "
                                          "hex digits that only it has")
    files: dict[PackFileName, str] | None = (
        Field(default=None, max_length=64,
              description="the draft's *.yaml files, by file name, as `broker policy check` "
                          "reads a folder, each at most 256 KiB; nothing is recorded"))
    since: str | None = Field(default=None, max_length=8, pattern=r"^[1-9][0-9]{0,4}[dh]$",
                              description="how far back: `14d` or `36h`; default, all that "
                                          "the journal keeps (`BROKER_REPLAY_DAYS`)")

    @model_validator(mode="after")
    def _one_draft(self) -> ImpactIn:
        if (self.draft is None) == (self.files is None):
            raise ValueError("name exactly one of draft or files")
        if any(len(text.encode()) > MAX_FILE_BYTES for text in (self.files or {}).values()):
            raise ValueError(f"each of the draft's files holds at most {MAX_FILE_BYTES} bytes")
        return self


class FieldImpactOut(BaseModel):
    path: str
    before: str = Field(description="the transform under the live pack, or `dropped`")
    after: str = Field(description="the transform under the draft, or `dropped`")
    signals: int = Field(description="signals released under both packs whose field changes")


class RuleImpactOut(BaseModel):
    rule: str
    requests: int = Field(description="requests in which the rule decides a signal, under "
                                      "either pack")
    affected: int = Field(description="of those, the requests in which what it decides changes")
    signals_gained: int
    signals_lost: int
    hits_gained: int
    hits_lost: int
    cells_published: int = Field(description="area-summary cells suppressed before, "
                                             "published under the draft")
    cells_suppressed: int
    fields: list[FieldImpactOut]


class GroupImpactOut(BaseModel):
    recipient: str
    purpose: str
    requests: int
    affected: int
    rules: list[RuleImpactOut]


class ImpactTotalsOut(BaseModel):
    requests: int
    affected: int
    signals_gained: int
    signals_lost: int
    field_changes: int
    hits_flipped: int
    cells_crossed: int


class ImpactOut(BaseModel):
    live: str = Field(description="the live pack's hash")
    draft: str = Field(description="the draft's hash")
    since: str
    until: str
    totals: ImpactTotalsOut
    groups: list[GroupImpactOut]
