"""docs/architecture.md says where each concept lives: every module of ``src/ringline``
has a home there, so a new module comes with its row (or its place in its package's)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "ringline"
DOC = ROOT / "docs" / "architecture.md"


def named(module: Path, lines: list[str]) -> bool:
    """``module`` is named by its path (``server/hub.py``), or by its file name on a line
    that names its package folder (``server/store/`` ... ``sqlite.py``)."""
    rel = module.relative_to(PACKAGE)
    if rel.name == "__init__.py":
        path = "" if rel.parent == Path(".") else f"{rel.parent.as_posix()}/"
        return not path or any(f"`{path}" in ln for ln in lines)
    if any(f"`{rel.as_posix()}`" in ln for ln in lines):
        return True
    folder = f"{rel.parent.as_posix()}/"
    return any(f"`{folder}" in ln and f"`{rel.name}`" in ln for ln in lines)


def test_every_module_has_a_home_in_the_architecture_doc() -> None:
    lines = DOC.read_text().splitlines()
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    missing = [m.relative_to(PACKAGE).as_posix() for m in modules if not named(m, lines)]
    assert not missing, f"docs/architecture.md does not say where these live: {missing}"
