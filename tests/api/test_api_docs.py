"""docs/api.md holds the API reference generated from the OpenAPI document, and it is current.

The part between the markers is what `scripts/api-docs` writes from the document the broker
serves; when a route, a parameter or a model changes, this test fails until the script is
run again, so the reference cannot drift from the service.
"""

from __future__ import annotations

from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "api-docs"
DOC = REPO / "docs" / "api.md"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """scripts/api-docs as a module (it has no .py suffix, so it is loaded by path)."""
    loader = SourceFileLoader("api_docs", str(SCRIPT))
    spec = spec_from_loader("api_docs", loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_generated_part_is_what_the_generator_writes_now(generator: ModuleType) -> None:
    written = generator.generated_part(DOC.read_text(encoding="utf-8"))
    current = generator.render(generator.openapi_document())
    assert written == current, "docs/api.md is out of date: run scripts/api-docs"


def test_every_operation_of_the_served_document_is_in_the_reference(
    generator: ModuleType,
) -> None:
    document = generator.openapi_document()
    written = generator.generated_part(DOC.read_text(encoding="utf-8"))
    operations = [(method.upper(), path)
                  for path, item in document["paths"].items() for method in item]
    assert len(operations) >= 40
    for method, path in operations:
        assert f"#### {method} `{path}`" in written, (method, path)


def test_the_file_is_byte_for_byte_what_the_script_writes(generator: ModuleType) -> None:
    """`scripts/api-docs --check` passes: the prose around the part is kept as written."""
    text = DOC.read_text(encoding="utf-8")
    assert generator.spliced(text, generator.render(generator.openapi_document())) == text
    assert generator.main(["--check"]) == 0
