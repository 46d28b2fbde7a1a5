"""requirements.lock pins every package `scripts/install` installs, meets pyproject.toml,
and is what the tests run on; `scripts/install` installs from it and reinstalls when it
changes."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
INSTALL = REPO / "scripts" / "install"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        found = PIN.match(line)
        assert found, f"not an exact pin: {line!r}"
        name = canonicalize_name(found[1])
        assert name not in pins, f"pinned twice: {name}"
        pins[name] = found[2]
    return pins


def wanted() -> list[Requirement]:
    """What pyproject.toml asks for: the dependencies, the [dev] extra, the build backend."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    texts = [*project["project"]["dependencies"],
             *project["project"]["optional-dependencies"]["dev"],
             *project["build-system"]["requires"]]
    return [Requirement(text) for text in texts]


def test_every_line_is_an_exact_pin_and_pip_is_left_to_the_installer() -> None:
    pins = locked()
    assert len(pins) >= 40
    assert "pip" not in pins
    assert {"setuptools", "wheel"} <= set(pins)


def test_the_lock_meets_every_requirement_of_pyproject() -> None:
    pins = locked()
    for requirement in wanted():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, pyproject.toml wants {requirement}")


def test_the_tests_run_on_the_locked_versions() -> None:
    """What CI tests is the lock: each locked package is installed at its locked version."""
    differ = {}
    for name, pinned in locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differ[name] = (pinned, installed)
    assert differ == {}, "run scripts/install: " + repr(differ)


def test_install_uses_the_lock_and_its_stamp_covers_it() -> None:
    script = INSTALL.read_text(encoding="utf-8")
    assert "LOCK=requirements.lock" in script
    assert 'stamp=.venv/.installed-$(cat pyproject.toml "$LOCK" | sha256sum' in script
    assert 'pip install --quiet --no-deps -r "$LOCK"' in script
    assert "--no-index --no-build-isolation -e '.[dev]'" in script
    assert "--update-lock) update_lock ;;" in script
