"""The README describes the privacy officer's pages as they are: approvals of
re-identification requests are decided there, so they are not called read-only."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTION = "## The privacy officer's web view"


def officer_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return " ".join(text[start:end if end != -1 else None].split())


def test_the_officer_pages_decide_re_identification_requests() -> None:
    """What the README says below is true of the pages: they have a decision route."""
    source = (REPO / "broker" / "officer" / "requests.py").read_text(encoding="utf-8")
    assert '@router.post("/reidentifications/{request_id}/decision")' in source


def test_the_readme_does_not_call_them_read_only_and_names_the_decision() -> None:
    section = officer_section()
    assert not re.search(r"read[- ]only", section, re.IGNORECASE), section
    assert ("One act is taken there, not only read: the officer decides re-identification "
            "requests (approve or refuse, with a reason)") in section


def test_no_document_calls_the_officer_pages_read_only() -> None:
    for path in [REPO / "README.md", REPO / "clients" / "README.md",
                 *sorted((REPO / "docs").glob("*.md"))]:
        text = " ".join(path.read_text(encoding="utf-8").split())
        assert not re.search(r"read[- ]only (officer )?pages", text, re.IGNORECASE), path
