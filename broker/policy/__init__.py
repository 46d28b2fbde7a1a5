"""Policy packs: the schema, loading, linting and evaluation of sharing rules (pure code).

Nothing here imports web or database code; the service layer hands in plain values.
"""

from broker.policy.load import Pack, canonical_json, load_pack, load_pack_from_text
from broker.policy.model import (
    ACCESS_LEVELS,
    AttributeSpec,
    Category,
    LegalBasis,
    Organisation,
    PackModel,
    PackTest,
    Purpose,
    Rule,
    Transform,
    parse_transform,
)

__all__ = [
    "ACCESS_LEVELS",
    "AttributeSpec",
    "Category",
    "LegalBasis",
    "Organisation",
    "Pack",
    "PackModel",
    "PackTest",
    "Purpose",
    "Rule",
    "Transform",
    "canonical_json",
    "load_pack",
    "load_pack_from_text",
    "parse_transform",
]
