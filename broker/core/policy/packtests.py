"""Run a pack's `tests:` section: the expectations its authors wrote down beside the rules.

Each test is a dry run (`CompiledPolicy.explain`, signal age and validity terms ignored) whose
access level, and optionally the transforms of some fields, must match exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker.core.policy.evaluate import CompiledPolicy
from broker.core.policy.model import PackTest
from broker.core.policy.transform_spec import parse_transform

__all__ = ["PackTestResult", "run_pack_tests"]


@dataclass(frozen=True, slots=True)
class PackTestResult:
    """One test's outcome; `reason` says what differed when it failed."""

    index: int
    test: PackTest
    passed: bool
    access: str
    rule: str | None
    reason: str = ""

    def name(self) -> str:
        """A one-line description such as `tests[3] gemeente integrale-controle ...`."""
        t = self.test
        basis = f" [{t.legal_basis}]" if t.legal_basis else ""
        return (f"tests[{self.index}] {t.recipient} {t.purpose} {t.category} from "
                f"{t.source}{basis} -> {t.expect}")

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "name": self.name(), "passed": self.passed,
                "expect": self.test.expect, "access": self.access, "rule": self.rule,
                "reason": self.reason}


def _field_differences(test: PackTest, fields: dict[str, object]) -> list[str]:
    differences = []
    for path, expected in (test.fields or {}).items():
        if path not in fields:
            differences.append(f"field {path} is not released")
            continue
        actual = parse_transform(fields[path])
        if actual != expected:
            differences.append(f"field {path}: expected {expected}, rule gives {actual}")
    return differences


def run_test(policy: CompiledPolicy, index: int, test: PackTest) -> PackTestResult:
    """Run one test against the compiled policy."""
    explanation = policy.explain(test.recipient, test.purpose, test.category, test.source,
                                 test.legal_basis)
    problems: list[str] = []
    if explanation.access != test.expect:
        by = f" (rule {explanation.rule})" if explanation.rule else ""
        problems.append(f"expected {test.expect}, got {explanation.access}{by}")
    else:
        problems.extend(_field_differences(test, dict(explanation.fields)))
    return PackTestResult(index=index, test=test, passed=not problems,
                          access=explanation.access, rule=explanation.rule,
                          reason="; ".join(problems))


def run_pack_tests(policy: CompiledPolicy) -> Sequence[PackTestResult]:
    """Run every test of the pack, in order."""
    return [run_test(policy, i, t) for i, t in enumerate(policy.pack.model.tests)]
