"""Transforms as a pack writes them: `reveal`, `{generalise: {bucket: 500}}`, ...

`parse_transform` reads one (with a reason a pack's author understands when it is wrong),
`Transform.as_data` writes it back, and `transform_fits` says whether it applies to a
field of a kind. Applying a transform to a value is `broker.core.transforms`' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import PlainSerializer, PlainValidator

TransformKind = Literal["reveal", "pseudonymise", "redact", "generalise", "mask"]
_PLAIN_TRANSFORMS = ("reveal", "pseudonymise", "redact")
_GENERALISE_WORDS = ("year", "month", "day", "pc4")
_GENERALISE_NUMBERS = ("bucket", "age_band")
_TRANSFORM_HELP = (
    "expected reveal, pseudonymise, redact, {generalise: year|month|day|pc4}, "
    "{generalise: {bucket: N}}, {generalise: {age_band: N}} or {mask: {keep_last: N}}"
)


@dataclass(frozen=True, slots=True)
class Transform:
    """One field transform: `kind`, and for generalise/mask its `option` and number `n`."""

    kind: TransformKind
    option: str | None = None
    n: int | None = None

    def as_data(self) -> str | dict[str, Any]:
        """The transform written as in the pack (`reveal`, `{generalise: {bucket: 500}}`)."""
        if self.kind in _PLAIN_TRANSFORMS:
            return self.kind
        if self.kind == "mask":
            return {"mask": {"keep_last": self.n}}
        if self.option in _GENERALISE_NUMBERS:
            return {"generalise": {self.option: self.n}}
        return {"generalise": self.option}

    def __str__(self) -> str:
        if self.kind in _PLAIN_TRANSFORMS:
            return self.kind
        if self.n is None:
            return f"{self.kind}:{self.option}"
        return f"{self.kind}:{self.option}={self.n}"


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _parse_generalise(arg: object) -> Transform:
    if isinstance(arg, str) and arg in _GENERALISE_WORDS:
        return Transform("generalise", arg)
    if isinstance(arg, Mapping) and len(arg) == 1:
        ((option, number),) = arg.items()
        n = _positive_int(number)
        if option in _GENERALISE_NUMBERS and n is not None:
            return Transform("generalise", str(option), n)
    raise ValueError("generalise takes year, month, day, pc4, {bucket: N} or {age_band: N}"
                     " with N a positive integer")


def parse_transform(value: object) -> Transform:
    """Parse a transform as written in a pack; ValueError with a readable reason otherwise."""
    if isinstance(value, Transform):
        return value
    if isinstance(value, str):
        if value in _PLAIN_TRANSFORMS:
            return Transform(value)  # type: ignore[arg-type]
        raise ValueError(f"unknown transform {value!r}; {_TRANSFORM_HELP}")
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "generalise":
            return _parse_generalise(arg)
        if name == "mask":
            if isinstance(arg, Mapping) and set(arg) == {"keep_last"}:
                keep = arg["keep_last"]
                if isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0:
                    return Transform("mask", "keep_last", keep)
            raise ValueError("mask takes {keep_last: N} with N a whole number >= 0")
    raise ValueError(_TRANSFORM_HELP)


TransformField = Annotated[
    Transform,
    PlainValidator(parse_transform),
    PlainSerializer(lambda t: t.as_data()),
]


_STRING_KINDS = frozenset({"text", "enum", "bsn", "kvk", "plate", "bag_id", "postcode",
                           "subject_type"})
_DATE_KINDS = frozenset({"date", "datetime", "birthdate"})
_NUMBER_KINDS = frozenset({"integer", "number"})


def transform_fits(transform: Transform, kind: str) -> bool:
    """Whether `transform` can be applied to a value of `kind` (docs/policy.md "Transforms")."""
    if transform.kind in _PLAIN_TRANSFORMS:
        return True
    if transform.kind == "mask":
        return kind in _STRING_KINDS
    option = transform.option
    if option in ("year", "month", "day"):
        return kind in _DATE_KINDS
    if option == "pc4":
        return kind == "postcode"
    if option == "bucket":
        return kind in _NUMBER_KINDS
    return option == "age_band" and kind == "birthdate"
