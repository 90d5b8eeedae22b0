"""The version is written once, and the CHANGELOG's newest release is that version.

``src/ringline/__init__.py``'s ``__version__`` is the only place it is written:
pyproject.toml reads it from there (``dynamic = ["version"]``, ``[tool.hatch.version]``),
so a built or installed package's metadata says the same. Releasing means moving the
CHANGELOG's "Unreleased" entries under a section named for the new version.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import ringline

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "write the version only in src/ringline/__init__.py"
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/ringline/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", ringline.__version__)


def test_the_changelog_newest_release_is_the_package_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == "Unreleased", "the CHANGELOG starts with its Unreleased section"
    assert headings[1] == ringline.__version__, (
        f"the newest release in CHANGELOG.md is {headings[1]}, the package says {ringline.__version__}"
    )
