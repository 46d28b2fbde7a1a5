"""Policy packs: the schema, loading, linting and evaluation of sharing rules (pure code).

Nothing here imports web or database code; the service layer hands in plain values.
"""

from broker.core.policy.evaluate import CompiledPolicy, CompiledRule, Explanation
from broker.core.policy.lint import LintWarning, lint_pack
from broker.core.policy.load import Pack, canonical_json, load_pack, load_pack_from_text
from broker.core.policy.model import (
    ACCESS_LEVELS,
    AttributeSpec,
    Category,
    LegalBasis,
    Organisation,
    PackModel,
    PackTest,
    Purpose,
    Rule,
)
from broker.core.policy.packtests import PackTestResult, run_pack_tests
from broker.core.policy.transform_spec import Transform, parse_transform

__all__ = [
    "ACCESS_LEVELS",
    "AttributeSpec",
    "Category",
    "CompiledPolicy",
    "CompiledRule",
    "Explanation",
    "LegalBasis",
    "LintWarning",
    "Organisation",
    "Pack",
    "PackModel",
    "PackTest",
    "PackTestResult",
    "Purpose",
    "Rule",
    "Transform",
    "canonical_json",
    "lint_pack",
    "load_pack",
    "load_pack_from_text",
    "parse_transform",
    "run_pack_tests",
]
